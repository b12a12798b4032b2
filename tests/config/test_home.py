"""Keel's home page: each role sees its own items, only from workspaces it
holds rights on; a user with no rights sees a home that says so."""

import re

import pytest
from django.urls import reverse

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's


def _home(client, user) -> str:
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    return response.content.decode()


def _sections(page: str) -> set[str]:
    return set(re.findall(r'<section class="panel" id="([a-z-]+)"', page))


def test_signing_out_leaves_home_for_the_sign_in_page(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("reviews-login") + "?next=/"


def test_a_reviewer_signs_in_through_the_sign_in_page_and_lands_home(client, reviewer):
    response = client.post(reverse("reviews-login") + "?next=/", {"username": "reviewer", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_lead_sees_reviews_approvals_failures_what_is_live_budgets_and_health(client, home_world):
    acme, lead = home_world["acme"], home_world["personas"]["lead"]
    page = _home(client, lead)
    assert _sections(page) == {"reviews", "approvals", "failures", "health", "live", "budgets"}
    # Two open reviews, one overdue, each linked to the reviewer app.
    assert re.search(r"<b>2</b> open", page) and re.search(r"<b>1</b> overdue", page)
    assert reverse("reviews-detail", args=[acme["overdue"].pk]) in page
    # Release #2, cut by the author, waits for the lead, linked to the approver's page.
    assert reverse("admin:pipelines_release_review", args=[acme["second"].pk]) in page
    assert "Acme Replies #2" in page
    # The budget's failed run and the dead letter, with their reasons.
    assert re.search(r"<b>1</b> failed run in", page) and "budget_exceeded" in page
    assert re.search(r"<b>1</b> dead letter<", page) and "HTTP 400: Acme receiver refused" in page
    # What is live: release #1 in production, and the paused pipeline with its reason.
    assert "Acme refund wording under review" in page
    assert "Globex" not in page


def test_an_engineer_sees_failures_and_what_is_live_but_no_approvals_or_reviews(client, home_world):
    page = _home(client, home_world["personas"]["author"])
    assert _sections(page) == {"failures", "health", "live", "budgets"}
    assert "budget_exceeded" in page and "Globex" not in page


def test_the_author_is_never_asked_to_approve_their_own_release(client, home_world, lead):
    from pipelines.integration.overview import releases_awaiting_approval_by

    author = home_world["personas"]["author"]
    assert releases_awaiting_approval_by(user=lead) == [home_world["acme"]["second"]]
    assert releases_awaiting_approval_by(user=author) == []


def test_a_reviewer_sees_only_the_review_queue(client, home_world):
    page = _home(client, home_world["personas"]["reviewer"])
    assert _sections(page) == {"reviews"}
    assert reverse("reviews-queue") in page
    assert 'href="/admin/"' not in page  # not staff: no admin link, in the bar or among the places
    assert 'href="/audit/"' not in page
    assert "Globex" not in page


def test_an_auditor_sees_failures_and_what_is_live_and_the_audit_desk(client, home_world):
    page = _home(client, home_world["personas"]["auditor"])
    assert _sections(page) == {"failures", "live", "budgets"}
    assert 'class="place" href="/audit/"' in page
    assert "Globex" not in page


def test_an_operator_sees_failures_what_is_live_and_health(client, home_world):
    page = _home(client, home_world["personas"]["operator"])
    assert _sections(page) == {"failures", "health", "live", "budgets"}
    assert re.search(r"<b>Worker</b> down: no heartbeat yet", page)  # no worker runs in this test
    assert "Globex" not in page


def test_an_outsider_sees_an_empty_home_that_says_so(client, home_world):
    page = _home(client, home_world["personas"]["outsider"])
    assert _sections(page) == {"nothing"}
    assert "You hold no rights on any workspace or pipeline" in page
    assert "Acme" not in page and "Globex" not in page


def test_a_superuser_sees_every_workspace(client, home_world, superuser):
    page = _home(client, superuser)
    assert "Acme Replies" in page and "Globex Replies" in page


@pytest.mark.parametrize(
    ("path", "current"),
    [("/", "Home"), ("/admin/", "Admin"), ("/review/", "Review")],
)
def test_the_navigation_bar_marks_where_one_is(client, lead, path, current):
    client.force_login(lead)
    page = client.get(path).content.decode()
    bar = re.search(r'<header class="site">.*?</header>', page, re.S).group(0)
    assert re.findall(r'<a href="[^"]+" aria-current="page">([^<]+)</a>', bar) == [current]
    assert {"Home", "Admin", "Review", "Audit"} <= set(re.findall(r'<a href="[^"]+"[^>]*>([^<]+)</a>', bar))
