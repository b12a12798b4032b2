"""A StepContext for pure step tests: no database, and no model unless a test passes one."""

from pipelines.providers import ModelRequest, ModelResponse
from pipelines.steps.base import StepContext


def no_model_call(request: ModelRequest) -> ModelResponse:
    raise AssertionError("this step should not call a model")


def make_ctx(*, config: dict | None = None, kind: str = "ingest", **overrides) -> StepContext:
    step = overrides.pop("step", None) or {"kind": kind, "name": kind, "config": {}, "prompt": None, "model": None}
    if config is not None:
        step = {**step, "config": config}
    values = {
        "run_id": 1,
        "pipeline_slug": "support-triage",
        "step_position": 1,
        "seed": 1234,
        "step": step,
        "policy": None,
        "input_schema": {},
        "call_model": no_model_call,
        **overrides,
    }
    return StepContext(**values)


def fixed_model(*texts: str, calls: list | None = None):
    """A call_model that answers with ``texts`` in turn, keeping the requests it got in ``calls``."""
    answers = list(texts)

    def call_model(request: ModelRequest) -> ModelResponse:
        if calls is not None:
            calls.append(request)
        text = answers.pop(0)
        return ModelResponse(
            text=text,
            input_tokens=10,
            output_tokens=5,
            cost=0.25,
            request_body={"model": request.model_name, "messages": list(request.messages)},
            response_body={"choices": [{"message": {"content": text}}]},
            attempts=({"status": 200, "error": "", "elapsed_ms": 3},),
        )

    return call_model
