"""The interactive API docs render under Keel's content security policy
(``script-src 'self'``): Swagger UI's files and its start-up script are files
Keel serves, so a browser shows the operations, and the policy refuses nothing."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.config.browser_pages import assert_fits_1280, csp_violations, screenshot, wait, watch_csp
from tests.reviews.browser import chromium


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def test_the_api_docs_show_the_run_operations_under_the_csp(live_server, browser, client):
    response = client.get("/api/docs/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert b"<script>" not in response.content  # no inline script: the policy would refuse it

    watch_csp(browser)
    browser.get(f"{live_server.url}/api/docs/")
    operation = wait(
        browser,
        ec.visibility_of_element_located(
            (By.CSS_SELECTOR, ".opblock-post [data-path='/api/v1/pipelines/{slug}/runs']")
        ),
    )
    screenshot(browser, "test_the_api_docs_show_the_run_operations_under_the_csp")
    operation.click()  # opens it: its parameters and responses come from the schema
    wait(browser, ec.visibility_of_element_located((By.CSS_SELECTOR, ".opblock.is-open .responses-wrapper")))
    assert "Keel API" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert browser.find_elements(By.CSS_SELECTOR, ".opblock-get [data-path='/api/v1/runs/{id}']")
    assert csp_violations(browser) == []
    assert_fits_1280(browser)
