import os
import sys
from datetime import UTC, datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.access import audit_scope_for, visible_names
from audit.context import acting_as
from audit.exports import FORMATS, AuditFilter, AuditScope, ExportError, audit_export_start, export_chunks
from governance.models import Workspace
from pipelines.models import Pipeline


def _moment(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{option} must be an ISO 8601 date or time (2026-03-01 or 2026-03-01T09:30Z), not {value!r}."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _object_id(option: str, model, value: str | None) -> int | None:
    """A workspace or pipeline named by its id or its slug. An id is taken as
    it is: the timeline outlives the rows it names."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    row = model.objects.filter(slug=value).first()
    if row is None:
        raise CommandError(f"{option}: there is no {model._meta.verbose_name} {value!r}.")
    return row.pk


class Command(BaseCommand):
    help = (
        "Export audit events (JSONL, CSV or PDF) with hash-only entries for the events the filter leaves out "
        "and a manifest; verify a JSONL export offline with `python -m audit.verify FILE`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="first moment included (ISO 8601; UTC unless it says otherwise)")
        parser.add_argument("--until", help="first moment no longer included")
        parser.add_argument("--workspace", help="workspace id or slug")
        parser.add_argument("--pipeline", help="pipeline id or slug")
        parser.add_argument("--actor", help="only events by this actor name")
        parser.add_argument("--action", help="only this action and those under it (run matches run.started)")
        parser.add_argument("--run", type=int, help="only the events of this run")
        parser.add_argument("--format", default="jsonl", help=f"one of {', '.join(FORMATS)} (default jsonl)")
        parser.add_argument("--output", help="file to write (default: standard output)")
        parser.add_argument(
            "--as-user", help="export only what this user may see (view_audit), and record the export as theirs"
        )

    def handle(self, *args, **options):

        fmt = options["format"]
        if fmt not in FORMATS:
            raise CommandError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
        audit_filter = AuditFilter(
            since=_moment("--since", options["since"]),
            until=_moment("--until", options["until"]),
            workspace_id=_object_id("--workspace", Workspace, options["workspace"]),
            pipeline_id=_object_id("--pipeline", Pipeline, options["pipeline"]),
            actor=options["actor"],
            action=options["action"],
            run_id=options["run"],
        )
        actor, scope = "cli", AuditScope(everything=True)  # the shell already has the database's rights
        if options["as_user"]:
            actor = get_user_model().objects.filter(username=options["as_user"]).first()
            if actor is None:
                raise CommandError(f"--as-user: there is no user {options['as_user']!r}.")
            scope = audit_scope_for(actor)
        target = options["output"]
        # Written beside the target and renamed into place: never a half-written export.
        part = f"{target}.part" if target else None
        try:
            out = open(part, "wb") if part else sys.stdout.buffer  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"--output: cannot write {target}: {error.strerror}") from None
        try:
            with acting_as(actor):
                try:
                    names = visible_names(scope) if fmt == "pdf" else None
                    plan = audit_export_start(scope=scope, audit_filter=audit_filter, fmt=fmt, actor=actor, names=names)
                except ExportError as error:
                    raise CommandError(str(error)) from None
            for chunk in export_chunks(plan, fmt):
                out.write(chunk)
        except BaseException:
            if part:
                out.close()
                os.unlink(part)
            raise
        if part:
            out.close()
            os.replace(part, target)
            self.stderr.write(f"Wrote {target} (export event #{plan.export_event_seq}).")
        else:
            out.flush()
