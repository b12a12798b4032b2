"""PDF reports of a run's output with its provenance, for clients who expect
PDF reports (a deliver step with ``"format": "pdf"``).

A report is a pure function of what the run records: the output the deliver
step was given, the pipeline as its release froze it, the release's number and
fingerprint, and the approvals recorded on its gate steps. Nothing in it comes
from the clock or from chance: reportlab writes in its invariant mode, the
creation date is the run's own (its last approval, else its run.started event
in the chain) and the document id is derived from the run, so replay — or a
download months later — rebuilds the same bytes, and the SHA-256 recorded
when the step ran proves it.
"""

import hashlib
import io
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime

from audit.canonical import canonical_bytes
from audit.models import AuditEvent
from pipelines.internals import pdf_document_id_set
from pipelines.models import Run, StepRun

MAX_OUTPUT_LINES = 2_000  # a longer output is cut in the report; its SHA-256 still covers all of it
WRAP = 100  # characters per line of the output, in a monospaced font


@dataclass(frozen=True)
class Approval:
    reviewer: str
    decision: str  # "approve" or "edit"
    at: str  # ISO 8601 UTC, or "" for a decision recorded before times were kept on the gate


@dataclass(frozen=True)
class ReportFacts:
    run_id: int
    position: int
    pipeline_name: str
    pipeline_slug: str
    release_number: int
    fingerprint: str
    started_at: datetime
    output_sha256: str
    review: str  # one sentence: who approved, passed by policy, or no gate
    outcome: str  # "approved", "edited", "passed", "no_gate"
    approvals: tuple[Approval, ...]

    @property
    def created_at(self) -> datetime:
        """The report's date: when its output was approved, else when the run started."""
        times = [datetime.fromisoformat(a.at) for a in self.approvals if a.at]
        return max(times) if times else self.started_at

    @property
    def document_id(self) -> bytes:
        """The PDF's /ID: 16 bytes from the run, the step, the release and the output."""
        seed = f"keel-report:{self.run_id}:{self.position}:{self.fingerprint}:{self.output_sha256}"
        return hashlib.sha256(seed.encode()).digest()[:16]


@dataclass(frozen=True)
class Report:
    pdf: bytes
    facts: ReportFacts

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.pdf).hexdigest()

    def record(self) -> dict:
        """What the deliver step records about it (and the chain keeps)."""
        return {"format": "pdf", "pdf_sha256": self.sha256, "pdf_bytes": len(self.pdf),
                "document_id": self.facts.document_id.hex()}  # fmt: skip


def _approvals(review: dict) -> tuple[Approval, ...]:
    recorded = review.get("approvals")
    if recorded is None:  # decided before approvals carried their times: the names alone
        kind = "edit" if review.get("outcome") == "edited" else "approve"
        return tuple(Approval(name, kind, "") for name in review.get("approvers", []))
    return tuple(Approval(a["reviewer"], a["decision"], a.get("at") or "") for a in recorded)


def _review(run: Run, position: int, snapshot: dict) -> tuple[str, str, tuple[Approval, ...]]:
    gates = [s["position"] for s in snapshot["steps"] if s["kind"] == "gate" and s["position"] < position]
    if not gates:
        return "no_gate", "This release has no approval gate before the report.", ()
    # A gate a person decided is always committed before the steps after it
    # run; a gate the policy passed may not be yet, but then it has no review
    # to report either way: the answer is the same on every execution and replay.
    reviewed = StepRun.objects.filter(run=run, position__in=gates, status=StepRun.Status.COMPLETED)
    approvals: list[Approval] = []
    edited = False
    for decision in reviewed.order_by("position").values_list("decision", flat=True):
        review = (decision or {}).get("review")
        if review:
            approvals.extend(_approvals(review))
            edited = edited or review.get("outcome") == "edited"
    if not approvals:
        return "passed", "No person reviewed this output: the approval policy passed it.", ()
    names = ", ".join(f"{a.reviewer} ({'edited, then approved' if a.decision == 'edit' else 'approved'}"
                      f"{', ' + a.at if a.at else ''})" for a in approvals)  # fmt: skip
    outcome = "edited" if edited else "approved"
    return outcome, f"Approved by {names}.", tuple(approvals)


def _started_at(run: Run) -> datetime:
    """When the run started, as its run.started event in the audit chain says:
    unlike the run row's own columns, the chain never changes."""

    events = AuditEvent.objects.filter(object_type="run", object_id=str(run.pk), action="run.started")
    started = events.order_by("seq").values_list("ts", flat=True).first()
    return (started or run.created_at).astimezone(UTC)


def report_facts(*, run_id: int, position: int, document: dict) -> ReportFacts | None:
    """The facts a report of ``document`` at step ``position`` states, or None
    when there is no run (an evaluation in the sandbox)."""
    run = Run.objects.select_related("release").filter(pk=run_id).first()
    if run is None:
        return None
    snapshot = run.release.snapshot_data
    outcome, review, approvals = _review(run, position, snapshot)
    return ReportFacts(
        run_id=run.pk,
        position=position,
        # As the release froze them: renaming the pipeline later changes no report.
        pipeline_name=snapshot["pipeline"]["name"],
        pipeline_slug=snapshot["pipeline"]["slug"],
        release_number=run.release.number,
        fingerprint=run.release.fingerprint,
        started_at=_started_at(run),
        output_sha256=hashlib.sha256(canonical_bytes(document)).hexdigest(),
        review=review,
        outcome=outcome,
        approvals=approvals,
    )


def _pdf_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")


def _output_lines(document: dict) -> list[str]:
    lines = []
    for line in json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines():
        lines.extend(textwrap.wrap(line, WRAP, subsequent_indent="    ", drop_whitespace=False) or [""])
    if len(lines) > MAX_OUTPUT_LINES:
        cut = len(lines) - MAX_OUTPUT_LINES
        lines = [*lines[:MAX_OUTPUT_LINES], f"... {cut} more lines not shown (the SHA-256 above covers them all)"]
    return lines


def report_render(facts: ReportFacts, document: dict, *, title: str = "") -> bytes:
    """The report's bytes: the same facts and document give the same bytes."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    width, height = A4
    pdf = Canvas(out, pagesize=A4, invariant=1)
    date = _pdf_date(facts.created_at)
    pdf.setDateFormatter(lambda *_: date)  # CreationDate and ModDate: the run's, not the clock's
    pdf_document_id_set(pdf, facts.document_id)  # Keel's /ID, from the run (pipelines/internals.py)
    heading = title or f"{facts.pipeline_name}: output report"
    pdf.setTitle(heading)
    pdf.setAuthor("Keel")
    pdf.setCreator("Keel")
    pdf.setSubject(f"Run {facts.run_id} of {facts.pipeline_slug}, release #{facts.release_number}")

    y = height - 50

    def line(text: str, *, font: str = "Helvetica", size: int = 10) -> None:
        nonlocal y
        if y < 50:
            pdf.showPage()
            y = height - 50
        pdf.setFont(font, size)
        pdf.drawString(40, y, text)
        y -= size + 4

    line(heading, font="Helvetica-Bold", size=15)
    y -= 6
    line(f"Pipeline: {facts.pipeline_name} ({facts.pipeline_slug})")
    line(f"Run: {facts.run_id}, started {facts.started_at.isoformat()}")
    line(f"Release: #{facts.release_number}")
    line(f"Fingerprint: {facts.fingerprint}", font="Courier", size=8)
    line(f"Output SHA-256: {facts.output_sha256}", font="Courier", size=8)
    for part in textwrap.wrap(f"Review: {facts.review}", 95):
        line(part)
    y -= 8
    line("Output", font="Helvetica-Bold", size=12)
    for text in _output_lines(document):
        line(text, font="Courier", size=8)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def report_build(*, run_id: int, position: int, document: dict, config: dict) -> Report | None:
    """The report a deliver step at ``position`` makes of ``document``; None without a run."""
    facts = report_facts(run_id=run_id, position=position, document=document)
    if facts is None:
        return None
    return Report(pdf=report_render(facts, document, title=config.get("title", "")), facts=facts)


class ReportUnavailable(Exception):
    """A stored report cannot be served as it was made (its message says why)."""


def _chain_sha256(run_id: int, position: int) -> str | None:
    """The pdf_sha256 the step's step.completed event carries (the last one for the position)."""

    events = AuditEvent.objects.filter(object_type="run", object_id=str(run_id), action="step.completed")
    for payload in events.order_by("-seq").values_list("payload", flat=True):
        data = json.loads(payload)
        if data.get("position") == position:
            return (data.get("decision") or {}).get("pdf_sha256")
    return None


def report_rebuild(*, run: Run, position: int) -> Report:
    """The PDF report a run's deliver step made, rebuilt from the run and
    served only when its SHA-256 is the one recorded on the step and in the
    audit chain: the very bytes delivered, or nothing."""
    step = StepRun.objects.filter(run=run, position=position, kind="deliver").first()
    recorded = ((step.decision or {}) if step else {}).get("pdf_sha256")
    if step is None or step.status != StepRun.Status.COMPLETED or not recorded:
        raise ReportUnavailable(f"Step {position} of run {run.pk} made no PDF report.")
    if step.input == {"redacted": True}:
        raise ReportUnavailable("The run's data has been redacted: its report can no longer be rebuilt.")
    config = run.release.snapshot_data["steps"][position - 1]["config"]
    report = report_build(run_id=run.pk, position=position, document=step.input, config=config)
    if report.sha256 != recorded or _chain_sha256(run.pk, position) != recorded:
        raise ReportUnavailable(
            f"The report rebuilt from run {run.pk} does not match the SHA-256 recorded when it was made "
            f"({recorded[:12]}…); it is not served. Replay the run to see what changed."
        )
    return report
