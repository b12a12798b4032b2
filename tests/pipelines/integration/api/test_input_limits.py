"""A run input larger than any step may take is a 400 naming the limit."""

from pipelines.models import Run


def test_the_api_answers_400_naming_the_step_input_limit(api_for, make_token, author, acme_pipeline, settings):
    settings.KEEL_STEP_INPUT_MAX_BYTES = 4096
    _, plain = make_token(author, pipeline=acme_pipeline)
    response = api_for(plain).post_run(acme_pipeline.slug, {"input": {"subject": "big", "body": "x" * 5000}})
    assert response.status_code == 400, response.content
    (error,) = response.json()["errors"]
    assert error["field"] == "input" and "KEEL_STEP_INPUT_MAX_BYTES" in error["reason"]
    assert not Run.objects.exists()
