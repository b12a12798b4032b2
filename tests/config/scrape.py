"""Scrape /metrics as Prometheus would, and read the samples."""

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "metrics-test-token-3f9a"


def scrape(client) -> dict[tuple, float]:
    """{(sample name, ((label, value), ...)): value} of one scrape with the token."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, metric: str, /, **labels) -> float:
    """One sample's value; 0 when the series is absent (a counter not yet counted)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}
