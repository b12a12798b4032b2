import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import verify
from audit.checkpoints import CheckpointError, audit_checkpoints_verify, chain_against_checkpoint
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = "Recompute the audit chain; print the count and head hash, or the first break."

    def add_arguments(self, parser):
        parser.add_argument(
            "--checkpoints",
            action="store_true",
            help="also check the signed checkpoints (KEEL_CHECKPOINT_DIR): catches events deleted from the end",
        )
        parser.add_argument("--checkpoint-dir", help="read checkpoints from here instead of KEEL_CHECKPOINT_DIR")
        parser.add_argument(
            "--export",
            metavar="FILE",
            help="also check a JSONL export: offline as python -m audit.verify does (its signature too when "
            "KEEL_CHECKPOINT_KEY is set), then its manifest against the audit.exported event and its ends "
            "against the live chain",
        )

    def handle(self, *args, **options):
        # With the checkpoint key set, the newest signed checkpoint always
        # counts: a chain cut short at the end is broken, not merely shorter.
        result = chain_against_checkpoint(audit_chain_verify(), directory=options["checkpoint_dir"])
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at #{result.broken_seq}: {result.reason} "
                f"({result.count} events verified before it)."
            )
        self.stdout.write(f"Audit chain intact: {result.count} events, head {result.head_hash}")
        if options["export"]:
            self._check_export(options["export"])
        if not options["checkpoints"]:
            return
        try:
            report = audit_checkpoints_verify(directory=options["checkpoint_dir"])
        except CheckpointError as error:
            raise CommandError(str(error)) from None
        if not report.ok:
            raise CommandError("Checkpoints do not match the chain:\n  " + "\n  ".join(report.problems))
        if not report.checked:
            raise CommandError("No checkpoints found: nothing shows whether events are missing from the end.")
        self.stdout.write(f"Checkpoints match: {report.checked} checked, newest #{report.newest_seq}")

    def _check_export(self, path: str) -> None:
        key = settings.KEEL_CHECKPOINT_KEY or None
        try:
            with open(path, "rb") as handle:
                summary = verify.verify_file(handle, key=key)
        except OSError as error:
            raise CommandError(f"--export: cannot read {path}: {error.strerror or error}") from None
        except verify.Bad as bad:
            raise CommandError(f"Export {path} fails verification at {bad}") from None
        manifest = summary["manifest"]
        event = AuditEvent.objects.filter(seq=manifest.get("export_event_seq"), action="audit.exported").first()
        if event is None:
            raise CommandError(
                f"Export {path}: the chain holds no audit.exported event #{manifest.get('export_event_seq')}."
            )
        recorded = None if event.is_redacted else json.loads(event.payload).get("manifest_sha256")
        if recorded != manifest["manifest_sha256"]:
            raise CommandError(
                f"Export {path}: its manifest is not the one audit.exported #{event.seq} records "
                f"({recorded or 'no manifest hash'}): the manifest was changed."
            )
        ends = {
            row["seq"]: row
            for row in AuditEvent.objects.filter(seq__in=[summary["first_seq"], summary["last_seq"]]).values(
                "seq", "prev_hash", "hash"
            )
        }
        first, last = ends.get(summary["first_seq"]), ends.get(summary["last_seq"])
        if (
            first is None
            or last is None
            or first["prev_hash"] != summary["first_prev_hash"]
            or last["hash"] != summary["last_hash"]
        ):
            raise CommandError(
                f"Export {path}: its events #{summary['first_seq']}..#{summary['last_seq']} are not the live chain's."
            )
        signed = "signature checked" if key else "signature not checked (KEEL_CHECKPOINT_KEY is not set)"
        self.stdout.write(
            f"Export {path} matches the chain: {summary['events']} events, manifest recorded by "
            f"audit.exported #{event.seq}, {signed}"
        )
