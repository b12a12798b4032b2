from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand

from audit.context import acting_as
from pipelines.management.commands._release import pipeline_named, refusal, user_named
from pipelines.releases.pause import pipeline_pause, pipeline_unpause


class Command(BaseCommand):
    help = "Emergency pause: stop new runs of a pipeline and hold its deliveries (--unpause undoes it)."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="The pipeline's slug.")
        parser.add_argument("--reason", default="", help="Why; required to pause.")
        parser.add_argument("--user", required=True, help="Who is acting (needs the deploy right).")
        # --resume is the flag's older name, kept for scripts that use it.
        parser.add_argument(
            "--unpause",
            "--resume",
            dest="unpause",
            action="store_true",
            help="Unpause, sending held deliveries.",
        )

    def handle(self, *args, **options):
        pipeline = pipeline_named(options["pipeline"])
        user = user_named(options["user"])
        try:
            with acting_as(user):
                if options["unpause"]:
                    held = pipeline_unpause(pipeline=pipeline, actor=user, reason=options["reason"])
                    self.stdout.write(f"{pipeline.slug} unpaused; {held} held deliveries are being sent.")
                else:
                    pipeline_pause(pipeline=pipeline, actor=user, reason=options["reason"])
                    self.stdout.write(f"{pipeline.slug} is paused: new runs are refused, deliveries held.")
        except (ValidationError, PermissionDenied) as error:
            raise refusal(error) from None
