"""The staff console's sign-in lockout in a real browser: Debian's headless Chromium driven by Playwright.

As `make run` runs it (the page from `chalice local`, the staff API, DynamoDB Local): a member of staff
mistypes the password five times. The first four answers say the id or password is wrong; the fifth, and
then the right password too, show the lockout in Japanese with the minutes to wait, and the password
field is emptied. A screenshot of the page is kept beside the test's files.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import LocalCloud
from tests.e2e.test_console_browser import CHROMIUM, CHROMIUM_FLAGS

pytestmark = pytest.mark.e2e
WRONG_ANSWER = "職員IDまたはパスワードが正しくありません。"
LOCKED = "サインインに続けて5回失敗したため、この職員IDを一時的にロックしています。あと15分たってから、もう一度お試しください。"


def test_console__five_wrong_passwords__show_the_lockout_and_the_wait_even_for_the_right_password(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    try:
        staff = json.loads((cloud.data_dir / "demo" / "staff.json").read_text(encoding="utf-8"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(locale="ja-JP", viewport={"width": 1100, "height": 760})
            page.set_default_timeout(15_000)
            page.goto(f"{cloud.base_url}/console")
            error = page.locator("#error")

            def submit(password: str):
                page.fill("#staff-id", staff["staff_id"])
                page.fill("#password", password)
                page.fill("#counter-terminal-id", "madoguchi-1")
                with page.expect_response(lambda r: r.url.endswith("/v1/staff/sessions") and r.request.method == "POST") as answer:
                    page.get_by_role("button", name="サインイン", exact=True).click()
                return answer.value

            for attempt in range(1, 5):
                assert submit(f"wrong-password-{attempt}").status == 401
                expect(error).to_contain_text(WRONG_ANSWER)
                expect(page.locator("#password")).to_have_value(f"wrong-password-{attempt}")  # kept to correct a typo

            fifth = submit("wrong-password-5")
            assert fifth.status == 429 and fifth.headers["retry-after"] == "900"
            expect(error).to_contain_text(LOCKED)
            expect(page.locator("#password")).to_have_value("")

            right = submit(staff["password"])
            assert right.status == 429 and 1 <= int(right.headers["retry-after"]) <= 900
            expect(error).to_contain_text(re.compile(r"この職員IDを一時的にロックしています。あと\d+分たってから、もう一度お試しください。"))
            expect(page.locator("#password")).to_have_value("")
            expect(page.locator("#sign-in-form")).to_be_visible()
            expect(page.locator("#app")).to_be_hidden()

            screenshot = tmp_path / "console-sign-in-locked.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            browser.close()
    finally:
        assert cloud.interrupt() == 0
