"""The demo terminal: pay, refund and check balances on the local cloud without writing code.

It plays a shop terminal holding the seeded test card (a software card under `.local/demo/`; the
real terminal client reads My Number Cards through PC/SC). Requests are signed exactly as DESIGN §5
says. Each payment's transfer id and body go to an outbox file before the request is sent, and a
payment whose answer was lost is resent with the same id, so it is never charged twice.

    python -m tools.demo_terminal balance | pay AMOUNT [--pin 1234] | refund TRANSFER_ID AMOUNT
                                 | status | grant AMOUNT | report    [--terminal shop|museum]
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import getpass
import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from terminal_client.signing import load_ed25519_private_key, payment_message, request_headers
from tools.demo_seed import MUNICIPALITY_CODE
from tools.devpki import DevCard
from tools.localcloud.processes import REPOSITORY_ROOT

JST = dt.timezone(dt.timedelta(hours=9))
SEND_ATTEMPTS = 3


class Unreachable(Exception):
    pass


class DemoTerminal:
    def __init__(self, base_url: str, demo_dir: Path, terminal_name: str):
        self.base_url = base_url.rstrip("/")
        self.demo_dir = demo_dir
        keys = json.loads((demo_dir / f"terminal-{terminal_name}.json").read_text(encoding="utf-8"))
        self.terminal_id = keys["terminal_id"]
        self.private_key = load_ed25519_private_key(keys["private_key"])
        card = json.loads((demo_dir / "card.json").read_text(encoding="utf-8"))
        self.card = DevCard.from_pem_pair(card)
        self.card_pin = card["pin"]
        self.mykey_id = card["mykey_id"]
        self.outbox_path = demo_dir / f"outbox-{terminal_name}.json"

    # -- transport ------------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None, signed: bool = True):
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        all_headers = dict(headers or {})
        if signed:
            all_headers.update(request_headers(self.private_key, self.terminal_id, method, path, raw))
        elif raw:
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=raw or None, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read().decode("utf-8")
                return response.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read().decode("utf-8") or "{}")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise Unreachable(str(error)) from error

    def call_with_retries(self, method: str, path: str, body: dict):
        """Resend the same body (a fresh request signature each time) until the server answers."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                return self.call(method, path, body)
            except Unreachable:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                time.sleep(1 + attempt)

    # -- outbox ---------------------------------------------------------------------------------------

    def outbox(self) -> dict:
        return json.loads(self.outbox_path.read_text(encoding="utf-8")) if self.outbox_path.exists() else {}

    def _save_outbox(self, entries: dict) -> None:
        temporary = self.outbox_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(entries, ensure_ascii=False, indent=2), encoding="utf-8")
        temporary.replace(self.outbox_path)

    # -- commands -------------------------------------------------------------------------------------

    def balance(self) -> dict:
        status, body = self.call("POST", "/v1/balance-inquiries", {"card": {"certificate": self.card.certificate_base64}})
        if status != 200:
            raise CommandError(body)
        return body

    def pay(self, amount: int, pin: str | None) -> dict:
        balances = {entry["municipality_code"]: entry for entry in self.balance()["balances"]}
        limit = balances.get(MUNICIPALITY_CODE, {}).get("pin_free_limit", 0)
        transfer_id = str(uuid.uuid4())
        body = {"transfer_id": transfer_id, "municipality_code": MUNICIPALITY_CODE, "amount": amount,
                "card": {"certificate": self.card.certificate_base64}}
        if amount > limit:
            pin = pin if pin is not None else getpass.getpass(f"{limit} ポイントを超えるため暗証番号（4桁）を入力してください: ")
            if pin != self.card_pin:
                raise CommandError({"error": {"code": "wrong_pin", "message": "暗証番号が違います。"}})
            signed_at = int(time.time())
            signature = self.card.sign(payment_message(transfer_id, self.terminal_id, MUNICIPALITY_CODE, amount, signed_at))
            body["card"].update({"signature": base64.b64encode(signature).decode(), "signed_at": signed_at})
        # Saved before sending: if the answer is lost, `status` resends the same transfer id and body.
        entries = self.outbox()
        entries[transfer_id] = body
        self._save_outbox(entries)
        return self._settle(transfer_id, body)

    def _settle(self, transfer_id: str, body: dict) -> dict:
        status, answer = self.call_with_retries("POST", "/v1/payments", body)
        entries = self.outbox()
        entries.pop(transfer_id, None)
        self._save_outbox(entries)
        if status != 201:
            raise CommandError(answer)
        return answer

    def status(self) -> list[tuple[str, dict | None, str | None]]:
        results = []
        for transfer_id, body in self.outbox().items():
            try:
                results.append((transfer_id, self._settle(transfer_id, body), None))
            except CommandError as error:
                results.append((transfer_id, None, error.message))
            except Unreachable:
                results.append((transfer_id, None, "サーバーに接続できません（未確認のまま保持します）"))
        return results

    def refund(self, transfer_id: str, amount: int) -> dict:
        status, answer = self.call_with_retries(
            "POST", f"/v1/payments/{transfer_id}/refunds", {"refund_id": str(uuid.uuid4()), "amount": amount}
        )
        if status != 201:
            raise CommandError(answer)
        return answer

    def as_staff(self, action):
        staff = json.loads((self.demo_dir / "staff.json").read_text(encoding="utf-8"))
        status, session = self.call("POST", "/v1/staff/sessions", {"staff_id": staff["staff_id"], "password": staff["password"]}, signed=False)
        if status != 201:
            raise CommandError(session)
        headers = {"Authorization": f"Bearer {session['token']}"}
        try:
            return action(headers)
        finally:
            self.call("DELETE", "/v1/staff/sessions/current", headers=headers, signed=False)

    def grant(self, amount: int) -> dict:
        def action(headers):
            status, answer = self.call(
                "POST", f"/v1/municipalities/{MUNICIPALITY_CODE}/grants",
                {"grant_id": str(uuid.uuid4()), "mykey_id": self.mykey_id, "amount": amount, "reason": "デモ端末からの付与"},
                headers=headers, signed=False,
            )
            if status != 201:
                raise CommandError(answer)
            return answer

        return self.as_staff(action)

    def report(self) -> dict:
        def action(headers):
            status, answer = self.call("GET", f"/v1/municipalities/{MUNICIPALITY_CODE}/reports/summary", headers=headers, signed=False)
            if status != 200:
                raise CommandError(answer)
            return answer

        return self.as_staff(action)


class CommandError(Exception):
    def __init__(self, answer: dict):
        error = answer.get("error", {})
        self.code = error.get("code", "unknown")
        self.message = error.get("message", "エラーが発生しました。")
        super().__init__(f"{self.message}（{self.code}）")


def _local_time(posted_at: str) -> str:
    moment = dt.datetime.fromisoformat(posted_at.replace("Z", "+00:00")).astimezone(JST)
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def _receipt(title: str, lines: list[tuple[str, str]]) -> str:
    rule = "─" * 34
    body = "\n".join(f" {label}: {value}" for label, value in lines)
    return f"{rule}\n {title}\n{rule}\n{body}\n{rule}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="デモ端末（ローカル環境用）")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--data-dir", default=str(REPOSITORY_ROOT / ".local"))
    parser.add_argument("--terminal", choices=["shop", "museum"], default="shop")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("balance", help="残高照会")
    pay = commands.add_parser("pay", help="ポイントで支払う")
    pay.add_argument("amount", type=int)
    pay.add_argument("--pin", help="暗証番号（省略すると入力を求めます）")
    refund = commands.add_parser("refund", help="返金する")
    refund.add_argument("transfer_id")
    refund.add_argument("amount", type=int)
    commands.add_parser("status", help="未確認の支払いを確認・確定する")
    grant = commands.add_parser("grant", help="職員としてテストカードにポイントを付与する")
    grant.add_argument("amount", type=int)
    commands.add_parser("report", help="自治体の集計レポート")
    arguments = parser.parse_args(argv)

    try:
        terminal = DemoTerminal(arguments.base_url, Path(arguments.data_dir) / "demo", arguments.terminal)
    except FileNotFoundError:
        print("デモ用のデータがありません。先に make run を実行してください。", file=sys.stderr)
        return 2
    try:
        if arguments.command == "balance":
            answer = terminal.balance()
            print(f"{answer['merchant_name']} で使えるポイント")
            for entry in answer["balances"]:
                print(f"  {entry['municipality_name']}（{entry['point_name']}）: {entry['balance']:,} pt"
                      f"  うち30日以内に失効: {entry['expiring_within_30_days']:,} pt")
            if not answer["balances"]:
                print("  この店舗で使えるポイントはありません。")
        elif arguments.command == "pay":
            answer = terminal.pay(arguments.amount, arguments.pin)
            print(_receipt("ご利用明細", [
                ("日時", _local_time(answer["posted_at"])), ("ご利用", f"{answer['amount']:,} pt"),
                ("残高", f"{answer['balance_after']:,} pt"), ("取引ID", answer["transfer_id"]),
            ]))
        elif arguments.command == "refund":
            answer = terminal.refund(arguments.transfer_id, arguments.amount)
            print(_receipt("返金明細", [
                ("日時", _local_time(answer["posted_at"])), ("返金", f"{answer['amount']:,} pt"),
                ("残高", f"{answer['balance_after']:,} pt"), ("元の取引ID", answer["payment_transfer_id"]),
            ]))
        elif arguments.command == "status":
            results = terminal.status()
            if not results:
                print("未確認の支払いはありません。")
            for transfer_id, answer, problem in results:
                if answer:
                    print(f"確定: {transfer_id}  {answer['amount']:,} pt  残高 {answer['balance_after']:,} pt")
                else:
                    print(f"未確定: {transfer_id}  {problem}")
        elif arguments.command == "grant":
            answer = terminal.grant(arguments.amount)
            print(f"{answer['amount']:,} pt を付与しました（有効期限 {answer['expires_on']}、残高 {answer['balance_after']:,} pt）")
        elif arguments.command == "report":
            answer = terminal.report()
            for key, label in (("issued", "付与"), ("spent", "利用"), ("refunded", "返金"), ("expired", "失効"),
                               ("transferred_out", "移行"), ("outstanding", "未使用残高"), ("budget_remaining", "予算残")):
                print(f"  {label}: {answer[key]:,} pt")
    except CommandError as error:
        print(f"エラー: {error}", file=sys.stderr)
        return 1
    except Unreachable:
        print("サーバーに接続できません。make run が動いているか確認してください。"
              "支払いは未確認として保存しました（status で確定できます）。", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
