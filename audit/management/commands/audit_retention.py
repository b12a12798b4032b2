from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from audit.context import acting_as
from audit.models import RetentionPolicy
from audit.services import retention_policy_set
from governance.models import Workspace
from pipelines.runs.redaction import retention_apply


class Command(BaseCommand):
    help = (
        "Retention of personal data per workspace (runs and everything of their story, unfinished runs cancelled "
        "first; evaluation cases and results): --workspace W --days N sets it, --apply redacts what is past it now "
        "(the nightly task does the same); with neither, list the policies."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workspace", help="workspace id or slug")
        parser.add_argument("--days", type=int, help="keep run data this many days")
        parser.add_argument("--apply", action="store_true", help="redact personal data past its retention now")

    def handle(self, *args, workspace, days, apply, **options):

        if (workspace is None) != (days is None):
            raise CommandError("--workspace and --days go together.")
        if workspace is not None:
            row = Workspace.objects.filter(**({"pk": int(workspace)} if workspace.isdigit() else {"slug": workspace}))
            if not row.exists():
                raise CommandError(f"--workspace: there is no workspace {workspace!r}.")
            try:
                with acting_as("cli"):
                    retention_policy_set(workspace_id=row.get().pk, run_data_days=days, actor="cli")
            except ValidationError as error:
                raise CommandError(f"--days: {' '.join(error.message_dict['run_data_days'])}") from None
        if apply:
            with acting_as("retention"):
                for workspace_id, counts in retention_apply().items():
                    done = ", ".join(f"{what.replace('_', ' ')} {count}" for what, count in counts.items())
                    self.stdout.write(f"workspace {workspace_id}: redacted {done}")
        for policy in RetentionPolicy.objects.order_by("workspace_id"):
            self.stdout.write(str(policy))
