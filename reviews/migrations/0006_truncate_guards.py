"""PostgreSQL refuses TRUNCATE on the append-only tables (see reviews/db.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from reviews.db import install_truncate_guards

    install_truncate_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from reviews.db import remove_truncate_guards

    remove_truncate_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("reviews", "0005_decision_redaction")]

    operations = [migrations.RunPython(install, remove)]
