"""An auditor at the desk in a real headless Chromium against a live server:
signs in, filters the timeline with the pickers and the choices offered,
opens an event's payload, exports the PDF report of that filter; reads the
rights of a moment in words and a run's input as JSON. Every page fits
1,280 px without scrolling sideways, and nothing of the workspace the
auditor cannot see is offered or shown."""

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from pypdf import PdfReader
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from audit.context import acting_as
from audit.models import AuditEvent
from audit.services import audit_record
from tests.audit.conftest import make_run
from tests.reviews.browser import chromium

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@pytest.fixture
def browser(tmp_path):
    driver = chromium()
    # Downloads land in the test's own folder, where the test reads them.
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    yield driver
    driver.quit()


def _wait(browser, condition, timeout=20):
    return WebDriverWait(browser, timeout).until(condition)


def _screenshot(browser, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # As tall as the page, 1,280 px wide: the whole page in one picture.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height + 140, 800), 4000))
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1000)


def _no_sideways_scrolling(browser) -> None:
    width = browser.execute_script("return document.documentElement.scrollWidth")
    viewport = browser.execute_script("return document.documentElement.clientWidth")
    assert width <= viewport, f"the page is {width} px wide in a {viewport} px window"


def _sign_in(browser, base: str, username: str) -> None:
    browser.get(f"{base}/audit/")
    _wait(browser, ec.presence_of_element_located((By.ID, "id_username")))  # the sign-in page first
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "events")))


def _options(browser, field: str) -> list[str]:
    return [option.text for option in Select(browser.find_element(By.ID, f"id_{field}")).options]


def _set_moment(browser, field: str, moment) -> None:
    """What picking a moment in the browser's picker leaves in the field."""
    value = timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M:%S")
    browser.execute_script("arguments[0].value = arguments[1]", browser.find_element(By.ID, f"id_{field}"), value)


@pytest.fixture
def desk(acme_config, globex_config, auditor, superuser, globex_auditor):
    """Runs in acme and globex; a note by a person only globex's auditor sees."""
    acme_runs = [make_run(acme_config["pipeline"], superuser) for _ in range(3)]
    globex_run = make_run(globex_config["pipeline"], superuser, email="grace@example.org")
    with acting_as(globex_auditor):
        audit_record(
            action="globex.secret_note",
            object_type="note",
            object_id=1,
            payload={"note": "Globex only"},
            workspace_id=globex_config["pipeline"].workspace_id,
        )
    return {"acme_runs": acme_runs, "globex_run": globex_run}


def test_an_auditor_filters_the_timeline_and_exports_the_report(
    live_server, browser, tmp_path, auditor, acme_config, desk
):
    pipeline = acme_config["pipeline"]
    _sign_in(browser, live_server.url, "auditor")
    _no_sideways_scrolling(browser)

    # Choices from what the auditor may see only: no globex, no globex-only actor or action.
    assert _options(browser, "workspace") == ["any workspace", "Acme"]
    assert _options(browser, "pipeline") == ["any pipeline", f"Acme › {pipeline.name}"]
    assert "globex-auditor" not in _options(browser, "actor")
    actions = _options(browser, "action")
    assert "every run event" in actions and "run.started" in actions
    assert not any("globex" in action for action in actions)
    assert "Globex" not in browser.page_source and "grace@example.org" not in browser.page_source

    # Filter: run events of the pipeline since a minute ago.
    Select(browser.find_element(By.ID, "id_pipeline")).select_by_visible_text(f"Acme › {pipeline.name}")
    Select(browser.find_element(By.ID, "id_action")).select_by_visible_text("every run event")
    _set_moment(browser, "since", timezone.now() - timedelta(minutes=1))
    browser.find_element(By.ID, "apply").click()
    _wait(browser, ec.url_contains("action=run"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tbody.event")
    assert len(rows) == 6  # started and completed, for each of the three acme runs
    assert {row.find_element(By.CSS_SELECTOR, "td.action").text for row in rows} == {"run.started", "run.completed"}
    where = rows[0].find_element(By.CSS_SELECTOR, "td.where span[title^=pipeline]")
    assert where.text == pipeline.name and where.get_attribute("title") == f"pipeline #{pipeline.pk}"

    # One line of the payload; the canonical JSON when it is opened.
    started = next(row for row in rows if row.find_element(By.CSS_SELECTOR, "td.action").text == "run.started")
    summary = started.find_element(By.CSS_SELECTOR, "button.summary")
    assert summary.get_attribute("title").startswith("release: ")
    assert "input sha256: aaaaaaaaaaaa…" in summary.get_attribute("title")
    assert not started.find_element(By.CSS_SELECTOR, "pre.payload").is_displayed()
    summary.click()
    payload = started.find_element(By.CSS_SELECTOR, "pre.payload")
    _wait(browser, lambda _: payload.is_displayed())
    event = AuditEvent.objects.get(seq=int(started.get_attribute("id").removeprefix("event-")))
    assert payload.text == event.payload
    _no_sideways_scrolling(browser)
    _screenshot(browser, "test_an_auditor_filters_the_timeline_and_exports_the_report")

    # The PDF report of this filter, downloaded by the browser.
    browser.find_element(By.ID, "export-pdf").click()
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("*.pdf")) and time.monotonic() < deadline:
        time.sleep(0.2)
    (report,) = tmp_path.glob("*.pdf")
    text = "\n".join(page.extract_text() for page in PdfReader(report).pages)
    assert f"Of the pipeline {pipeline.name} (#{pipeline.pk})" in text
    assert "Action run and every run.* action" in text
    assert "Globex" not in text and "grace" not in text
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.actor_name == "auditor" and exported.payload_data["format"] == "pdf"


def test_an_auditor_reads_rights_in_words_and_a_runs_data_as_json(live_server, browser, auditor, acme_config, desk):
    pipeline = acme_config["pipeline"]
    _sign_in(browser, live_server.url, "auditor")
    browser.get(f"{live_server.url}/audit/permissions/")
    assert [text for text in _options(browser, "pipeline") if "Globex" in text] == []
    Select(browser.find_element(By.ID, "id_pipeline")).select_by_visible_text(f"Acme › {pipeline.name}")
    _set_moment(browser, "at", timezone.now() + timedelta(seconds=5))
    browser.find_element(By.CSS_SELECTOR, "#rights-form button[type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "rights")))
    rights = browser.find_element(By.ID, "rights").text
    assert "may read the audit trail of every pipeline in Acme" in rights
    assert "view_audit" not in rights and "workspace:" not in rights
    _no_sideways_scrolling(browser)
    _screenshot(browser, "test_an_auditor_reads_rights_in_words")

    run = desk["acme_runs"][0]
    browser.get(f"{live_server.url}/audit/runs/{run.pk}/")
    browser.find_element(By.ID, "reveal").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "run-input")))
    shown = browser.find_element(By.ID, "run-input").text
    assert '"customer_email": "ada@example.com"' in shown and "{'" not in shown  # JSON, not Python's repr
    _no_sideways_scrolling(browser)
    _screenshot(browser, "test_an_auditor_reads_a_runs_data_as_json")

    browser.find_element(By.LINK_TEXT, "Timeline").click()
    browser.find_element(By.LINK_TEXT, "Acme").click()  # its access review
    _wait(browser, ec.presence_of_element_located((By.ID, "access")))
    assert "may read the audit trail of every pipeline in Acme" in browser.find_element(By.ID, "access").text
    _no_sideways_scrolling(browser)
    _screenshot(browser, "test_an_auditor_reads_the_access_review")
