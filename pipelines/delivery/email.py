"""E-mail delivery: a deliver step with ``"channel": "email"`` sends its output
as an e-mail through Django's mail backend (``KEEL_EMAIL_BACKEND``: Keel's SMTP
backend, ``pipelines/delivery/smtp.py``), at least once, under a stable
``Message-ID``, and records what the server answered.

The step's config:

- ``to``: a fixed list of addresses, or ``to_field``: the output's field
  holding one address or a list of them (each checked; a bad one fails the
  step naming the field, never quoting the address);
- ``subject``: a template over the prompt's variables; the body is the step's
  prompt template. Both render in Keel's bounded Jinja2 sandbox
  (``pipelines.steps.prompts``) over the step's document, as a model step's prompt does;
- ``"format": "pdf"`` attaches the run's PDF report (``pipelines/delivery/reports.py``).

As a webhook delivery does, it makes its Delivery row before anything is sent
(in a transaction of its own), with a ``Message-ID`` derived from the delivery
id and a ``Date`` of the row's creation, so every attempt by any worker sends
the same message and a mail client drops repeats. The row pins the content
(``payload_sha256``). Attempts: a refused or dropped connection, a timeout or a
4xx reply is retried (``MAX_ATTEMPTS`` here, then the engine's step retries);
a 5xx reply is permanent. Recipients are tracked one by one: one the server
accepted is never sent to again; a 5xx refusal of one recipient fails the
delivery (a dead letter, its resend going only to the recipients not yet
accepted). A paused pipeline holds the e-mail until it is unpaused; a staging
run sends none.

Recipient addresses are personal data: they are stored only in the row's
``recipients`` (erased with the run by the data-subject erasure), and every
text Keel records or logs about the delivery (errors, the server's replies,
audit events) names a recipient by its number, never by its address.
"""

import hashlib
import logging
import smtplib
import time
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.canonical import canonical_bytes
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.events import delivery_event
from pipelines.delivery.reports import report_build
from pipelines.models import Delivery, Deployment, Run
from pipelines.steps.documents import MISSING, get_path
from pipelines.steps.prompts import render_prompt

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Waits between attempts: BACKOFF_BASE_SECONDS × 2^(attempt - 1), at most BACKOFF_CAP_SECONDS.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 8.0
MAX_RECIPIENTS = 50
# What a row keeps of each recipient: its address, whether the server took it, what it said.
ACCEPTED, REFUSED, PENDING = "accepted", "refused", "pending"


@dataclass(frozen=True)
class Letter:
    """What one e-mail delivery sends, whatever attempt sends it."""

    to: tuple[str, ...]
    subject: str
    body: str
    attachment: tuple[str, bytes] | None = None  # (file name, PDF bytes)

    @property
    def sha256(self) -> str:
        """The content the delivery id is bound to: recipients, subject, body, attachment."""
        attached = hashlib.sha256(self.attachment[1]).hexdigest() if self.attachment else None
        content = {"to": list(self.to), "subject": self.subject, "body": self.body, "attachment_sha256": attached}
        return hashlib.sha256(canonical_bytes(content)).hexdigest()


@dataclass
class _Outcome:
    """What one attempt came to; texts already free of addresses."""

    transient: bool
    code: int | None = None
    error: str = ""
    receiver: str = ""
    replies: dict[int, tuple[str, str]] = field(default_factory=dict)  # recipient index -> (status, reply)


def email_recipients(config: dict, document: dict) -> tuple[str, ...]:
    """The step's recipients: its fixed ``to``, or the addresses in the output's
    ``to_field``; a DeliveryError naming the field (never an address) otherwise."""
    if "to" in config:
        where, value = "config.to", config["to"]
    else:
        where = f"the output's field {config.get('to_field', '')!r} (config.to_field)"
        value = get_path(document, config.get("to_field", ""))
        if value is MISSING:
            raise DeliveryError(f"E-mail recipients: {where} is missing.", transient=False)
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list) or not addresses:
        raise DeliveryError(
            f"E-mail recipients: {where} holds no address (an address or a list of them).", transient=False
        )
    if len(addresses) > MAX_RECIPIENTS:
        raise DeliveryError(
            f"E-mail recipients: {where} holds {len(addresses)} addresses, over {MAX_RECIPIENTS}.", transient=False
        )
    for number, address in enumerate(addresses, start=1):
        try:
            if not isinstance(address, str):
                raise ValidationError("not text")
            validate_email(address)
        except ValidationError:
            raise DeliveryError(
                f"E-mail recipients: item {number} of {where} is not a valid e-mail address.", transient=False
            ) from None
    return tuple(dict.fromkeys(address.strip() for address in addresses))  # each once, in order


def email_send(config: dict, document: dict, *, run_id: int, position: int) -> dict:
    """Deliver a deliver step's document by e-mail; returns the delivery's record.

    1. Make the letter: recipients, subject and body rendered, the PDF report if asked.
    2. Find or create the step's Delivery row, in a transaction of its own, before
       anything is sent. A delivered row is returned as it is; a row made for a
       different letter is refused, so a Message-ID never stands for two e-mails.
    3. Send it to the recipients the server has not yet accepted, up to
       MAX_ATTEMPTS times while the failures are transient, recording each attempt
       on the row and in the audit trail. No transaction is held while sending.
    """
    run = Run.objects.select_related("pipeline", "release").get(pk=run_id)
    if run.environment != Deployment.Environment.PRODUCTION:
        # Staging and evaluation runs never reach an external consumer.
        return {"status": "withheld", "environment": run.environment, "delivery_id": None}
    letter = _letter(run, position, config, document)
    delivery = _delivery_for(run, position, letter)
    if delivery.status == Delivery.Status.DELIVERED:
        return _record(delivery)
    if Deployment.objects.filter(pipeline_id=run.pipeline_id, environment=run.environment, paused=True).exists():
        return _record(_hold(delivery, run))
    return _send(delivery, run, letter)


def _letter(run: Run, position: int, config: dict, document: dict) -> Letter:
    """Render the step's e-mail from the release's own snapshot of the step (its prompt)."""
    step = run.release.snapshot_data["steps"][position - 1]
    prompt = step.get("prompt") or {}
    to = email_recipients(config, document)
    merged = {**config.get("variables", {}), **document}
    declared = prompt.get("variables") or []
    missing = [name for name in declared if name not in merged]
    if missing:
        slug = prompt.get("slug", "")
        raise DeliveryError(
            f"The e-mail's prompt {slug!r} needs variables missing from the document: {', '.join(missing)}",
            transient=False,
        )
    variables = {name: merged[name] for name in declared}
    texts = {}
    for part, template in (("subject", config.get("subject", "")), ("body", prompt.get("body", ""))):
        try:
            texts[part] = render_prompt(template, variables)
        except Exception as exc:  # a template is authored code: any failure in it is the template's
            raise DeliveryError(
                f"The e-mail's {part} failed to render: {type(exc).__name__}: {exc}", transient=False
            ) from None
    # A header holds one line: the subject's line breaks become spaces.
    subject = " ".join(texts["subject"].split())
    attachment = None
    if config.get("format") == "pdf":
        report = report_build(run_id=run.pk, position=position, document=document, config=config)
        attachment = (f"{run.pipeline.slug}-run-{run.pk}.pdf", report.pdf)
    return Letter(to=to, subject=subject, body=texts["body"], attachment=attachment)


def _delivery_for(run: Run, position: int, letter: Letter) -> Delivery:
    """The step's delivery row, made for this letter."""
    delivery = Delivery.objects.filter(run=run, position=position).first()
    if delivery is None:
        delivery_id = uuid.uuid4()
        domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2].strip("> ") or "keel.invalid"
        try:
            # Committed before the first attempt, so a worker that dies mid-send
            # leaves the id and Message-ID behind for the next one to reuse.
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    run=run,
                    position=position,
                    delivery_id=delivery_id,
                    channel=Delivery.Channel.EMAIL,
                    url=_server(),
                    message_id=f"<{delivery_id}@{domain}>",
                    recipients=[{"address": address, "status": PENDING, "reply": ""} for address in letter.to],
                    payload_sha256=letter.sha256,
                )
                created = {"channel": "email", "recipients": len(letter.to), "message_id": delivery.message_id,
                           "payload_sha256": delivery.payload_sha256}  # fmt: skip
                delivery_event(run, "delivery.created", delivery, created)
            return delivery
        except IntegrityError:
            delivery = Delivery.objects.get(run=run, position=position)  # another worker made it first
    if not isinstance(delivery.recipients, list):
        raise DeliveryError(f"Delivery {delivery.delivery_id}: its recipients were erased.", transient=False)
    if letter.sha256 != delivery.payload_sha256:
        # The engine feeds a step the same document every time; if it ever did
        # not, resending would put one Message-ID on two different e-mails.
        raise DeliveryError(
            f"Delivery {delivery.delivery_id} of step {position} was made for a different e-mail; "
            "it is not sent with this one.",
            transient=False,
        )
    return delivery


def _send(delivery: Delivery, run: Run, letter: Letter) -> dict:
    where = f"E-mail delivery {delivery.delivery_id}"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        outcome = _attempt(delivery, letter)
        delivery = _record_attempt(delivery, run, outcome)
        if delivery.status == Delivery.Status.DELIVERED:
            return _record(delivery)
        if delivery.status == Delivery.Status.FAILED:
            raise DeliveryError(f"{where} was refused: {delivery.last_error}", transient=False)
        if attempt == MAX_ATTEMPTS:
            raise DeliveryError(f"{where} failed: {delivery.last_error} (gave up after {attempt} attempts)",
                            transient=True)  # fmt: skip
        delay = min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
        logger.warning("%s failed (%s); retrying in %.2fs", where, delivery.last_error, delay)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _attempt(delivery: Delivery, letter: Letter) -> _Outcome:
    """One attempt to the recipients not yet accepted; never raises for what
    the network or the server does."""
    addresses = [r["address"] for r in delivery.recipients]
    waiting = [index for index, r in enumerate(delivery.recipients) if r["status"] != ACCEPTED]
    message = EmailMessage(
        subject=letter.subject,
        body=letter.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[addresses[index] for index in waiting],
        headers={
            # Every attempt names every addressee; the envelope goes to those still waiting.
            "To": ", ".join(addresses),
            "Message-ID": delivery.message_id,
            "Date": format_datetime(delivery.created_at),
            "X-Keel-Delivery": str(delivery.delivery_id),
        },
    )
    if letter.attachment:
        message.attach(letter.attachment[0], letter.attachment[1], "application/pdf")
    mask = _Mask(addresses)
    connection = get_connection(settings.KEEL_EMAIL_BACKEND, timeout=settings.KEEL_EMAIL_TIMEOUT_SECONDS)
    try:
        connection.open()
        try:
            sent = connection.send_messages([message])
            smtp = getattr(connection, "connection", None)  # Keel's SMTP backend keeps the replies there
            reply, refused = getattr(smtp, "keel_reply", None), getattr(smtp, "keel_refused", None) or {}
        finally:
            connection.close()
    except smtplib.SMTPRecipientsRefused as error:  # every recipient refused
        return _refusals(waiting, addresses, error.recipients, mask, sent=False, reply=None)
    except smtplib.SMTPResponseException as error:  # the sender, the data, or the login refused
        code, text = error.smtp_code, _text(error.smtp_error)
        transient = 400 <= code < 500
        return _Outcome(transient=transient, code=code, error=mask(f"SMTP {code}: {text}"), receiver=_server())
    except (smtplib.SMTPException, OSError) as error:  # refused, dropped or timed out: try again
        return _Outcome(transient=True, error=mask(f"connection failed: {type(error).__name__}: {error}"))
    if not sent:
        return _Outcome(transient=True, error="the mail backend sent nothing")
    return _refusals(waiting, addresses, refused, mask, sent=True, reply=reply)


def _refusals(waiting: list[int], addresses: list[str], refused: dict, mask, *, sent: bool, reply) -> _Outcome:
    """Each waiting recipient's outcome: refused as the server said ({address: (code, text)}),
    else accepted when the message was sent (with the server's reply to it, when the
    backend keeps one: another Django backend has none to give)."""
    by_address = {}
    for index in waiting:
        by_address[sanitize_address(addresses[index], "utf-8").lower()] = index
        by_address[addresses[index].lower()] = index
    refusals = {
        by_address[address.lower()]: (code, _text(text))
        for address, (code, text) in refused.items()
        if address.lower() in by_address
    }
    code, text = reply if reply else (None, b"")
    said = mask(f"{code} {_text(text)}") if code else ""
    outcome = _Outcome(transient=False, code=code, receiver=f"{_server()}: {said}" if said else _server())
    for index in waiting:
        if index in refusals:
            refusal_code, refusal_text = refusals[index]
            status = REFUSED if refusal_code >= 500 else PENDING  # 4xx: deferred, asked again
            outcome.replies[index] = (status, mask(f"{refusal_code} {refusal_text}"))
        elif sent:
            outcome.replies[index] = (ACCEPTED, said)
    problems = [f"recipient {index + 1}: {reply}" for index, (status, reply) in sorted(outcome.replies.items())
                if status != ACCEPTED]  # fmt: skip
    if problems:
        outcome.error = f"the server refused {len(problems)} of {len(addresses)} recipients: " + "; ".join(problems)
        outcome.code = max(code for code, _ in refusals.values())
        outcome.transient = any(status == PENDING for status, _ in outcome.replies.values())
    return outcome


def _record_attempt(delivery: Delivery, run: Run, outcome: _Outcome) -> Delivery:
    """Count the attempt on the row, with each recipient's outcome, and record its audit events."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        recipients = [dict(recipient) for recipient in delivery.recipients]
        for index, (status, reply) in outcome.replies.items():
            recipients[index].update(status=status, reply=reply[:300])
        delivery.recipients = recipients
        delivery.attempts += 1
        delivery.last_status_code = outcome.code
        delivery.last_error = outcome.error
        if outcome.receiver:
            delivery.receiver = outcome.receiver[: Delivery._meta.get_field("receiver").max_length]
        statuses = [recipient["status"] for recipient in recipients]
        if all(status == ACCEPTED for status in statuses):
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = timezone.now()
        elif outcome.transient:
            delivery.status = Delivery.Status.PENDING  # while a later attempt may still succeed
        else:
            delivery.status = Delivery.Status.FAILED
        delivery.save()
        accepted = statuses.count(ACCEPTED)
        attempted = {"channel": "email", "attempt": delivery.attempts, "status_code": outcome.code,
                     "error": outcome.error or None, "receiver": outcome.receiver or None, "accepted": accepted,
                     "refused": statuses.count(REFUSED)}  # fmt: skip
        delivery_event(run, "delivery.attempted", delivery, attempted)
        if delivery.status == Delivery.Status.DELIVERED:
            delivery_event(
                run, "delivery.delivered", delivery, {"attempts": delivery.attempts, "receiver": delivery.receiver}
            )
    return delivery


def _hold(delivery: Delivery, run: Run) -> Delivery:
    """Keep the e-mail (row, Message-ID and content) unsent while the pipeline is paused."""
    if delivery.status != Delivery.Status.HELD:
        with transaction.atomic():
            Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.HELD)
            delivery.status = Delivery.Status.HELD
            delivery_event(run, "delivery.held", delivery, {"channel": "email"})
    return delivery


def _record(delivery: Delivery) -> dict:
    return {
        "delivery_id": str(delivery.delivery_id),
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "receiver": delivery.receiver,
        "status_code": delivery.last_status_code,
        "message_id": delivery.message_id,
        "recipients": len(delivery.recipients or []),
    }


def _server() -> str:
    return f"smtp://{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _text(value) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


class _Mask:
    """Replaces each recipient's address in a text with ``[recipient N]``, whatever its case."""

    def __init__(self, addresses: list[str]):
        # Longest first, so an address inside another is not cut out of it.
        self.addresses = sorted(((a.lower(), n) for n, a in enumerate(addresses, start=1)), key=lambda p: -len(p[0]))
        self._written = addresses

    def __call__(self, text: str) -> str:
        for address, number in self.addresses:
            lowered, start, pieces = text.lower(), 0, []
            if len(lowered) != len(text):  # a letter whose lower case is longer: match the case as written
                lowered, address = text, next(a for a in self._written if a.lower() == address)
            found = lowered.find(address)
            while found >= 0:
                pieces.append(text[start:found] + f"[recipient {number}]")
                start = found + len(address)
                found = lowered.find(address, start)
            text = "".join(pieces) + text[start:]
        return text
