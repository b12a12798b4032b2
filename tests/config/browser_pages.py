"""Helpers for the outer shell's browser tests: sign in through Keel's
sign-in page, save a screenshot under var/screenshots/, and check that a page
fits a 1,280 px window and broke no content security rule."""

from pathlib import Path

from django.conf import settings
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

PASSWORD = "keel-test-password"  # tests.factories.UserFactory's
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


def wait(browser, condition, timeout: float = 20):
    return WebDriverWait(browser, timeout).until(condition)


def sign_in(browser, base: str, username: str, *, next_path: str = "/") -> None:
    browser.delete_all_cookies()
    browser.get(f"{base}/review/login/?next={next_path}")
    wait(browser, ec.presence_of_element_located((By.ID, "login-form")))
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
    wait(browser, ec.url_to_be(f"{base}{next_path}"))


def screenshot(browser, name: str) -> Path:
    """The whole page (the window stretched to its height), as var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, max(int(height) + 140, 600))
    path = SCREENSHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    browser.set_window_size(1280, 1000)
    return path


def assert_fits_1280(browser) -> None:
    width = browser.execute_script("return document.documentElement.scrollWidth")
    inner = browser.execute_script("return window.innerWidth")
    assert width <= inner, f"the page scrolls sideways at 1,280 px ({width} > {inner})"


def watch_csp(browser) -> None:
    """From the next page on, record every content security policy refusal in
    ``window.keelCspViolations`` (a script Chromium adds to each new document,
    which the page's own policy does not govern)."""
    source = (
        "window.keelCspViolations = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.keelCspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})


def csp_violations(browser) -> list[str]:
    return browser.execute_script("return window.keelCspViolations || []")
