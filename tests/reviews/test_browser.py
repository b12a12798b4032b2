"""A reviewer works the queue in a real headless Chromium against a live
server: approves with the keyboard (and may undo it for a few seconds), edits
one field and approves, rejects with a reason, records a QA verdict; an
outsider sees nothing. Each test saves a screenshot under var/screenshots/,
and every page fits a 1,280 px window without scrolling sideways."""

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from audit.models import AuditEvent
from pipelines.models import Run, StepRun
from pipelines.runs.engine import run_execute
from reviews.models import PendingApproval, ReviewDecision, ReviewTask
from tests.reviews.browser import assert_no_horizontal_scroll, chromium, screenshot
from tests.reviews.conftest import finalize_approvals, gated_pipeline, hold, task_of

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's

DRAFT = (
    "Dear Ana,\n\nThank you for writing to us about order 4471. We are sorry the kettle arrived with a cracked lid.\n\n"
    "We will look into it and reply by Friday with a replacement or a refund, whichever you prefer."
)


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


@pytest.fixture
def titled(gated):
    """The gated pipeline, naming its subject field as each item's title."""
    gated.title_field = "subject"
    gated.save(update_fields=["title_field"])
    return gated


def _wait(browser, condition, timeout=20):
    return WebDriverWait(browser, timeout).until(condition)


def _sign_in(browser, base: str, username: str) -> None:
    browser.get(f"{base}/review/")
    _wait(browser, ec.presence_of_element_located((By.ID, "login-form")))
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))
    assert_no_horizontal_scroll(browser)


def _press(browser, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def _on_task(browser, task: ReviewTask) -> None:
    _wait(browser, ec.url_contains(f"/review/tasks/{task.pk}/"))
    _wait(browser, ec.presence_of_element_located((By.ID, "summary")))
    assert_no_horizontal_scroll(browser)


def _field(browser, key: str):
    """The edit form's control for one output field, found by its label."""
    label = browser.find_element(By.XPATH, f'//form[@id="edit-form"]//label[normalize-space()="{key}"]')
    return browser.find_element(By.ID, label.get_attribute("for"))


def _ticket(pipeline, subject: str, **extra) -> Run:
    return hold(pipeline, subject=subject, draft=DRAFT, label="refund", confidence=0.62, **extra)


def test_a_reviewer_approves_with_the_keyboard_and_it_is_recorded_when_the_undo_window_closes(
    live_server, browser, titled, globex_gated, reviewer
):
    runs = [_ticket(titled, f"Cracked kettle lid, order {n}") for n in (4471, 4472)]
    hold(globex_gated, subject="Globex only")
    first, second = (task_of(run) for run in runs)

    _sign_in(browser, live_server.url, "reviewer")
    assert browser.find_element(By.ID, "count-total").text == "2"
    assert "Globex" not in browser.page_source
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert rows[0].find_element(By.CSS_SELECTOR, ".title").text == "Cracked kettle lid, order 4471"
    assert rows[0].find_element(By.CSS_SELECTOR, ".excerpt").text.startswith("Dear Ana, Thank you for writing")
    shortcuts = browser.find_element(By.ID, "shortcuts")
    assert shortcuts.is_displayed() and "next task" in shortcuts.text
    screenshot(browser, "queue")

    _press(browser, "n")  # the soonest deadline first
    _on_task(browser, first)
    assert ReviewTask.objects.get(pk=first.pk).claimed_by == reviewer  # opening claimed it
    # The output reads as fields: the draft as paragraphs, the label and confidence as chips.
    output = browser.find_element(By.ID, "output-fields")
    assert len(output.find_elements(By.CSS_SELECTOR, ".text p")) >= 3
    assert output.find_element(By.CSS_SELECTOR, ".chip.confidence").text == "62%"
    assert "\\n" not in output.text
    raw = browser.find_element(By.ID, "output")
    assert not raw.is_displayed()  # the raw JSON is one click away
    browser.find_element(By.CSS_SELECTOR, "#output-panel details.raw summary").click()
    assert raw.is_displayed() and '"confidence": 0.62' in raw.text
    # The approve key's hint is readable: not the button's own colour on white.
    kbd = browser.find_element(By.CSS_SELECTOR, "#approve kbd")
    assert kbd.value_of_css_property("background-color") != "rgba(255, 255, 255, 1)"
    screenshot(browser, "task")

    _press(browser, "a")
    _on_task(browser, second)  # approving goes on to the next task, with the undo toast
    toast = browser.find_element(By.ID, f"undo-{first.pk}")
    assert toast.is_displayed() and "Undo" in toast.text
    screenshot(browser, "approved-with-undo")
    assert Run.objects.get(pk=runs[0].pk).status == Run.Status.WAITING_REVIEW  # nothing written yet
    assert not ReviewDecision.objects.exists()

    finalize_approvals()  # what the worker does when the window closes
    assert ReviewTask.objects.get(pk=first.pk).status == ReviewTask.Status.APPROVED
    run_execute(runs[0].pk)
    assert Run.objects.get(pk=runs[0].pk).status == Run.Status.COMPLETED
    assert AuditEvent.objects.filter(action="review.decided", actor_name="reviewer").count() == 1
    browser.refresh()
    assert not browser.find_elements(By.ID, f"undo-{first.pk}")

    browser.get(f"{live_server.url}/review/metrics/{titled.slug}/")
    _wait(browser, ec.presence_of_element_located((By.ID, "charts")))
    assert_no_horizontal_scroll(browser)
    assert browser.find_element(By.ID, "approval-rate").text == "100%"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart")) == 4
    assert not browser.find_elements(By.ID, "minutes-form")  # the reviewer does not own the pipeline
    screenshot(browser, "metrics")


def test_a_reviewer_undoes_an_approval_within_its_window(live_server, browser, titled, reviewer):
    runs = [_ticket(titled, f"Refund request {n}") for n in (1, 2)]
    first, second = (task_of(run) for run in runs)
    _sign_in(browser, live_server.url, "reviewer")
    _press(browser, "n")
    _on_task(browser, first)
    _press(browser, "a")
    _on_task(browser, second)
    assert PendingApproval.objects.filter(task=first).exists()

    _press(browser, "u")  # undo: back on the task, still open and still ours
    _on_task(browser, first)
    assert "undone" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    screenshot(browser, "undone")
    assert finalize_approvals() == []
    first.refresh_from_db()
    assert first.status == ReviewTask.Status.OPEN and first.claimed_by == reviewer
    assert Run.objects.get(pk=runs[0].pk).status == Run.Status.WAITING_REVIEW
    assert not ReviewDecision.objects.exists()
    actions = set(
        AuditEvent.objects.filter(object_id=first.pk, object_type="review_task").values_list("action", flat=True)
    )
    assert {"review.approval_pending", "review.approval_undone"} <= actions and "review.decided" not in actions


def test_a_reviewer_edits_one_field_and_approves_and_sees_the_word_diff(live_server, browser, titled, reviewer):
    run = _ticket(titled, "Cracked kettle lid")
    task = task_of(run)
    _sign_in(browser, live_server.url, "reviewer")
    _press(browser, "n")
    _on_task(browser, task)

    _press(browser, "e")  # focus goes to the edit form's first field
    assert browser.switch_to.active_element.get_attribute("name") == "field_0"
    draft = _field(browser, "draft")
    assert draft.tag_name == "textarea" and draft.get_attribute("value") == DRAFT  # readable text, not JSON
    draft.clear()
    draft.send_keys(DRAFT.replace("look into it and reply", "send a new lid and reply"))
    confidence = _field(browser, "confidence")
    confidence.clear()
    confidence.send_keys("very")  # not a number: refused, naming the field
    browser.find_element(By.ID, "edit").click()
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, ".edit-field.invalid")))
    assert "Enter a number for confidence." in browser.find_element(By.CSS_SELECTOR, ".edit-field.invalid").text
    assert not ReviewDecision.objects.exists()
    screenshot(browser, "edit-refused")

    # The draft typed is kept; the confidence is put right.
    assert "send a new lid" in _field(browser, "draft").get_attribute("value")
    confidence = _field(browser, "confidence")
    confidence.clear()
    confidence.send_keys("0.62")
    browser.find_element(By.ID, "edit").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))  # nothing left: back to the queue
    decision = ReviewDecision.objects.get()
    assert decision.decision == "edit"
    held = StepRun.objects.get(run_id=run.pk, position=task.position).input
    assert decision.edited_output == {
        **held,
        "draft": DRAFT.replace("look into it and reply", "send a new lid and reply"),
    }
    run_execute(run.pk)
    assert Run.objects.get(pk=run.pk).output["draft"].startswith("Dear Ana")

    browser.get(f"{live_server.url}/review/tasks/{task.pk}/")
    _wait(browser, ec.presence_of_element_located((By.ID, "decisions")))
    diff = browser.find_element(By.CSS_SELECTOR, "#decisions .diff")
    assert diff.find_element(By.TAG_NAME, "del").text.strip() == "look into it"
    assert diff.find_element(By.TAG_NAME, "ins").text.strip() == "send a new lid"
    assert_no_horizontal_scroll(browser)
    screenshot(browser, "edited-diff")


def test_a_reviewer_rejects_with_a_reason(live_server, browser, titled, reviewer):
    run = _ticket(titled, "Promise of a refund")
    task = task_of(run)
    _sign_in(browser, live_server.url, "reviewer")
    _press(browser, "n")
    _on_task(browser, task)
    browser.find_element(By.ID, "reject").click()  # no reason yet
    _wait(browser, ec.text_to_be_present_in_element((By.TAG_NAME, "main"), "A rejection needs a reason."))
    assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING_REVIEW
    assert_no_horizontal_scroll(browser)
    screenshot(browser, "reject-needs-reason")
    _press(browser, "r")
    browser.switch_to.active_element.send_keys("Promises what we cannot deliver.")
    browser.find_element(By.ID, "reject").click()
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))
    assert "Nothing left in your queue." in browser.page_source
    rejected = Run.objects.get(pk=run.pk)
    assert rejected.status == Run.Status.REJECTED and "cannot deliver" in rejected.failure_reason

    browser.get(f"{live_server.url}/review/mine/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#mine tbody tr")) == 1
    assert_no_horizontal_scroll(browser)


def test_a_reviewer_records_a_qa_verdict_with_the_mouse_and_with_the_keyboard(
    live_server, browser, acme, superuser, author, reviewer
):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-sampled",
                              review_mode="exceptions", sample_rate="1")  # fmt: skip
    first, second = (
        ReviewTask.objects.get(run=hold(pipeline, subject=f"Fine {n}", draft=DRAFT), kind="qa_sample") for n in (1, 2)
    )
    _sign_in(browser, live_server.url, "reviewer")
    browser.get(f"{live_server.url}{first.get_absolute_url()}")
    _on_task(browser, first)
    radios = browser.find_elements(By.CSS_SELECTOR, '#qa-form input[type="radio"][name="verdict"]')
    assert [r.get_attribute("value") for r in radios] == ["correct", "incorrect"]  # real radio buttons
    browser.find_element(By.ID, "qa-submit").click()  # no verdict yet: told so, not a silent reload
    _wait(browser, ec.presence_of_element_located((By.ID, "verdict-errors")))
    assert "Choose correct or incorrect." in browser.find_element(By.ID, "verdict-errors").text
    screenshot(browser, "qa-needs-verdict")

    browser.find_element(By.XPATH, '//label[contains(@class, "choice")][contains(., "Correct")]').click()  # mouse
    browser.find_element(By.ID, "qa-submit").click()
    _on_task(browser, second)  # recorded, and on to the next sample
    assert ReviewDecision.objects.get(task=first).decision == "correct"

    _press(browser, "i")  # keyboard: incorrect, and the cursor goes to the category
    assert browser.switch_to.active_element.get_attribute("id") == "id_category"
    browser.switch_to.active_element.send_keys("tone")
    assert_no_horizontal_scroll(browser)
    screenshot(browser, "qa-verdict")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    _wait(browser, ec.presence_of_element_located((By.ID, "queue")))
    verdict = ReviewDecision.objects.get(task=second)
    assert (verdict.decision, verdict.category) == ("incorrect", "tone")
    assert ReviewTask.objects.get(pk=second.pk).status == ReviewTask.Status.REVIEWED
    assert AuditEvent.objects.filter(action="review.qa_recorded", actor_name="reviewer").count() == 2


def test_an_outsider_sees_no_task_and_cannot_open_one(live_server, browser, gated, outsider):
    task = task_of(hold(gated))
    _sign_in(browser, live_server.url, "outsider")
    assert browser.find_element(By.ID, "count-total").text == "0"
    assert "Nothing to review." in browser.page_source
    browser.get(f"{live_server.url}/review/tasks/{task.pk}/")
    assert "Review #" not in browser.page_source
    assert ReviewTask.objects.get(pk=task.pk).claimed_by is None
