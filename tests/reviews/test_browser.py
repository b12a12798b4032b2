"""A reviewer works the queue in a real headless Chromium against a live
server: signs in, approves one run with the keyboard, edits and approves
another, rejects a third with a reason; an outsider sees nothing."""

import json

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from audit.models import AuditEvent
from pipelines.models import Run
from pipelines.runs.engine import run_execute
from reviews.models import ReviewDecision, ReviewTask
from tests.reviews.browser import chromium
from tests.reviews.conftest import hold, task_of

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def _wait(browser, condition, timeout=20):
    return WebDriverWait(browser, timeout).until(condition)


def _sign_in(browser, base: str, username: str) -> None:
    browser.get(f"{base}/review/")
    _wait(browser, ec.presence_of_element_located((By.ID, "login-form")))
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))


def _press(browser, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def _on_task(browser, task: ReviewTask) -> None:
    _wait(browser, ec.url_contains(f"/review/tasks/{task.pk}/"))
    _wait(browser, ec.presence_of_element_located((By.ID, "summary")))


def test_a_reviewer_approves_edits_and_rejects_and_the_runs_end_accordingly(
    live_server, browser, gated, globex_gated, reviewer
):
    runs = [hold(gated, subject=f"Ticket {n}", draft=f"Draft {n}.") for n in (1, 2, 3)]
    hold(globex_gated, subject="Globex only")
    first, second, third = (task_of(run) for run in runs)

    _sign_in(browser, live_server.url, "reviewer")
    assert browser.find_element(By.ID, "count-total").text == "3"
    assert "Globex" not in browser.page_source

    _press(browser, "n")  # the soonest deadline first
    _on_task(browser, first)
    assert ReviewTask.objects.get(pk=first.pk).claimed_by == reviewer  # opening claimed it
    _press(browser, "a")
    _on_task(browser, second)  # approving goes on to the next task
    assert ReviewTask.objects.get(pk=first.pk).status == ReviewTask.Status.APPROVED

    _press(browser, "e")
    editor = browser.switch_to.active_element
    assert editor.get_attribute("id") == "id_output"
    edited = {**runs[1].input, "draft": "Edited by a person."}
    editor.clear()
    editor.send_keys(json.dumps(edited))
    browser.find_element(By.ID, "edit").click()
    _on_task(browser, third)
    assert ReviewTask.objects.get(pk=second.pk).status == ReviewTask.Status.APPROVED

    browser.find_element(By.ID, "reject").click()  # no reason yet
    _wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "A rejection needs a reason."))
    assert Run.objects.get(pk=runs[2].pk).status == Run.Status.WAITING_REVIEW
    _press(browser, "r")
    browser.switch_to.active_element.send_keys("Promises what we cannot deliver.")
    browser.find_element(By.ID, "reject").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))  # nothing left
    assert "Nothing left in your queue." in browser.page_source

    # What the worker does with the resumed runs.
    for run in runs[:2]:
        run_execute(run.pk)
    delivered, with_edit, rejected = (Run.objects.get(pk=run.pk) for run in runs)
    assert delivered.status == Run.Status.COMPLETED and delivered.output == runs[0].input
    assert with_edit.status == Run.Status.COMPLETED and with_edit.output == edited
    assert rejected.status == Run.Status.REJECTED and "cannot deliver" in rejected.failure_reason
    decisions = list(ReviewDecision.objects.order_by("pk").values_list("decision", "reviewer__username"))
    assert decisions == [("approve", "reviewer"), ("edit", "reviewer"), ("reject", "reviewer")]
    assert AuditEvent.objects.filter(action="review.decided", actor_name="reviewer").count() == 3

    browser.get(f"{live_server.url}/review/mine/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#mine tbody tr")) == 3


def test_an_outsider_sees_no_task_and_cannot_open_one(live_server, browser, gated, outsider):
    task = task_of(hold(gated))
    _sign_in(browser, live_server.url, "outsider")
    assert browser.find_element(By.ID, "count-total").text == "0"
    assert "Nothing to review." in browser.page_source
    browser.get(f"{live_server.url}/review/tasks/{task.pk}/")
    assert "Review #" not in browser.page_source
    assert ReviewTask.objects.get(pk=task.pk).claimed_by is None
