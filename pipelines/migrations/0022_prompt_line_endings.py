"""Prompt bodies saved from a browser before this migration may end their
lines CRLF; from now on they are stored with LF only (PromptTemplate.save).
Rewrites the stored bodies once so that the next save of an unchanged prompt
is recognised as unchanged. History records keep what was stored then."""

from django.db import migrations
from django.utils.text import normalize_newlines


def bodies_to_lf(apps, schema_editor):
    PromptTemplate = apps.get_model("pipelines", "PromptTemplate")
    for prompt in PromptTemplate.objects.filter(body__contains="\r").only("pk", "body"):
        PromptTemplate.objects.filter(pk=prompt.pk).update(body=normalize_newlines(prompt.body))


class Migration(migrations.Migration):
    dependencies = [
        ("pipelines", "0021_provider_choices"),
    ]

    operations = [migrations.RunPython(bodies_to_lf, migrations.RunPython.noop)]
