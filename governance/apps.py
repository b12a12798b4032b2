from django.apps import AppConfig, apps
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs) -> None:
    from governance.roles import role_groups_ensure

    role_groups_ensure()


class GovernanceConfig(AppConfig):
    name = "governance"

    def ready(self) -> None:
        from config.celery import log_eager_notice
        from governance import identity, signals

        signals.connect()
        identity.connect()
        # After the last of Keel's apps migrates (reviews, whose records the
        # staff roles may view in the admin), so every permission exists.
        post_migrate.connect(_ensure_roles, sender=apps.get_app_config("reviews"), dispatch_uid="keel_ensure_roles")
        log_eager_notice()
