"""The event hash loses its indexes (see AuditEvent.hash).

On PostgreSQL the unique constraint and its pattern index are dropped. SQLite
cannot drop a column's UNIQUE without rebuilding the table, and a rebuild
would also drop the append-only triggers (audit/db.py): there the index stays,
a constraint that can never fire, as seq is the key and part of every hash.
"""

from django.db import migrations, models


def _fields(apps):
    model = apps.get_model("audit", "AuditEvent")
    indexed = model._meta.get_field("hash")
    plain = models.CharField(max_length=64)
    plain.set_attributes_from_name("hash")
    plain.model = model
    return model, indexed, plain


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        model, indexed, plain = _fields(apps)
        schema_editor.alter_field(model, indexed, plain)


def restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        model, indexed, plain = _fields(apps)
        schema_editor.alter_field(model, plain, indexed)


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_retention_policy")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(model_name="auditevent", name="hash", field=models.CharField(max_length=64)),
            ],
            database_operations=[migrations.RunPython(drop, restore)],
        ),
    ]
