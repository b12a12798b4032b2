"""Each role signs in to Keel in a real headless Chromium and lands on a home
page with its own items: the lead, the engineer, the reviewer, the auditor,
the operator, and an outsider whose home says there is nothing for them.
The navigation bar is the same on the home page, the reviewer app and the
admin, and marks where one is. Each page is saved under var/screenshots/."""

import pytest
from selenium.webdriver.common.by import By

from tests.config.browser_pages import assert_fits_1280, csp_violations, screenshot, sign_in, watch_csp
from tests.reviews.browser import chromium

# persona -> the sections of its home page
EXPECTED = {
    "lead": {"reviews", "approvals", "failures", "health", "live", "budgets"},
    "author": {"failures", "health", "live", "budgets"},
    "reviewer": {"reviews"},
    "auditor": {"failures", "live", "budgets"},
    "operator": {"failures", "health", "live", "budgets"},
    "outsider": {"nothing"},
}


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def _sections(browser) -> set[str]:
    return {section.get_attribute("id") for section in browser.find_elements(By.CSS_SELECTOR, "section.panel")}


def _current_place(browser) -> list[str]:
    return [link.text for link in browser.find_elements(By.CSS_SELECTOR, "header.site nav a[aria-current]")]


def test_each_role_sees_its_own_home(live_server, browser, home_world):
    watch_csp(browser)
    for persona, sections in EXPECTED.items():
        sign_in(browser, live_server.url, persona)
        assert _sections(browser) == sections, persona
        assert "Globex" not in browser.page_source, persona
        assert _current_place(browser) == ["Home"]
        assert csp_violations(browser) == []
        assert_fits_1280(browser)
        screenshot(browser, f"test_home_{persona}")
    # The outsider is told why the page is empty.
    assert "You hold no rights" in browser.find_element(By.ID, "nothing").text


def test_the_lead_goes_from_home_to_each_place_under_the_same_bar(live_server, browser, home_world):
    acme = home_world["acme"]
    sign_in(browser, live_server.url, "lead")
    overdue = browser.find_element(By.CSS_SELECTOR, "#reviews td.overdue")
    assert overdue.text  # the overdue review's deadline, in red
    browser.find_element(By.LINK_TEXT, "Acme Replies #2").click()  # to the approver's page in the admin
    assert f"/admin/pipelines/release/{acme['second'].pk}/review/" in browser.current_url
    assert _current_place(browser) == ["Admin"]
    assert_fits_1280(browser)
    screenshot(browser, "test_home_lead_admin_under_the_bar")
    browser.find_element(By.LINK_TEXT, "Review").click()
    assert _current_place(browser) == ["Review"]
    assert_fits_1280(browser)
    screenshot(browser, "test_home_lead_review_under_the_bar")
    browser.find_element(By.LINK_TEXT, "Home").click()
    assert _current_place(browser) == ["Home"]
