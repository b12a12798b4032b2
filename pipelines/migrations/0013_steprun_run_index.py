"""StepRun.run keeps no index of its own: steprun_unique_position (run,
position) leads with it. Only the index is dropped; the foreign key stays as
it is (Django's AlterField would drop and re-add it, checking every row)."""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "pipelines_steprun_run_id_d042ad8d"


def drop(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(INDEX)}")


def restore(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX {schema_editor.quote_name(INDEX)} ON {schema_editor.quote_name('pipelines_steprun')}"
        f" ({schema_editor.quote_name('run_id')})"
    )


class Migration(migrations.Migration):
    dependencies = [("pipelines", "0012_delivery_notices")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="steprun",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="steps",
                        to="pipelines.run",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop, restore)],
        ),
    ]
