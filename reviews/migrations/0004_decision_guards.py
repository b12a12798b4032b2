from django.db import migrations


def install(apps, schema_editor):
    from reviews.db import install_guards

    install_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from reviews.db import remove_guards

    remove_guards(schema_editor.connection)


class Migration(migrations.Migration):
    # Needs the keel_refuse_change() function the pipelines guards create on PostgreSQL (recreated here anyway).
    dependencies = [("reviews", "0003_queue_counts_index"), ("pipelines", "0003_release_guards")]

    operations = [migrations.RunPython(install, remove)]
