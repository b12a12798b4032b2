"""Celery tasks of the pipelines app: thin wrappers that take ids, call one service, and own
their retries. Services never import these modules: they enqueue a task by its name
(``pipelines.broker.enqueue_on_commit("pipelines.execute_run", run.pk)``).

Task names (``name=`` on each decorator) are an API: messages in flight and beat's schedule
use them, so they never change. Importing this package registers every task
(``PipelinesConfig.ready`` imports it in every process, so a service can enqueue by name).
"""

from pipelines.tasks import delivery, evaluation, integration, releases, runs  # noqa: F401 - registers the tasks
