from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand

from audit.context import acting_as
from pipelines.management.commands._release import pipeline_named, refusal, user_named
from pipelines.releases.deploy import deployment_rollback


class Command(BaseCommand):
    help = "Put an earlier approved release live in production at once (any canary stops)."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="The pipeline's slug.")
        parser.add_argument("--to", type=int, required=True, help="The release number to put live.")
        parser.add_argument("--user", required=True, help="Who is rolling back (needs the deploy right).")
        parser.add_argument("--reason", default="", help="Recorded in the audit trail.")

    def handle(self, *args, **options):
        pipeline = pipeline_named(options["pipeline"])
        user = user_named(options["user"])
        try:
            with acting_as(user):
                deployment = deployment_rollback(
                    pipeline=pipeline, to_number=options["to"], actor=user, reason=options["reason"]
                )
        except (ValidationError, PermissionDenied) as error:
            raise refusal(error) from None
        self.stdout.write(f"{pipeline.slug}: release #{deployment.release.number} is live in production.")
