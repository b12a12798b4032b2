"""Replay past runs and check every step against the audit chain.

    python manage.py run_replay 12 13
    python manage.py run_replay --all --since 2026-01-01 [--live]

Read-only: nothing is written to the runs, their steps, their deliveries or
the audit log. Exits non-zero when any step diverged.
"""

import datetime
import re

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import acting_as
from pipelines.models import Run
from pipelines.runs.replay import ReplayReport, runs_replay


class Command(BaseCommand):
    help = "Re-execute runs from their release snapshot and recordings; each step's output hash must match the chain."

    def add_arguments(self, parser):
        parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="The runs to replay.")
        parser.add_argument("--all", action="store_true", help="Replay every run created since --since.")
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="With --all: the first day to include.")
        parser.add_argument(
            "--live", action="store_true", help="Call the models again instead of using the recorded responses."
        )

    def handle(self, *args, **options):
        runs = self._runs(options["run_ids"], every=options["all"], since=options["since"])
        reports = []
        # Replay writes nothing; should anything record an event, it is replay's doing.
        with acting_as("replay"):
            for report in runs_replay(runs, live=options["live"]):
                self._print(report)
                reports.append(report)
        diverged = [report.run_id for report in reports if not report.ok]
        steps = sum(len(report.steps) for report in reports)
        mode = "live" if options["live"] else "recorded"
        summary = f"Replayed {len(reports)} run{'s' if len(reports) != 1 else ''} ({steps} steps, {mode})"
        if diverged:
            raise CommandError(f"{summary}: {len(diverged)} diverged: runs {', '.join(map(str, diverged))}.")
        self.stdout.write(self.style.SUCCESS(f"{summary}: every step matched."))

    def _runs(self, run_ids: list[str], *, every: bool, since: str | None):
        runs = Run.objects.select_related("pipeline", "release").order_by("pk")
        if every:
            if run_ids:
                raise CommandError("Give run ids or --all, not both.")
            if not since:
                raise CommandError("--all needs --since YYYY-MM-DD.")
            return runs.filter(created_at__gte=_day_start(since)).iterator(chunk_size=200)
        if since:
            raise CommandError("--since only goes with --all.")
        if not run_ids:
            raise CommandError("Give one or more run ids, or --all --since YYYY-MM-DD.")
        ids = []
        for value in run_ids:
            if not value.isdigit():
                raise CommandError(f"{value!r} is not a run id.")
            ids.append(int(value))
        found = {run.pk: run for run in runs.filter(pk__in=ids)}
        missing = [str(pk) for pk in ids if pk not in found]
        if missing:
            raise CommandError(f"No run with id {', '.join(missing)}.")
        return [found[pk] for pk in ids]

    def _print(self, report: ReplayReport) -> None:
        for step in report.steps:
            verdict = "match" if step.match else f"DIVERGED: {step.reason}"
            self.stdout.write(f"run {report.run_id} step {step.position} {step.kind} {step.name}: {verdict}")
            if step.diff:
                self.stdout.write(step.diff)
        for problem in report.problems:
            self.stdout.write(f"run {report.run_id}: DIVERGED: {problem}")
        if report.note:
            self.stdout.write(f"run {report.run_id}: {report.note}")


def _day_start(value: str) -> datetime.datetime:
    # fromisoformat alone would also take 20260101 or 2026-W01.
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(value)
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--since must be a date as YYYY-MM-DD, not {value!r}.") from None
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
