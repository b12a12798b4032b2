"""PostgreSQL refuses TRUNCATE on the append-only tables (see pipelines/db.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from pipelines.db import install_truncate_guards

    install_truncate_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from pipelines.db import remove_truncate_guards

    remove_truncate_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("pipelines", "0016_run_requested_by")]

    operations = [migrations.RunPython(install, remove)]
