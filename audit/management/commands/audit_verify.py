from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import CheckpointError, audit_checkpoints_verify, chain_against_checkpoint
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
