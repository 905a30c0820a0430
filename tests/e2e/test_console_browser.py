"""The staff console in a real browser: Debian's headless Chromium driven by Playwright.

Everything runs as `make run` runs it: the page from `chalice local`, the staff JSON API, DynamoDB Local,
and the grant-batch queue consumed by the local SQS poller. A shop terminal pays first (signed terminal
request with the demo card's certificate), so the month's settlement has a line. In the browser, staff
sign in, read the dashboard and its chart, upload a Shift_JIS CSV with an error and read the row-level
report, upload the corrected file and watch it complete, grant once more through a lost answer (the retry
reuses the grant_id, so the points arrive once), download the settlement CSV, read the audit log, lose
their session (signed out elsewhere) and sign out — after which the old token is refused.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalCloud

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"]
MUNICIPALITY_CODE = "252034"
JST = dt.timezone(dt.timedelta(hours=9))
PAID = 700


def _pay_at_the_shop(cloud: LocalCloud, amount: int) -> None:
    """The demo shop's terminal charges the demo card (within the PIN-free limit): a signed terminal request."""
    from terminal_client.api import ApiClient
    from terminal_client.signing import load_ed25519_private_key
    from tools.devpki import DevCard

    keys = json.loads((cloud.data_dir / "demo" / "terminal-shop.json").read_text(encoding="utf-8"))
    card = DevCard.from_pem_pair(json.loads((cloud.data_dir / "demo" / "card.json").read_text(encoding="utf-8")))
    api = ApiClient(cloud.base_url, keys["terminal_id"], load_ed25519_private_key(keys["private_key"]))
    status, answer = api.call("POST", "/v1/payments", {
        "transfer_id": str(uuid.uuid4()), "municipality_code": MUNICIPALITY_CODE, "amount": amount,
        "card": {"certificate": base64.b64encode(card.certificate_der).decode("ascii")}})
    assert status == 201 and answer["status"] == "posted", answer


def _status_with_token(cloud: LocalCloud, token: str) -> int:
    request = urllib.request.Request(f"{cloud.base_url}/v1/staff/sessions/current", method="GET",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _sign_out_elsewhere(cloud: LocalCloud, token: str) -> None:
    request = urllib.request.Request(f"{cloud.base_url}/v1/staff/sessions/current", method="DELETE",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _excel_csv(mykey_id: str, rows: list[tuple[str, str, str, str]]) -> bytes:
    """What Excel on Japanese Windows saves as "CSV (comma separated)": Shift_JIS (cp932), CRLF."""
    lines = ["申請番号,マイキーID,ポイント,付与理由,有効期限"] + [",".join((ref, key, amount, reason, "")) for ref, key, amount, reason in rows]
    return ("\r\n".join(lines) + "\r\n").replace("{mykey}", mykey_id).encode("cp932")


def test_console__sign_in_dashboard_csv_grants_settlement_csv_audit_log_and_sign_out(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    try:
        mykey_id = re.search(r"マイキーID ([A-Z2-9]{8})", cloud.output).group(1)
        staff = json.loads((cloud.data_dir / "demo" / "staff.json").read_text(encoding="utf-8"))
        _pay_at_the_shop(cloud, PAID)
        now = dt.datetime.now(JST)
        today, month = now.date().isoformat(), now.strftime("%Y-%m")

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(locale="ja-JP", accept_downloads=True)
            page.set_default_timeout(15_000)
            blocked = []
            page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None)

            response = page.goto(f"{cloud.base_url}/console")
            assert response.headers["content-type"].startswith("text/html")
            policy = response.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
            assert response.headers["x-content-type-options"] == "nosniff"
            expect(page.locator("h1")).to_have_text("自治体ポイント 職員コンソール")

            # -- sign in (by keyboard: the form is focused first) --------------------------------------------
            expect(page.locator("#staff-id")).to_be_focused()
            page.keyboard.type(staff["staff_id"])
            page.fill("#password", staff["password"])
            page.fill("#counter-terminal-id", "madoguchi-1")
            with page.expect_response(lambda r: r.url.endswith("/v1/staff/sessions") and r.request.method == "POST") as signed_in:
                page.keyboard.press("Enter")
            assert signed_in.value.status == 201
            token = signed_in.value.json()["token"]

            # -- dashboard ----------------------------------------------------------------------------------
            expect(page.locator("#status")).to_have_text("サインインしました。")
            expect(page.locator("#municipality-name")).to_have_text("長浜市")
            expect(page.locator("#who")).to_contain_text("承認者")
            expect(page.locator("#idle")).to_contain_text("自動サインアウトまで 1")
            expect(page.get_by_role("button", name="サインアウト")).to_be_visible()
            expect(page.locator("#budget-total")).to_have_text("10,000,000 pt")
            issued_today = page.locator(f'#chart-svg rect[data-series="issued"][data-date="{today}"]')
            expect(issued_today).to_have_attribute("data-value", "10000")  # the demo card's seed grant
            expect(page.locator(f'#chart-svg rect[data-series="spent"][data-date="{today}"]')).to_have_attribute("data-value", str(PAID))
            expect(page.locator("#chart-svg text").filter(has_text="ポイント").first).to_be_attached()
            expect(page.locator("#daily-table tbody tr").first).to_contain_text(today)
            expect(page.locator("#daily-table tbody tr").first).to_contain_text("10,000 pt")

            # -- CSV upload with an error: nothing granted, the row-level report in the page ------------------
            page.get_by_role("button", name="ポイント付与").click()
            expect(page.locator("#csv-columns")).to_have_text("申請番号,マイキーID,ポイント,付与理由,有効期限")
            with page.expect_download() as template:
                page.get_by_role("button", name="ひな形CSVをダウンロード").click()
            assert Path(template.value.path()).read_bytes() == "\ufeff申請番号,マイキーID,ポイント,付与理由,有効期限\r\n".encode("utf-8")

            with_error = _excel_csv(mykey_id, [("R8-0001", "{mykey}", "300", "健康診断の受診"),
                                                ("R8-0002", "ZZZZ1111", "200", "ボランティア活動")])
            page.set_input_files("#csv-file", {"name": "付与一覧.csv", "mimeType": "text/csv", "buffer": with_error})
            page.get_by_role("button", name="アップロードして確認する").click()
            expect(page.locator("#batch-status")).to_have_text("エラーあり")
            expect(page.locator("#batch-invalid-rows")).to_have_text("1行")
            error_row = page.locator("#batch-errors tbody tr")
            expect(error_row).to_have_count(1)
            expect(error_row.locator("td").nth(0)).to_have_text("3")  # the header is line 1, as in Excel
            expect(error_row.locator("td").nth(1)).to_have_text("マイキーID")
            expect(error_row).to_contain_text("マイキーIDが正しくありません")
            expect(page.locator("#batches tbody")).to_contain_text("付与一覧.csv")

            # -- the corrected file: posted by the queue, the page follows it to 完了 -------------------------
            corrected = _excel_csv(mykey_id, [("R8-0001", "{mykey}", "300", "健康診断の受診"),
                                               ("R8-0003", "{mykey}", "200", "ボランティア活動")])
            page.set_input_files("#csv-file", {"name": "付与一覧_修正.csv", "mimeType": "text/csv", "buffer": corrected})
            page.get_by_role("button", name="アップロードして確認する").click()
            expect(page.locator("#batch-file")).to_have_text("付与一覧_修正.csv")
            expect(page.locator("#batch-status")).to_have_text("完了", timeout=30_000)
            expect(page.locator("#batch-outcome")).to_contain_text("付与 2 件（500 pt）")
            expect(page.locator("#batch-progress")).to_have_attribute("value", "100")
            with page.expect_download() as row_report:
                page.get_by_role("button", name="行ごとの結果をCSVでダウンロード").click()
            report_text = Path(row_report.value.path()).read_bytes().decode("utf-8-sig")
            assert row_report.value.suggested_filename.startswith("grant-report-")
            assert "R8-0003" in report_text and "付与しました" in report_text

            # -- one grant from the form; its first answer is lost, and the retry reuses the grant_id -------
            sent = []

            def lose_first_answer(route):
                sent.append(json.loads(route.request.post_data))
                answer = route.fetch()  # the platform posts the grant...
                if len(sent) == 1:
                    route.abort("connectionreset")  # ...but the browser never hears back
                else:
                    route.fulfill(response=answer)

            grants_url = f"{cloud.base_url}/v1/municipalities/{MUNICIPALITY_CODE}/grants"
            page.route(grants_url, lose_first_answer)
            page.fill("#grant-mykey", mykey_id.lower())
            page.fill("#grant-amount", "100")
            page.fill("#grant-reason", "窓口での付与")
            page.get_by_role("button", name="付与する").click()
            expect(page.locator("#grant-result")).to_contain_text("同じ申請ID")
            expect(page.locator("#error")).to_contain_text("通信できませんでした")
            page.get_by_role("button", name="付与する").click()
            expect(page.locator("#grant-result")).to_contain_text(f"{mykey_id} に 100 pt を付与しました")
            page.unroute(grants_url)
            assert len(sent) == 2 and sent[0]["grant_id"] == sent[1]["grant_id"]
            # Granted once: 10,000 seeded − 700 paid + 500 from the CSV + 100.
            expect(page.locator("#grant-result")).to_contain_text(f"残高 {10_000 - PAID + 500 + 100:,} pt")

            # -- settlement of this month, and its CSV ---------------------------------------------------------
            page.get_by_role("button", name="精算・レポート").click()
            page.fill("#settlement-month", month)
            page.get_by_role("button", name="表示する").first.click()
            expect(page.locator("#settlement tbody")).to_contain_text("黒壁スクエア商店")
            expect(page.locator("#settlement tfoot")).to_contain_text(f"{PAID} 円")
            with page.expect_download() as settlement:
                page.get_by_role("button", name="CSVをダウンロード").click()
            assert settlement.value.suggested_filename == f"settlement-{MUNICIPALITY_CODE}-{month}.csv"
            content = Path(settlement.value.path()).read_bytes()
            assert content.startswith(b"\xef\xbb\xbf")
            text = content.decode("utf-8-sig")
            assert "黒壁スクエア商店" in text and f",{PAID}," in text

            # -- audit log: the sign-in at the counter terminal and the uploads ------------------------------
            page.get_by_role("button", name="操作ログ").click()
            audit = page.locator("#audit tbody")
            expect(audit.locator("tr").filter(has_text="サインイン").first).to_contain_text("madoguchi-1")
            expect(audit.locator("tr").filter(has_text="CSV一括付与のアップロード")).to_have_count(2)
            expect(audit).to_contain_text("付与一覧_修正.csv")
            expect(audit).to_contain_text(f"職員 {staff['staff_id']}")

            # -- the session ends elsewhere: the next call answers 401 and the page returns to sign-in -------
            _sign_out_elsewhere(cloud, token)
            page.get_by_role("button", name="最新の情報に更新").click()
            expect(page.locator("#sign-in-form")).to_be_visible()
            expect(page.locator("#error")).to_contain_text("もう一度サインインしてください")
            expect(page.locator("#app")).to_be_hidden()
            expect(page.locator("#audit tbody tr")).to_have_count(0)  # nothing left for the next person at the counter

            # -- sign in again, then sign out with the button: the token is refused afterwards -----------------
            page.fill("#staff-id", staff["staff_id"])
            page.fill("#password", staff["password"])
            with page.expect_response(lambda r: r.url.endswith("/v1/staff/sessions") and r.request.method == "POST") as again:
                page.get_by_role("button", name="サインイン", exact=True).click()
            token = again.value.json()["token"]
            expect(page.locator("#status")).to_have_text("サインインしました。")
            expect(page.locator("#municipality-name")).to_have_text("長浜市")
            assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
            assert _status_with_token(cloud, token) == 200
            page.get_by_role("button", name="サインアウト").click()
            expect(page.locator("#status")).to_have_text("サインアウトしました。")
            expect(page.locator("#sign-in-form")).to_be_visible()
            expect(page.locator("#staff-id")).to_be_focused()
            assert page.evaluate(
                "async (token) => (await fetch('v1/staff/sessions/current', {headers: {Authorization: 'Bearer ' + token}})).status",
                token) == 401
            assert _status_with_token(cloud, token) == 401
            assert blocked == [], blocked  # the policy never had to block anything the page does
            browser.close()
    finally:
        assert cloud.interrupt() == 0
