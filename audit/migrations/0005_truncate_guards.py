"""PostgreSQL refuses TRUNCATE on the append-only tables (see audit/db.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from audit.db import install_truncate_guards

    install_truncate_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from audit.db import remove_truncate_guards

    remove_truncate_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_hash_unindexed")]

    operations = [migrations.RunPython(install, remove)]
