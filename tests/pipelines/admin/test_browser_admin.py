"""The admin in a real headless Chromium at 1,280 px against a live server: a
governance lead edits a prompt with a reason, reads the diff and reverts; an
approver approves a release on its page; the working pages fit the window.
Each test saves screenshots under var/screenshots/."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from audit.models import AuditEvent
from pipelines.models import Run
from pipelines.releases.approval import release_state, release_submit
from pipelines.releases.cut import release_cut
from tests.releasing import classifier_pipeline, prompt_edit, release_to_production
from tests.reviews.browser import chromium
from tests.reviews.conftest import gated_pipeline, hold

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def _wait(browser, condition, timeout=30):
    try:
        return WebDriverWait(browser, timeout).until(condition)
    except TimeoutException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # what the browser showed instead, for the reader
        (SCREENSHOTS / "admin-timeout.html").write_text(browser.page_source)
        browser.save_screenshot(str(SCREENSHOTS / "admin-timeout.png"))
        raise


def _sign_in(browser, base: str, username: str) -> None:
    browser.get(f"{base}{reverse('admin:login')}")
    _wait(browser, ec.presence_of_element_located((By.ID, "login-form")))
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "user-tools")))


def _open(browser, url: str, element_id: str = "content") -> None:
    browser.get(url)
    _wait(browser, ec.presence_of_element_located((By.ID, element_id)))


def _fits(browser) -> None:
    """No horizontal scrolling at the window's width (1,280 px): not the page,
    nor a list's table in its own scroll box."""
    for selector in ("html", ".results"):
        for width, room in browser.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => [e.scrollWidth, e.clientWidth]);", selector
        ):
            assert width <= room, f"{browser.current_url}: {selector} scrolls sideways ({width} px in {room} px)"


def _shot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.set_window_size(1280, min(max(height + 140, 800), 4000))  # the whole page, same width
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1000)


def test_a_lead_edits_a_prompt_with_a_reason_reads_the_diff_and_reverts(live_server, browser, lead, acme_config):
    prompt = acme_config["prompt"]
    original = prompt.body
    base = live_server.url
    _sign_in(browser, base, "lead")

    _open(browser, base + reverse("admin:pipelines_prompttemplate_change", args=[prompt.pk]), "prompttemplate_form")
    _fits(browser)
    body = browser.find_element(By.ID, "id_body")
    body.clear()
    body.send_keys("Classify this ticket carefully: {{ subject }}\n{{ body }}\nAnswer with one label.\n")
    browser.find_element(By.ID, "id_change_reason").send_keys("Ticket #88: labels were guessed")
    _shot(browser, "admin-prompt-edit-with-reason")
    browser.find_element(By.NAME, "_continue").click()
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")))
    prompt.refresh_from_db()
    assert "\r" not in prompt.body and "Answer with one label." in prompt.body
    edit = prompt.history.order_by("-history_id").first()
    assert edit.history_change_reason == "Ticket #88: labels were guessed"
    assert AuditEvent.objects.filter(action="prompt.changed").latest("seq").payload_data["reason"] == (
        "Ticket #88: labels were guessed"
    )

    _open(browser, base + reverse("admin:pipelines_prompttemplate_history", args=[prompt.pk]), "change-history")
    assert "Ticket #88: labels were guessed" in browser.find_element(By.ID, "change-history").text
    _fits(browser)
    _shot(browser, "admin-prompt-history")
    browser.find_element(By.CSS_SELECTOR, "#change-history input[type=submit]").click()  # the newest two
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "pre.keel-diff")))
    added = browser.find_elements(By.CSS_SELECTOR, "pre.keel-diff .keel-diff-add")
    assert any("Answer with one label." in line.text for line in added)
    colour = added[0].value_of_css_property("background-color")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent")  # the diff is coloured
    _fits(browser)
    _shot(browser, "admin-prompt-compare")

    _open(browser, base + reverse("admin:pipelines_prompttemplate_history", args=[prompt.pk]), "change-history")
    browser.find_element(By.LINK_TEXT, "Revert to this version").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "id_reason")))
    browser.find_element(By.ID, "id_reason").send_keys("The old wording tested better")
    _fits(browser)
    _shot(browser, "admin-prompt-revert")
    browser.find_element(By.CSS_SELECTOR, "#content-main form [type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist li")))
    prompt.refresh_from_db()
    assert prompt.body == original
    assert (
        prompt.history.order_by("-history_id").first().history_change_reason.endswith("The old wording tested better")
    )


@pytest.fixture
def submitted(acme, superuser, author):
    pipeline = classifier_pipeline(acme, actor=superuser)
    release_to_production(release_cut(pipeline=pipeline, actor=superuser))
    prompt_edit(pipeline, actor=author, body="Ticket: {{ subject }}")
    release = release_cut(pipeline=pipeline, actor=author)
    release_submit(release=release, actor=author, notes="Adds a preamble to the prompt.")
    return release


def test_an_approver_approves_on_the_release_page(live_server, browser, submitted, lead, author):
    base = live_server.url
    page = base + reverse("admin:pipelines_release_review", args=[submitted.pk])

    _sign_in(browser, base, "author")  # the author is told why not, and who may
    _open(browser, page, "decision")
    assert "You cannot approve this release" in browser.find_element(By.ID, "decision").text
    assert "lead" in browser.find_element(By.ID, "eligible-approvers").text
    assert not browser.find_elements(By.ID, "approve-form")
    _fits(browser)
    _shot(browser, "admin-release-refused-author")
    browser.delete_all_cookies()

    _sign_in(browser, base, "lead")
    _open(browser, page, "approve-form")
    assert "Adds a preamble to the prompt." in browser.find_element(By.ID, "release-notes").text
    assert browser.find_elements(By.CSS_SELECTOR, "pre.keel-diff .keel-diff-add")
    _fits(browser)
    _shot(browser, "admin-release-review")
    browser.find_element(By.ID, "id_approve-note").send_keys("Read the diff; the preamble is fine.")
    browser.find_element(By.CSS_SELECTOR, "#approve-form [type=submit]").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "release-state"), "approved"))
    assert release_state(submitted) == "approved"
    assert "the release is approved" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    _shot(browser, "admin-release-approved")


def test_the_working_pages_fit_1280_pixels(live_server, browser, superuser, acme, lead):
    pipeline = gated_pipeline(acme, superuser=superuser, author=None)
    hold(pipeline)
    failed = hold(pipeline, subject="A second ticket")
    Run.objects.filter(pk=failed.pk).update(
        status=Run.Status.FAILED, failure_reason="The model did not answer within 30 seconds (timeout)."
    )
    base = live_server.url
    _sign_in(browser, base, "root")
    pages = {
        "admin-pipeline-page": (reverse("admin:pipelines_pipeline_change", args=[pipeline.pk]), "pipeline_form"),
        "admin-runs-list": (reverse("admin:pipelines_run_changelist"), "result_list"),
        "admin-pipeline-permissions": (
            reverse("admin:pipelines_pipeline_permissions", args=[pipeline.pk]),
            "inherited-rights",
        ),  # fmt: skip
        "admin-releases-list": (reverse("admin:pipelines_release_changelist"), "result_list"),
    }
    for name, (url, element_id) in pages.items():
        _open(browser, base + url, element_id)
        _fits(browser)
        _shot(browser, name)
    _open(browser, base + reverse("admin:pipelines_pipeline_change", args=[pipeline.pk]), "pipeline_form")
    links = {a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.keel-related a")}
    assert {"Runs (2)", "Failed runs (1)", "Review queue", "Metrics"} <= links
