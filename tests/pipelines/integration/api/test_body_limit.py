"""One request body limit: KEEL_API_MAX_BODY_BYTES (a document, KEEL_DOCUMENT_MAX_BYTES,
plus 256 KiB of form fields), for JSON bodies and form fields alike. Django's own
DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB unless set) is held to it, so a body between
the two is read instead of refused with Django's number."""

import pytest
from django.conf import settings

from pipelines.models import Run
from tests.pipelines.integration.api.conftest import TICKET


@pytest.fixture
def api(api_for, make_token, author, acme_pipeline):
    _, plain = make_token(author, workspace=acme_pipeline.workspace)
    return api_for(plain)


def test_django_s_body_limit_is_the_documented_one():
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.KEEL_API_MAX_BODY_BYTES
    assert settings.KEEL_API_MAX_BODY_BYTES == settings.KEEL_DOCUMENT_MAX_BYTES + 256 * 1024


def test_a_json_body_over_django_s_default_but_under_the_limit_is_read(api, acme_pipeline):
    padding = "x" * (3 * 1024 * 1024)  # 3 MiB: over Django's default 2.5 MiB, under the 10.25 MiB limit
    response = api.post_run(acme_pipeline.slug, {"input": {**TICKET, "notes": padding}})
    assert response.status_code != 413, response.content[:300]
    assert response.status_code in (201, 400)  # read, then judged by the input schema
    if response.status_code == 400:
        assert response.json()["errors"][0]["field"].startswith("input")


def test_a_json_body_over_the_limit_is_413_naming_the_limit(api, acme_pipeline):
    limit = settings.KEEL_API_MAX_BODY_BYTES
    response = api.post_run(acme_pipeline.slug, {"input": {**TICKET, "notes": "x" * (limit + 1)}})
    assert response.status_code == 413
    assert f"larger than {limit} bytes" in response.json()["errors"][0]["reason"]
    assert not Run.objects.exists()
