"""The bare Celery app the end-to-end figure is set against: no Django, one
no-op task, and Celery's default settings and transport (its broker is
Celery's default unless ``CELERY_BROKER_URL`` names another)."""

from celery import Celery

app = Celery("bare")


@app.task(name="bare.noop")
def noop() -> None:
    """Nothing: the cost of a task is Celery's and the broker's alone."""
