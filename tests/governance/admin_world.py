"""One object of every model the admin shows, in a workspace, made the way
production makes them (services where a service exists), for the admin walk
and crawl (tests/governance/test_admin_walk.py).

``world(workspace)`` returns {model: instance}. A model registered in the
admin later and missing from ``MAKERS`` is made by ``make_generic`` (every
required field filled from its type); give it a line in ``MAKERS`` when that
is not enough.
"""

import hashlib
import uuid
from datetime import timedelta
from decimal import Decimal

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from audit.context import acting_as
from pipelines.integration.schedules import schedule_save
from pipelines.integration.tokens import token_create
from pipelines.models import Delivery, Document, EvaluationCase, PipelineSchedule, Run
from reviews.models import ReviewTask
from reviews.services import review_decide
from tests import factories
from tests.reviews.conftest import gated_pipeline, hold


def _first(model, **filters):
    return apps.get_model(model).objects.filter(**filters).order_by("pk").first()


def world(workspace, *, superuser) -> dict[str, models.Model]:
    """Every kind of governed object in ``workspace``, keyed by model label."""
    slug = workspace.slug
    pipeline = gated_pipeline(workspace, superuser=superuser, author=None, slug=f"{slug}-walk")
    with acting_as(superuser):
        prompt = factories.PromptTemplateFactory(workspace=workspace, slug=f"{slug}-walk-prompt")
        model_config = factories.ModelConfigFactory(workspace=workspace, slug=f"{slug}-walk-model")
        decided = hold(pipeline, subject="First ticket")
        held = hold(pipeline, subject="Second ticket")
        task = ReviewTask.objects.get(run=decided)
        decision = review_decide(task=task, actor=superuser, decision="reject", reason="Not for the walk.")
        dead = Delivery.objects.create(
            run=decided, position=99, channel="webhook", url="https://hooks.example.com/x",
            status=Delivery.Status.FAILED, attempts=5, payload_sha256="0" * 64, last_error="HTTP 500",
        )  # fmt: skip
        content = f"{slug} document".encode()
        document = Document.objects.create(
            run=held, pipeline=pipeline, content=content, sha256=hashlib.sha256(content).hexdigest(),
            size=len(content), content_type=Document.ContentType.TEXT, filename=f"{slug}.txt",
        )  # fmt: skip
        case = EvaluationCase.objects.create(pipeline=pipeline, name=f"{slug} case", input={"subject": "Hello"})
        schedule = schedule_save(
            schedule=PipelineSchedule(
                pipeline=pipeline, name=f"{slug} monthly", cron="0 9 1 * *", input={"subject": "Report", "draft": "x"}
            ),
            actor=superuser,
        )
        token, _ = token_create(user=superuser, name=f"{slug} system", workspace=workspace, actor=superuser)
        budget = apps.get_model("pipelines.Budget").objects.create(
            pipeline=pipeline, soft_limit=Decimal("10"), hard_limit=Decimal("20")
        )
    objects = {
        "governance.Workspace": workspace,
        "governance.ApprovalPolicy": pipeline.approval_policy,
        "governance.ChangePolicy": _first("governance.ChangePolicy", workspace=workspace),
        "pipelines.Pipeline": pipeline,
        "pipelines.PromptTemplate": prompt,
        "pipelines.ModelConfig": model_config,
        "pipelines.Release": pipeline.releases.order_by("pk").first(),
        "pipelines.Deployment": pipeline.deployments.order_by("pk").first(),
        "pipelines.Evaluation": _first("pipelines.Evaluation", release__pipeline=pipeline),
        "pipelines.EvaluationCase": case,
        "pipelines.Run": held,
        "pipelines.DeadLetter": apps.get_model("pipelines.DeadLetter").objects.get(pk=dead.pk),
        "pipelines.Document": document,
        "pipelines.PipelineSchedule": schedule,
        "pipelines.ServiceToken": token,
        "pipelines.Budget": budget,
        "reviews.ReviewTask": task,
        "reviews.ReviewDecision": decision,
        "audit.AuditEvent": _first("audit.AuditEvent", workspace_id=workspace.pk),
    }
    assert isinstance(objects["pipelines.Run"], Run)
    return objects


def site_objects(*, superuser) -> dict[str, models.Model]:
    """One row of each model that belongs to no workspace (accounts, sign-in
    records, second factors, beat's tables): only superusers manage them."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django_celery_beat.models import ClockedSchedule, IntervalSchedule, SolarSchedule
    from django_otp.plugins.otp_totp.models import TOTPDevice

    now = timezone.now()
    attempt = {"user_agent": "walk", "ip_address": "127.0.0.1", "username": "walker", "http_accept": "*/*",
               "path_info": "/admin/login/"}  # fmt: skip
    return {
        "auth.User": superuser,
        "auth.Group": Group.objects.order_by("pk").first() or Group.objects.create(name="walkers"),
        "axes.AccessAttempt": AccessAttempt.objects.create(
            **attempt, get_data="", post_data="", failures_since_start=1
        ),
        "axes.AccessLog": AccessLog.objects.create(**attempt, attempt_time=now),
        "axes.AccessFailureLog": AccessFailureLog.objects.create(**attempt, locked_out=False),
        "otp_totp.TOTPDevice": TOTPDevice.objects.create(user=superuser, name="walk phone", confirmed=True),
        "django_celery_beat.PeriodicTask": apps.get_model("django_celery_beat.PeriodicTask").objects.first(),
        "django_celery_beat.CrontabSchedule": apps.get_model("django_celery_beat.CrontabSchedule").objects.first(),
        "django_celery_beat.IntervalSchedule": IntervalSchedule.objects.create(every=10, period="seconds"),
        "django_celery_beat.SolarSchedule": SolarSchedule.objects.create(event="sunrise", latitude=1, longitude=1),
        "django_celery_beat.ClockedSchedule": ClockedSchedule.objects.create(clocked_time=now + timedelta(days=1)),
    }


def make_generic(model: type[models.Model]) -> models.Model:
    """A row of a model nobody told the walk how to make: every required field
    filled from its type, related rows taken from what exists (a user, or the
    far side of a one-to-one, made new)."""
    values = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.has_default() or field.null or getattr(field, "auto_now_add", False):
            continue
        if field.is_relation and field.related_model is get_user_model():
            # A row tied to a user (a device, an account) gets a user of its own,
            # never one of the personas.
            values[field.name] = factories.UserFactory(username=f"walk-{uuid.uuid4().hex[:8]}")
        elif field.is_relation and field.one_to_one:
            values[field.name] = make_generic(field.related_model)
        elif field.is_relation:
            values[field.name] = field.related_model._default_manager.order_by("pk").first()
        elif isinstance(field, models.BooleanField):
            values[field.name] = False
        elif isinstance(field, models.IntegerField | models.DecimalField | models.FloatField):
            values[field.name] = 1
        elif isinstance(field, models.UUIDField):
            values[field.name] = uuid.uuid4()
        elif isinstance(field, models.DateTimeField):
            values[field.name] = timezone.now()
        elif isinstance(field, models.JSONField):
            values[field.name] = {}
        else:
            values[field.name] = f"walk-{uuid.uuid4().hex[:8]}"
    return model._default_manager.create(**values)
