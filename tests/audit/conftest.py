"""Runs to audit: a run in acme and one in globex, made directly (the audit
pages read what the engine wrote; the engine has its own tests)."""

import pytest

from audit.context import acting_as
from audit.services import audit_record
from governance.roles import AUDITORS
from pipelines.models import Run, StepRun
from pipelines.releases.cut import release_cut
from tests.conftest import _persona


def make_run(pipeline, actor, *, email="ada@example.com", status=Run.Status.COMPLETED, **fields) -> Run:
    with acting_as(actor):
        release = pipeline.releases.order_by("-number").first() or release_cut(pipeline=pipeline, actor=actor)
        run = Run.objects.create(
            pipeline=pipeline,
            release=release,
            environment="production",
            status=status,
            input={"subject": "Where is my parcel?", "customer_email": email},
            input_sha256="a" * 64,
            trigger=Run.Trigger.CLI,
            seed=7,
            output={"reply": f"Dear {email}, it is on its way."},
            **fields,
        )
        StepRun.objects.create(
            run=run, position=1, name="classify", kind="model", status="completed",
            input={"body": f"from {email}"}, output={"label": "shipping"}, output_sha256="b" * 64,
        )  # fmt: skip
        audit_record(
            action="run.started",
            object_type="run",
            object_id=run.pk,
            payload={"release": release.number, "fingerprint": release.fingerprint, "input_sha256": run.input_sha256},
            workspace_id=pipeline.workspace_id,
            pipeline_id=pipeline.pk,
        )
        audit_record(
            action="run.completed",
            object_type="run",
            object_id=run.pk,
            payload={"output_sha256": "c" * 64},
            workspace_id=pipeline.workspace_id,
            pipeline_id=pipeline.pk,
        )
    return run


@pytest.fixture
def acme_run(acme_config, superuser) -> Run:
    return make_run(acme_config["pipeline"], superuser)


@pytest.fixture
def globex_run(globex_config, superuser) -> Run:
    return make_run(globex_config["pipeline"], superuser, email="grace@example.org")


@pytest.fixture
def globex_auditor(globex, superuser):
    return _persona("globex-auditor", AUDITORS, globex, superuser)
