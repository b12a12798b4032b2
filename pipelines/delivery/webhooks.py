"""Webhook delivery: send a run's output to its consumer at least once, under a
stable delivery id, signed, and with a record of who received it.

The receiver gets a POST whose body is the canonical JSON of
``{"delivery_id", "run_id", "pipeline", "output"}`` (or, for a step with
``"format": "pdf"``, the PDF report itself as ``application/pdf``) and these
headers:

- ``X-Keel-Delivery``: the delivery id; the same on every attempt, by any
  worker, so a receiver drops repeats by remembering the ids it has seen;
- ``X-Keel-Signature``: ``sha256=`` + the hex HMAC-SHA256 of the exact body
  bytes, keyed with the secret in the environment variable the step names;
- ``X-Keel-Timestamp``: when this attempt was sent, in Unix seconds.

The secret is read at call time and goes nowhere but into the HMAC: not into
the database, the audit trail, the errors or the logs (what the receiver
answers is scrubbed of it). The body goes only to an address the workspace's
egress policy allows (``governance.egress``).
"""

import dataclasses
import hashlib
import hmac
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.canonical import canonical_bytes
from governance.credential_sources import CredentialError, scrub
from governance.credentials import credential_value
from governance.egress import EgressError
from pipelines.delivery.email import email_send
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.events import delivery_event
from pipelines.delivery.reports import report_build
from pipelines.http import post_to, shared_client, workspace_target
from pipelines.models import Delivery, Deployment, Run

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Waits between attempts: BACKOFF_BASE_SECONDS × 2^(attempt - 1), at most BACKOFF_CAP_SECONDS.
# What still fails is retried later by the engine, with the same delivery row.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 8.0
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class _Outcome:
    """What one attempt came to."""

    delivered: bool
    transient: bool
    status_code: int | None = None
    error: str = ""
    receiver: str = ""


def delivery_send(config: dict, document: dict, *, run_id: int, position: int) -> dict:
    """Deliver a deliver step's document to its webhook; returns the delivery's record.

    1. Read the signing secret; without one nothing is sent (a permanent error).
    2. Find or create the step's Delivery row, in a transaction of its own, before
       anything is sent. A delivered row is returned as it is; a row made for a
       different body is refused, so an id never stands for two outputs.
    3. POST the signed body up to MAX_ATTEMPTS times while the failures are
       transient, recording each attempt on the row and in the audit trail. No
       transaction or lock is held while a request is in flight.
    """
    if config.get("channel") == Delivery.Channel.EMAIL:
        return email_send(config, document, run_id=run_id, position=position)
    if config.get("channel") != Delivery.Channel.WEBHOOK:
        raise DeliveryError(f"Delivery channel {config.get('channel')!r} is not a webhook.")
    run = Run.objects.select_related("pipeline").get(pk=run_id)
    if run.environment != Deployment.Environment.PRODUCTION:
        # Staging and evaluation runs never reach an external consumer.
        return {"status": "withheld", "environment": run.environment, "delivery_id": None}
    secret = signing_secret(config, run.pipeline.workspace_id)
    make_body, content_type = _content(run, position, config, document)
    delivery, body = _delivery_for(run, position, config["url"], make_body)
    if delivery.status == Delivery.Status.DELIVERED:
        return delivery_record(delivery)
    if run_paused(run):
        return delivery_record(delivery_hold(delivery, run))
    return signed_send(delivery, run, body, secret=secret, content_type=content_type)


def signed_send(delivery: Delivery, run: Run, body: bytes, *, secret: str, content_type: str, headers=None) -> dict:
    """POST the signed body up to MAX_ATTEMPTS times while the failures are
    transient; returns the delivery's record, or raises DeliveryError."""
    url = delivery.url
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": content_type,
        "X-Keel-Delivery": str(delivery.delivery_id),
        "X-Keel-Signature": f"sha256={signature}",
        **(headers or {}),
    }
    where = f"Webhook delivery {delivery.delivery_id} to {_host(url)}"
    try:
        target = workspace_target(url, run.pipeline.workspace_id)
    except EgressError as error:
        _record_attempt(delivery, run, _Outcome(delivered=False, transient=False, error=f"egress refused: {error}"))
        raise DeliveryError(f"{where} was refused: egress refused: {error}", transient=False) from None
    # Redirects are not followed: the signed body goes only to the configured URL.
    client = shared_client()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        stamped = {**headers, "X-Keel-Timestamp": str(int(time.time()))}
        outcome = _post(client, target, url, body, stamped, secret)
        delivery = _record_attempt(delivery, run, outcome)
        if outcome.delivered:
            return delivery_record(delivery)
        if not outcome.transient:
            raise DeliveryError(f"{where} was refused: {outcome.error}", transient=False)
        if attempt == MAX_ATTEMPTS:
            raise DeliveryError(f"{where} failed: {outcome.error} (gave up after {attempt} attempts)", transient=True)
        delay = min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
        logger.warning("%s failed (%s); retrying in %.2fs", where, outcome.error, delay)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def signing_secret(config: dict, workspace_id: int) -> str:
    """The signing secret: the workspace credential the step names (a release
    cut before credentials names its variable in ``secret_env``)."""
    slug, legacy = config.get("credential", ""), config.get("secret_env", "")
    if not (slug or legacy):
        raise DeliveryError("The webhook step names no credential to sign with.", transient=False)
    try:
        return credential_value(workspace_id=workspace_id, slug=slug, env_name=legacy)
    except CredentialError as error:
        raise DeliveryError(f"Webhook signing secret: {error}", transient=False) from None


def _body(run: Run, delivery_id: uuid.UUID, document: dict) -> bytes:
    payload = {"delivery_id": str(delivery_id), "run_id": run.pk, "pipeline": run.pipeline.slug, "output": document}
    try:
        return canonical_bytes(payload)
    except (TypeError, ValueError) as error:
        raise DeliveryError(f"The output cannot be delivered as JSON: {error}", transient=False) from None


def _content(run: Run, position: int, config: dict, document: dict) -> tuple[Callable[[uuid.UUID], bytes], str]:
    """How the step's body is made from its delivery id, and its content type."""
    if config.get("format") == "pdf":
        # The report names the run, not the delivery: its bytes are the step's
        # recorded pdf_sha256 whatever id carries them.
        pdf = report_build(run_id=run.pk, position=position, document=document, config=config).pdf
        return (lambda delivery_id: pdf), "application/pdf"
    return (lambda delivery_id: _body(run, delivery_id, document)), "application/json"


def _delivery_for(run: Run, position: int, url: str, make_body) -> tuple[Delivery, bytes]:
    """The step's delivery row and the exact body its id is bound to."""
    delivery = Delivery.objects.filter(run=run, position=position).first()
    if delivery is None:
        delivery_id = uuid.uuid4()
        body = make_body(delivery_id)
        try:
            # Committed before the first request, so a worker that dies mid-send
            # leaves the id behind for the next one to reuse.
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    run=run,
                    position=position,
                    delivery_id=delivery_id,
                    channel=Delivery.Channel.WEBHOOK,
                    url=url,
                    payload_sha256=hashlib.sha256(body).hexdigest(),
                )
                delivery_event(
                    run, "delivery.created", delivery, {"url": url, "payload_sha256": delivery.payload_sha256}
                )
            return delivery, body
        except IntegrityError:
            delivery = Delivery.objects.get(run=run, position=position)  # another worker created it first
    body = make_body(delivery.delivery_id)
    if hashlib.sha256(body).hexdigest() != delivery.payload_sha256:
        # The engine feeds a step the same document every time; if it ever did
        # not, resending would put one delivery id on two different outputs.
        raise DeliveryError(
            f"Delivery {delivery.delivery_id} of step {position} was made for a different output; "
            "it is not sent with this one.",
            transient=False,
        )
    return delivery, body


def _post(client: httpx.Client, target, url: str, body: bytes, headers: dict, secret: str) -> _Outcome:
    """One attempt; never raises for what the network or the receiver does.
    What the receiver says is scrubbed of the secret before it is recorded."""
    outcome = _attempt(client, target, url, body, headers)
    return dataclasses.replace(
        outcome, error=scrub(outcome.error, [secret]), receiver=scrub(outcome.receiver, [secret])
    )


def _attempt(client: httpx.Client, target, url: str, body: bytes, headers: dict) -> _Outcome:
    try:
        reply = post_to(client, target, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
        return _Outcome(delivered=False, transient=False, error=f"bad URL: {error}")
    except httpx.TimeoutException as error:
        return _Outcome(delivered=False, transient=True, error=f"timed out ({type(error).__name__})")
    except httpx.TransportError as error:
        return _Outcome(delivered=False, transient=True, error=f"connection failed: {type(error).__name__}: {error}")
    status = reply.status_code
    receiver = _receiver(url, reply)
    if 200 <= status < 300:
        return _Outcome(delivered=True, transient=False, status_code=status, receiver=receiver)
    if status == 429 or status >= 500:
        return _Outcome(delivered=False, transient=True, status_code=status, error=f"HTTP {status}", receiver=receiver)
    # Any other answer (4xx, or a redirect we do not follow) will not change by asking again.
    text = reply.text[:300].strip()
    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    return _Outcome(delivered=False, transient=False, status_code=status, error=error, receiver=receiver)


def _record_attempt(delivery: Delivery, run: Run, outcome: _Outcome) -> Delivery:
    """Count the attempt on the row and record its audit events, after the request is over."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.last_error = outcome.error
        if outcome.receiver:
            delivery.receiver = outcome.receiver
        if outcome.delivered:
            delivery.status = Delivery.Status.DELIVERED
            delivery.delivered_at = timezone.now()
        else:
            # Pending while a later attempt may still succeed.
            delivery.status = Delivery.Status.PENDING if outcome.transient else Delivery.Status.FAILED
        delivery.save()
        delivery_event(
            run,
            "delivery.attempted",
            delivery,
            {
                "url": delivery.url,
                "attempt": delivery.attempts,
                "status_code": outcome.status_code,
                "error": outcome.error or None,
                "receiver": outcome.receiver or None,
            },
        )
        if outcome.delivered:
            delivery_event(
                run, "delivery.delivered", delivery, {"attempts": delivery.attempts, "receiver": delivery.receiver}
            )
    return delivery


def _host(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]  # never any credentials written into the URL


def _receiver(url: str, reply: httpx.Response) -> str:
    """Who answered: the host, and what it says it is (X-Receiver, then Server)."""
    parts = [_host(url)]
    for header in ("X-Receiver", "Server"):
        value = reply.headers.get(header, "").strip()
        if value:
            parts.append(f"{header}: {value}")
    return "; ".join(parts)[: Delivery._meta.get_field("receiver").max_length]


def delivery_record(delivery: Delivery) -> dict:
    return {
        "delivery_id": str(delivery.delivery_id),
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "receiver": delivery.receiver,
        "status_code": delivery.last_status_code,
    }


def run_paused(run: Run) -> bool:
    return Deployment.objects.filter(pipeline_id=run.pipeline_id, environment=run.environment, paused=True).exists()


def delivery_hold(delivery: Delivery, run: Run) -> Delivery:
    """Keep the delivery (row, id and body) unsent while the pipeline is paused."""
    if delivery.status != Delivery.Status.HELD:
        with transaction.atomic():
            Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.HELD)
            delivery.status = Delivery.Status.HELD
            delivery_event(run, "delivery.held", delivery, {"url": delivery.url})
    return delivery
