from django.db import migrations, models


def install(apps, schema_editor):
    from reviews.db import install_guards

    install_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from audit.db import immutable_install
    from reviews.db import TABLE, remove_guards

    remove_guards(schema_editor.connection)
    immutable_install(schema_editor.connection, (TABLE,))


class Migration(migrations.Migration):
    dependencies = [("reviews", "0004_decision_guards")]

    operations = [
        # The guard still refuses every UPDATE while the column is added (SQLite
        # adds it by copying the table, which the guard does not see).
        migrations.AddField(
            model_name="reviewdecision",
            name="redacted_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(install, remove),
    ]
