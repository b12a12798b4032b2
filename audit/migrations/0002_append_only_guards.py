from django.db import migrations


def install(apps, schema_editor):
    from audit.db import install_guards

    install_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from audit.db import remove_guards

    remove_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
