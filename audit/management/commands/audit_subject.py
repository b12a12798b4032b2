import json

from django.core.management.base import BaseCommand, CommandError

from audit.context import acting_as
from pipelines.redaction import subject_erase, subject_export, subject_search


class Command(BaseCommand):
    help = (
        "A data-subject request: find every run whose input or output names IDENTIFIER (an e-mail address or "
        "other identifier), export them for the person (--export FILE) or erase them by redaction (--erase). "
        "The request itself is recorded in the audit chain (by the identifier's hash)."
    )

    def add_arguments(self, parser):
        parser.add_argument("identifier")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--export", metavar="FILE", help="write the person's runs as JSON")
        action.add_argument("--erase", action="store_true", help="redact the runs' data (hashes kept)")
        parser.add_argument("--reason", default="", help="required with --erase: the request's reference")

    def handle(self, *args, identifier, export, erase, reason, **options):
        try:
            with acting_as("data-subject-request"):
                if erase:
                    if not reason.strip():
                        raise CommandError("--reason is required with --erase (the request's reference).")
                    runs = subject_erase(identifier=identifier, reason=reason, actor="data-subject-request")
                    self.stdout.write(f"Erased the data of {len(runs)} runs: {runs}")
                elif export:
                    document = subject_export(identifier=identifier, actor="data-subject-request")
                    try:
                        with open(export, "w") as handle:
                            json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
                    except OSError as error:
                        raise CommandError(f"--export: cannot write {export}: {error.strerror}") from None
                    self.stdout.write(f"Wrote {len(document['runs'])} runs to {export}")
                else:
                    runs = subject_search(identifier=identifier, actor="data-subject-request")
                    self.stdout.write(f"{len(runs)} runs name this identifier: {runs}")
        except ValueError as error:
            raise CommandError(str(error)) from None
