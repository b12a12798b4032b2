from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0004_credentials_and_allowed_hosts"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalworkspace",
            name="change_reason_required",
            field=models.BooleanField(
                default=False,
                help_text="Every edit of this workspace's configuration must say why (the reason goes into the "
                "history and the audit trail); otherwise a reason is asked for but optional.",
                verbose_name="change reasons required",
            ),
        ),
        migrations.AddField(
            model_name="workspace",
            name="change_reason_required",
            field=models.BooleanField(
                default=False,
                help_text="Every edit of this workspace's configuration must say why (the reason goes into the "
                "history and the audit trail); otherwise a reason is asked for but optional.",
                verbose_name="change reasons required",
            ),
        ),
    ]
