"""The end users' decision pages in a real browser: Debian's Chromium driven by Playwright, against the live
test server with a trained champion. Keyboard only, focus after errors, accessible names and descriptions as
the browser computes them, text contrast, and asking for a review.

Chromium comes from the system (`apt-get install -y chromium`, which scripts/bootstrap.sh runs when it can),
never from `playwright install`. If it cannot start, the test fails and says why: it never skips.
"""

import re
import shutil

import pytest
from django.db import connections
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect, sync_playwright

from apps.governance.models import AuditEvent, ReviewRequest
from apps.predictions.models import PredictionRecord

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MAX_TABS = 20

# Every element with its own text: its colour against the first opaque background behind it (WCAG 1.4.3:
# 4.5:1, or 3:1 for large text). Returns the failures as strings.
CONTRAST_SCRIPT = """() => {
  const parse = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratio = (a, b) => {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const background = (node) => {
    for (let el = node; el; el = el.parentElement) {
      const rgba = parse(getComputedStyle(el).backgroundColor);
      if (rgba.length === 3 || (rgba.length === 4 && rgba[3] === 1)) return rgba.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || !el.getClientRects().length || style.visibility === "hidden") continue;
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const found = ratio(parse(style.color).slice(0, 3), background(el));
    const text = el.textContent.trim().slice(0, 40);
    if (found < needed) failures.push(`${el.tagName.toLowerCase()} "${text}": ${found.toFixed(2)} < ${needed}`);
  }
  return failures;
}"""

UNLABELLED_SCRIPT = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
  .filter((el) => !el.labels || el.labels.length !== 1 || !el.labels[0].textContent.trim())
  .map((el) => el.name)"""


@pytest.fixture
def browser_page(live_server, monkeypatch):
    """A Chromium page. Playwright's sync API keeps an event loop in this thread, so Django would refuse the
    test's own queries as if they were made from async code: they are not, hence the documented opt-out."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (`apt-get install -y chromium`; `make venv` does "
            "it when run as root). Never `playwright install`: this machine has no internet.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=60_000)
        except PlaywrightError as exc:
            pytest.fail(f"Chromium ({CHROMIUM}) did not start: {exc}", pytrace=False)
        context = browser.new_context(base_url=live_server.url, locale="en-GB")
        context.set_default_timeout(20_000)
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()
            # The test's queries ran in Playwright's context, on connections of their own: close them, or
            # PostgreSQL could not drop the test database at the end of the run.
            connections.close_all()


def focused(page: Page) -> str:
    return page.evaluate("document.activeElement && (document.activeElement.id || document.activeElement.tagName)")


def tab_to(page: Page, element_id: str) -> None:
    """Press Tab until `element_id` has the focus, as a keyboard user would."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if focused(page) == element_id:
            return
    raise AssertionError(f"{element_id} was not reached with {MAX_TABS} presses of Tab (at {focused(page)})")


def assert_accessible(page: Page) -> None:
    """Checks an audit tool would make, without one: every field has one label naming it, text is readable."""
    assert page.evaluate(UNLABELLED_SCRIPT) == []
    assert page.evaluate(CONTRAST_SCRIPT) == []
    assert page.locator("html").get_attribute("lang") == "en"


def test_a_keyboard_user_applies_corrects_sees_the_reasons_and_asks_for_a_review(browser_page, champion):
    page = browser_page
    # -- the form: every field named by its label, described by its help text ------------------------------
    page.goto("/decide/loan-risk/")
    expect(page).to_have_title("Apply: loan-risk · Faro")
    assert_accessible(page)
    income, age, city = page.get_by_label("Income"), page.get_by_label("Age"), page.get_by_label("City")
    for field, element_id in ((income, "id_income"), (age, "id_age"), (city, "id_city")):
        expect(field).to_have_count(1)
        expect(field).to_have_id(element_id)
    expect(income).to_have_accessible_description("The model learned from values between 1028.72 and 8990.34.")
    expect(age).to_have_accessible_description("The model learned from values between 18 and 80.")

    # -- answers missing or wrong, sent with Enter: the focus lands on the summary of problems -----------------
    tab_to(page, "id_income")
    outline = page.evaluate("getComputedStyle(document.activeElement).outline")
    assert outline == "rgb(11, 79, 108) solid 3px", outline  # visible focus: 8.9:1 on white
    page.keyboard.press("Tab")  # income left empty
    assert focused(page) == "id_age"
    page.keyboard.type("41.5")
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page).to_have_title("Error: Apply: loan-risk · Faro")
    summary = page.get_by_test_id("error-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("heading")).to_have_text("There are problems with 3 answers")
    links = summary.get_by_role("link")
    expect(links).to_have_text(
        ["Income: This field is required.", "Age: Enter a whole number.", "City: This field is required."]
    )
    for field in (income, age, city):
        expect(field).to_have_attribute("aria-invalid", "true")
    expect(age).to_have_value("41.5")
    expect(income).to_have_accessible_description(
        "The model learned from values between 1028.72 and 8990.34. This field is required."
    )
    expect(age).to_have_accessible_description("The model learned from values between 18 and 80. Enter a whole number.")
    expect(city).to_have_accessible_description("This field is required.")
    assert_accessible(page)

    # The summary's links lead to their fields.
    page.keyboard.press("Tab")
    expect(links.nth(0)).to_be_focused()
    page.keyboard.press("Enter")
    expect(income).to_be_focused()

    # -- corrected with the keyboard only: type, type over the wrong answer, pick the city by its initial -----
    page.keyboard.type("8900")
    page.keyboard.press("Tab")
    assert focused(page) == "id_age"
    page.keyboard.press("Control+A")
    page.keyboard.type("41")
    page.keyboard.press("Tab")
    assert focused(page) == "id_city"
    page.keyboard.type("n")
    expect(city).to_have_value("north")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Get my decision")).to_be_focused()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # -- the decision: announced, with the probability as text and the reasons in words -----------------------
    expect(page).to_have_title("Approved: your decision · Faro")
    expect(page.get_by_role("status")).to_contain_text("Approved")
    expect(page.get_by_test_id("decision")).to_have_text("Approved")
    expect(page.get_by_test_id("probability")).to_have_text(re.compile(r"^\d{1,3}%$"))
    record = PredictionRecord.objects.get()
    expect(page.get_by_test_id("reference")).to_have_text(str(record.request_id))
    reasons = page.get_by_test_id("reasons").get_by_role("listitem").all_inner_texts()
    assert reasons, "no reasons shown"
    allowed = {
        f"{label} ({value}) counted {way}."
        for label, value in (("Income", "8900"), ("Age", "41"), ("City", "north"))
        for way in ("in your favour", "against you")
    }
    assert set(reasons) <= allowed, reasons
    assert "Income (8900) counted in your favour." in reasons
    assert_accessible(page)

    # -- ask a person to review it, again with the keyboard -------------------------------------------------
    reason = page.get_by_label("What should the reviewer know? (optional)")
    expect(reason).to_have_accessible_description(
        "For example, something the form did not ask about, or an answer that was wrong."
    )
    tab_to(page, "id_reason")
    page.keyboard.type("My income rose this year.")
    page.keyboard.press("Tab")
    assert focused(page) == "id_contact"
    page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Ask for a review")
    expect(button).to_be_focused()
    with page.expect_navigation():
        page.keyboard.press("Enter")

    expect(page).to_have_title("Review requested · Faro")
    expect(page.get_by_role("heading", level=1)).to_have_text("We have your request for a review")
    expect(page.get_by_role("status")).to_contain_text(f"Your reference: {record.request_id}")
    expect(page.get_by_test_id("review-status")).to_have_text("Open")
    assert_accessible(page)
    review = ReviewRequest.objects.get()
    assert (review.request_id, review.reason, review.contact, review.status) == (
        record.request_id,
        "My income rose this year.",
        "",
        "open",
    )
    assert AuditEvent.objects.filter(action="review_request.created", object_id=str(review.pk)).count() == 1

    # A reload shows the confirmation again and records nothing more.
    page.reload()
    expect(page).to_have_title("Review requested · Faro")
    assert ReviewRequest.objects.count() == 1

    # The checks above do catch what they look for. (The colour is set through the CSSOM: the page's
    # Content-Security-Policy refuses style attributes.)
    page.evaluate(
        """() => {
             document.querySelector("main").insertAdjacentHTML("beforeend", '<p>faint</p><input name="unnamed">');
             document.querySelector("main > p:last-of-type").style.color = "#aaaaaa";
           }"""
    )
    assert page.evaluate(UNLABELLED_SCRIPT) == ["unnamed"]
    assert page.evaluate(CONTRAST_SCRIPT) == ['p "faint": 2.18 < 4.5']  # #aaaaaa on --bg
