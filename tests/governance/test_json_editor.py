"""JSON fields are edited pretty-printed in a monospace editor; bad JSON is
refused at its line and column, and the text comes back as it was typed."""

import json

from django.urls import reverse

from tests.governance.admin_forms import as_posted


def test_json_is_shown_pretty_printed_in_the_editor(client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    pipeline.input_schema = {"type": "object", "required": ["subject"], "properties": {"subject": {"type": "string"}}}
    pipeline.save()
    client.force_login(lead)
    response = client.get(reverse("admin:pipelines_pipeline_change", args=[pipeline.pk]))
    field = response.context["adminform"].form["input_schema"]
    assert field.value() == json.dumps(pipeline.input_schema, indent=2, ensure_ascii=False)
    assert 'class="keel-json"' in str(field)
    assert "&quot;type&quot;: &quot;object&quot;,\n" in str(field)


def test_bad_json_is_refused_at_its_line_and_column_and_kept_as_typed(client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    client.force_login(lead)
    url = reverse("admin:pipelines_pipeline_change", args=[pipeline.pk])
    typed = '{\n  "type": "object",\n  "required": ["subject"]\n  "properties": {}\n}'
    before = pipeline.input_schema
    response = client.post(url, {**as_posted(client.get(url)), "input_schema": typed, "change_reason": "schema"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["input_schema"] == ["line 4, column 3: Expecting ',' delimiter"]
    assert response.context["adminform"].form["input_schema"].value() == typed
    pipeline.refresh_from_db()
    assert pipeline.input_schema == before
    assert pipeline.history.count() == 1


def test_reindenting_the_same_json_is_not_a_change(client, lead, acme_config):
    policy = acme_config["policy"]
    client.force_login(lead)
    url = reverse("admin:governance_approvalpolicy_change", args=[policy.pk])
    data = as_posted(client.get(url))
    json_fields = [name for name, field in client.get(url).context["adminform"].form.fields.items()
                   if type(field).__name__ == "JSONEditorField"]  # fmt: skip
    assert json_fields
    for name in json_fields:
        data[name] = json.dumps(json.loads(data[name]))  # one line again
    versions = policy.history.count()
    assert client.post(url, data).status_code == 302
    assert policy.history.count() == versions
