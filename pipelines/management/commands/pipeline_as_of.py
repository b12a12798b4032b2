import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand

from pipelines.management.commands._release import pipeline_named, refusal
from pipelines.releases.as_of import parse_moment, pipeline_as_of


class Command(BaseCommand):
    help = "What was live for a pipeline at a moment: release, canary, pause, approvers, deployer, configuration."

    def add_arguments(self, parser):
        parser.add_argument("pipeline", help="The pipeline's slug.")
        parser.add_argument("at", help="An ISO 8601 moment, e.g. 2026-11-03T14:00Z (UTC when no zone is given).")
        parser.add_argument("--json", action="store_true", help="Print the whole answer, configuration included.")

    def handle(self, *args, **options):
        pipeline = pipeline_named(options["pipeline"])
        try:
            at = parse_moment(options["at"])
        except ValidationError as error:
            raise refusal(error) from None
        answer = pipeline_as_of(pipeline=pipeline, at=at)
        if options["json"]:
            self.stdout.write(json.dumps(answer, indent=2, ensure_ascii=False))
            return
        self.stdout.write(f"{pipeline.slug} at {answer['at']}:")
        for environment, live in answer["environments"].items():
            if live is None:
                self.stdout.write(f"  {environment}: nothing live")
                continue
            canary = live["canary"]
            canary_text = f"#{canary['release']} at {canary['share']}%" if canary else "none"
            paused = f"yes ({live['pause_reason']})" if live["paused"] else "no"
            self.stdout.write(
                f"  {environment}: release #{live['release']} ({live['fingerprint'][:12]}), "
                f"author {live['author'] or 'system'}, approved by {', '.join(live['approved_by']) or 'nobody'}, "
                f"deployed by {live['deployed']['by'] or 'system'} at {live['deployed']['at']}; "
                f"canary {canary_text}; paused {paused}"
            )
