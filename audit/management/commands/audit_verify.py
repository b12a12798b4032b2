from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = "Recompute the audit chain; print the count and head hash, or the first break."

    def handle(self, *args, **options):
        result = audit_chain_verify()
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at #{result.broken_seq}: {result.reason} "
                f"({result.count} events verified before it)."
            )
        self.stdout.write(f"Audit chain intact: {result.count} events, head {result.head_hash}")
