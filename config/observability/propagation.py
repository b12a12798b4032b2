"""The request id travels with a task's message: put in its headers when it
is sent (before_task_publish) and bound, with the task id, for the task's log
lines on the worker (task_prerun, undone at task_postrun). The worker keeps
Keel's log format (LOGGING, LOG_FORMAT) instead of Celery's, and a starting
worker tidies the metrics folder."""

from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun, worker_init

from config.logcontext import log_context_get, log_scope_enter, log_scope_exit
from config.observability.multiproc import metrics_dir_prepare

HEADER = "keel_request_id"

_scopes: dict[str, object] = {}


@before_task_publish.connect(dispatch_uid="observability.request_id_out")
def _request_id_out(sender=None, headers=None, **kwargs) -> None:
    request_id = log_context_get("request_id")
    if request_id and headers is not None and HEADER not in headers:
        headers[HEADER] = request_id


@task_prerun.connect(dispatch_uid="observability.task_scope_in")
def _task_scope_in(sender=None, task_id=None, task=None, **kwargs) -> None:
    request = getattr(task, "request", None)
    # Message headers become attributes of the task's request (protocol 2); a
    # task run inline (eager) keeps the request id of its caller.
    request_id = getattr(request, HEADER, None) or log_context_get("request_id")
    _scopes[task_id] = log_scope_enter(request_id=request_id, task_id=task_id)


@task_postrun.connect(dispatch_uid="observability.task_scope_out")
def _task_scope_out(sender=None, task_id=None, **kwargs) -> None:
    token = _scopes.pop(task_id, None)
    if token is not None:
        log_scope_exit(token)


@worker_init.connect(dispatch_uid="observability.metrics_dir")
def _metrics_dir(**kwargs) -> None:
    # A worker starting: the files of processes gone since are removed (config/observability/multiproc.py).
    metrics_dir_prepare()


@setup_logging.connect(dispatch_uid="observability.keel_logging")
def _keel_logging(**kwargs) -> None:
    # Any receiver tells Celery to leave the root logger alone: a worker then
    # writes the lines LOGGING configured (LOG_FORMAT, LOG_LEVEL) as the web
    # does, instead of Celery's own format at --loglevel.
    return None
