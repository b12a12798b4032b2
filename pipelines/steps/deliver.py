"""deliver: hand the output to its consumer.

``stored``: the run keeps the document as its result (the engine saves it).
``webhook``: the run's delivery hook POSTs it, signed, under a delivery id
that stays the same however often the step is retried (pipelines/delivery/webhooks.py).
Either way the document passes through unchanged.

``"format": "pdf"`` makes a PDF report of the document with its provenance
(pipelines/delivery/reports.py, reached through ``ctx.report``): the webhook receives the PDF itself, and a stored
report is rebuilt from the run on download. Its SHA-256 is recorded in the
step's decision, so replay, which rebuilds it, proves the bytes unchanged.
"""

from pipelines.steps.base import StepContext, StepError, StepResult


def _report(document: dict, ctx: StepContext) -> dict:
    report = ctx.report(document=document, config=ctx.step["config"]) if ctx.report else None
    if report is None:  # the sandbox of an evaluation has no run to report on
        return {"format": "pdf", "pdf_sha256": None}
    return report.record()


def execute(document: dict, ctx: StepContext) -> StepResult:
    config = ctx.step["config"]
    channel = config.get("channel")
    if channel not in ("stored", "webhook"):
        raise StepError(f"Delivery channel {channel!r} is not available in this version of Keel.")
    report = _report(document, ctx) if config.get("format") == "pdf" else {}
    if channel == "stored":
        return StepResult(output=document, decision={"delivered_to": "stored", **report})
    if ctx.deliver is None:
        raise StepError("Webhook delivery is unavailable outside a run.")
    record = ctx.deliver(config, document)
    # The report's record last: on replay the rebuilt report's hash replaces the recorded one, to be compared.
    return StepResult(output=document, decision={"delivered_to": config["url"], **record, **report})
