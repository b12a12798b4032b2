"""deliver: hand the output to its consumer.

``stored``: the run keeps the document as its result (the engine saves it).
``webhook`` needs delivery rows with stable ids, signing and retries; until
that lands such a step fails the run with a clear reason rather than
pretending to have sent anything.
"""

from pipelines.steps.base import StepContext, StepError, StepResult


def execute(document: dict, ctx: StepContext) -> StepResult:
    channel = ctx.step["config"].get("channel")
    if channel == "stored":
        return StepResult(output=document, decision={"delivered_to": "stored"})
    raise StepError(f"Delivery channel {channel!r} is not available in this version of Keel.")
