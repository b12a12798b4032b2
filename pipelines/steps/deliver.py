"""deliver: hand the output to its consumer.

``stored``: the run keeps the document as its result (the engine saves it).
``webhook``: the run's delivery hook POSTs it, signed, under a delivery id
that stays the same however often the step is retried (pipelines/deliveries.py).
Either way the document passes through unchanged.
"""

from pipelines.steps.base import StepContext, StepError, StepResult


def execute(document: dict, ctx: StepContext) -> StepResult:
    config = ctx.step["config"]
    channel = config.get("channel")
    if channel == "stored":
        return StepResult(output=document, decision={"delivered_to": "stored"})
    if channel == "webhook":
        if ctx.deliver is None:
            raise StepError("Webhook delivery is unavailable outside a run.")
        record = ctx.deliver(config, document)
        return StepResult(output=document, decision={"delivered_to": config["url"], **record})
    raise StepError(f"Delivery channel {channel!r} is not available in this version of Keel.")
