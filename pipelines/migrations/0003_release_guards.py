from django.db import migrations


def install(apps, schema_editor):
    from pipelines.db import install_guards

    install_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from pipelines.db import remove_guards

    remove_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("pipelines", "0002_releases_and_deployments")]

    operations = [migrations.RunPython(install, remove)]
