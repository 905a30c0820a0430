"""The resident portal in a real browser: Debian's headless Chromium driven by Playwright.

Everything runs as `make run` runs it: the page from `chalice local`, sign-in with the demo card through
the terminal client's resident mode over PC/SC (pcscd + vpcd + the virtual card), reserve points from a
partner conversion, allocation, and "stop my card" — after which a shop terminal refuses the card.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.e2e.conftest import LocalCloud
from tools.localcloud.processes import REPOSITORY_ROOT

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"]


def _send_reserve_conversion(cloud, mykey_id: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/send_conversion.py", "--partner-file", str(cloud.data_dir / "demo" / "partner-demo-airline.json"),
         "--mykey-id", mykey_id, "--partner-points", "1000"],
        cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{cloud.ports['sqs']}", "AWS_ACCESS_KEY_ID": "local",
             "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "ap-northeast-1"},
    )
    assert result.returncode == 0 and '"municipality_code": null' in result.stdout, result.stdout + result.stderr


def _link_at_the_museum(cloud, local_id: str) -> None:
    """The museum's terminal links its member number to the card on its reader (facility mode)."""
    import base64
    import json

    from terminal_client.api import ApiClient
    from terminal_client.signing import load_ed25519_private_key
    from tools.devpki import DevCard

    keys = json.loads((cloud.data_dir / "demo" / "terminal-museum.json").read_text())
    card = DevCard.from_pem_pair(json.loads((cloud.data_dir / "demo" / "card.json").read_text()))
    api = ApiClient(cloud.base_url, keys["terminal_id"], load_ed25519_private_key(keys["private_key"]))
    status, _ = api.call("POST", "/v1/facility-links", {"card": {"certificate": base64.b64encode(card.certificate_der).decode()},
                                                        "local_id": local_id})
    assert status == 201


def test_portal__sign_in_with_the_card_see_balances_allocate_reserve_stop_the_card(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    try:
        mykey_id = re.search(r"マイキーID ([A-Z2-9]{8})", cloud.output).group(1)
        _send_reserve_conversion(cloud, mykey_id)
        _link_at_the_museum(cloud, "MUSEUM-77")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(locale="ja-JP")
            page.goto(f"{cloud.base_url}/portal")
            expect(page.locator("h1")).to_have_text("自治体ポイント マイページ")
            page.get_by_role("button", name="サインイン用のコードを表示する").click()
            code_box = page.locator("#sign-in-code")
            expect(code_box).to_have_text(re.compile(r"^[A-Z2-9]{8}$"))
            expect(page.locator("#qr svg")).to_be_visible()

            answered = cloud.terminal("resident-sign-in", code_box.inner_text(), stdin="1234\n")
            assert answered.returncode == 0, answered.stderr

            expect(page.locator("#signed-in")).to_be_visible(timeout=15_000)
            expect(page.locator("#mykey-id")).to_have_text(mykey_id)
            expect(page.locator("#balances tbody")).to_contain_text("10,000 pt")
            expect(page.locator("#reserve-summary")).to_have_text("留保ポイント: 500 pt")
            expect(page.locator("#history tbody")).to_contain_text("ポイント交換")
            expect(page.locator("#history tbody")).to_contain_text("留保口座")

            links = page.locator("#links tbody")
            expect(links).to_contain_text("長浜城歴史博物館")
            expect(links).to_contain_text("MUSEUM-77")
            page.get_by_role("button", name="長浜城歴史博物館 の登録を解除").click()
            expect(page.locator("#status")).to_have_text("登録を解除しました。")
            expect(links).not_to_contain_text("MUSEUM-77")

            page.select_option("#allocate-municipality", "252034")
            page.fill("#allocate-amount", "200")
            page.get_by_role("button", name="この自治体に移す").click()
            expect(page.locator("#status")).to_have_text("200 pt を移しました。")
            expect(page.locator("#balances tbody")).to_contain_text("10,200 pt")
            expect(page.locator("#reserve-summary")).to_have_text("留保ポイント: 300 pt")

            # "Stop my card", by keyboard: the confirmation takes focus, Enter confirms.
            page.locator("#suspend").focus()
            page.keyboard.press("Enter")
            expect(page.locator("#suspend-yes")).to_be_focused()
            page.keyboard.press("Enter")
            expect(page.locator("#status")).to_have_text("カードを止めました。再開は市区町村の窓口で手続きしてください。")
            expect(page.locator("#signed-in")).to_be_hidden()
            browser.close()

        refused = cloud.terminal("pay", "100")
        assert refused.returncode == 1 and "card_suspended" in refused.stderr
    finally:
        assert cloud.interrupt() == 0
