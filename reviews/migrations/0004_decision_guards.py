from django.db import migrations

TABLE = "reviews_reviewdecision"


# As first shipped: every UPDATE and DELETE refused. 0005 lets the redaction
# of a decision's personal data through (reviews/db.py).
def install(apps, schema_editor):
    from audit.db import immutable_install

    immutable_install(schema_editor.connection, (TABLE,))


def remove(apps, schema_editor):
    from audit.db import immutable_remove

    immutable_remove(schema_editor.connection, (TABLE,))


class Migration(migrations.Migration):
    # Needs the keel_refuse_change() function the pipelines guards create on PostgreSQL (recreated here anyway).
    dependencies = [("reviews", "0003_queue_counts_index"), ("pipelines", "0003_release_guards")]

    operations = [migrations.RunPython(install, remove)]
