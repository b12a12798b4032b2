from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "pipelines"

    def ready(self):
        # Django app loading: the task modules import services and models, which need the
        # app registry ready. Imported in every process (web, worker, beat), so that a
        # service can enqueue a task by its name (pipelines/broker.py).
        # pipelines.releases.config connects its signal receivers as it is imported.
        from pipelines import tasks  # noqa: F401
        from pipelines.releases import config  # noqa: F401
