"""model: render the step's prompt over the document, call the model, keep its text.

The call goes through ``ctx.call_model`` (the live providers, or replay's
recordings), and everything sent and received is returned as a recording.
"""

import dataclasses

from pipelines.providers import ModelRequest, ProviderError
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy
from pipelines.steps.documents import set_path
from pipelines.steps.prompts import render_prompt


def prompt_variables(document: dict, ctx: StepContext) -> dict:
    """The declared variables only: the step's constant ``variables`` with the document's fields over them."""
    prompt = ctx.step["prompt"]
    merged = {**ctx.step["config"].get("variables", {}), **document}
    declared = prompt.get("variables") or []
    missing = [name for name in declared if name not in merged]
    if missing:
        raise StepError(
            f"prompt {prompt.get('slug', '')!r} needs variables missing from the document: {', '.join(missing)}"
        )
    return {name: merged[name] for name in declared}


def build_request(model: dict, text: str, *, seed: int, workspace_id: int | None = None) -> ModelRequest:
    # A release snapshot keeps Decimals as strings ("0.70"): numbers are converted here.
    return ModelRequest(
        provider=model["provider"],
        model_name=model["model_name"],
        model_version=model.get("model_version") or "",
        messages=({"role": "user", "content": text},),
        temperature=float(model.get("temperature", 0)),
        top_p=float(model.get("top_p", 1)),
        max_tokens=int(model.get("max_tokens", 512)),
        seed=int(model["seed"]) if model.get("seed") is not None else seed,
        timeout_seconds=float(model.get("timeout_seconds", 30)),
        base_url=model.get("base_url") or "",
        api_key_env=model.get("api_key_env") or "",
        credential=model.get("credential") or "",
        workspace_id=workspace_id,
        extra_params=json_copy(model.get("extra_params") or {}),
        price_input_per_1k=float(model.get("price_input_per_1k", 0)),
        price_output_per_1k=float(model.get("price_output_per_1k", 0)),
    )


def request_record(request: ModelRequest) -> dict:
    """A request as recorded on its StepRun (and compared with on replay)."""
    # Field by field: dataclasses.asdict deep-copies through copy.deepcopy. It holds
    # the credential's slug, never the key. The workspace is where the call was
    # made from, not what was sent; a release cut before credentials kept only
    # api_key_env, and its recordings say so.
    sent = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
    del sent["workspace_id"]
    if not sent["credential"]:
        del sent["credential"]
    sent["messages"] = [dict(message) for message in request.messages]  # JSON has lists, not tuples
    sent["extra_params"] = json_copy(request.extra_params)
    return sent


def _recording(request: ModelRequest, response) -> dict:
    return {
        "request": request_record(request),
        "request_body": response.request_body,
        "response_body": response.response_body,
        "attempts": [dict(attempt) for attempt in response.attempts],
    }


def execute(document: dict, ctx: StepContext) -> StepResult:
    prompt, model = ctx.step.get("prompt"), ctx.step.get("model")
    if not prompt or not model:
        raise StepError("a model step needs both a prompt and a model config")
    try:
        text = render_prompt(prompt["body"], prompt_variables(document, ctx))
    except StepError:
        raise
    except Exception as exc:  # the prompt is authored code: any failure while rendering is the prompt's
        raise StepError(f"prompt {prompt.get('slug', '')!r} failed to render: {type(exc).__name__}: {exc}") from None
    request = build_request(model, text, seed=ctx.seed, workspace_id=ctx.workspace_id)
    try:
        response = ctx.call_model(request)
    except ProviderError as exc:
        failed = {"request": request_record(request), "error": str(exc), "transient": exc.transient,
                  "attempts": [dict(attempt) for attempt in exc.attempts]}  # fmt: skip
        if exc.received is not None:  # an invalid_response: the bytes as they came
            failed["received"] = exc.received
        raise StepError(f"model call failed: {exc}", transient=exc.transient, recordings=[failed]) from None
    output = json_copy(document)
    field = ctx.step["config"].get("output_field", "output")
    try:
        set_path(output, field, response.text)
    except Exception as exc:  # noqa: BLE001 - the model was paid: whatever goes wrong now keeps its answer
        raise StepError(f"cannot write the model's output to {field!r}: {exc}",
                        recordings=[_recording(request, response)]) from None  # fmt: skip
    return StepResult(
        output=output,
        recordings=[_recording(request, response)],
        input_tokens=response.input_tokens,
        output_tokens=response.output_tokens,
        cost=response.cost,
    )
