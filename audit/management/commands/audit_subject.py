import json

from django.core.management.base import BaseCommand, CommandError

from audit.context import acting_as
from pipelines.runs.redaction import subject_erase, subject_export, subject_search


class Command(BaseCommand):
    help = (
        "A data-subject request: find every copy of IDENTIFIER (an e-mail address or other identifier) in every "
        "table that stores personal data, export the person's data (--export FILE) or erase it by redaction "
        "(--erase). The request itself is recorded in the audit chain under a keyed hash of the identifier."
    )

    def add_arguments(self, parser):
        parser.add_argument("identifier")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--export", metavar="FILE", help="write the person's data as JSON")
        action.add_argument("--erase", action="store_true", help="redact every copy (hashes kept)")
        parser.add_argument("--reason", default="", help="required with --erase: the request's reference")

    def handle(self, *args, identifier, export, erase, reason, **options):
        try:
            with acting_as("data-subject-request"):
                if erase:
                    if not reason.strip():
                        raise CommandError("--reason is required with --erase (the request's reference).")
                    erased = subject_erase(identifier=identifier, reason=reason, actor="data-subject-request")
                    self._tables(erased["tables"])
                    self.stdout.write(f"Erased: {len(erased['runs'])} runs with their whole story: {erased['runs']}")
                    self._kept(erased["kept"])
                elif export:
                    document = subject_export(identifier=identifier, actor="data-subject-request")
                    try:
                        with open(export, "w") as handle:
                            json.dump(document, handle, indent=2, ensure_ascii=False, default=str)
                    except OSError as error:
                        raise CommandError(f"--export: cannot write {export}: {error.strerror}") from None
                    self.stdout.write(f"Wrote {len(document['runs'])} runs to {export}")
                else:
                    found = subject_search(identifier=identifier, actor="data-subject-request")
                    self._tables(found["tables"])
                    total = sum(found["tables"].values())
                    self.stdout.write(f"{total} rows name this identifier; {len(found['runs'])} runs: {found['runs']}")
                    self._kept(found["kept"])
        except ValueError as error:
            field = "--reason" if "reason" in str(error) else "identifier"
            raise CommandError(f"{field}: {error}") from None

    def _tables(self, tables: dict[str, int]) -> None:
        width = max(map(len, tables), default=0)
        for table, count in sorted(tables.items()):
            self.stdout.write(f"{table:<{width}}  {count}")

    def _kept(self, kept: dict[str, int]) -> None:
        # Configuration is never erased (pipelines/runs/personal_data.py says why): say where it is named.
        for table, count in sorted(kept.items()):
            self.stdout.write(f"kept, never erased: {table} {count}")
