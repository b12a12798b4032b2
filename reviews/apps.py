from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviews"

    def ready(self) -> None:
        # handlers connects the engine's signals; tasks is imported in every
        # process (web too), so that a service can enqueue it by its name (pipelines/broker.py).
        from reviews import handlers, tasks  # noqa: F401
