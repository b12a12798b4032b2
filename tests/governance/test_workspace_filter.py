from django.urls import reverse


def test_the_workspace_filter_lists_only_workspaces_the_user_may_see(client, author, acme_config, globex_config):
    client.force_login(author)
    response = client.get(reverse("admin:pipelines_prompttemplate_changelist"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Acme" in page
    assert "Globex" not in page


def test_a_superuser_sees_every_workspace_in_the_filter(client, superuser, acme_config, globex_config):
    client.force_login(superuser)
    page = client.get(reverse("admin:pipelines_pipeline_changelist")).content.decode()
    assert "Acme" in page and "Globex" in page
