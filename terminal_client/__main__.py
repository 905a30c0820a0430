"""The terminal's command line, in Japanese for shop and facility staff.

    python -m terminal_client --config terminal.json [--base-url URL] [--reader NAME] COMMAND
      pay AMOUNT [--municipality CODE]   カードで支払い（上限を超えると暗証番号）
      refund TRANSFER_ID AMOUNT          返金
      balance                            残高照会（この店舗で使えるポイント）
      lookup                             施設の利用者番号の照会（施設モード）
      status                             未確定の支払いを確定
      keygen --terminal-id ID            新しい端末の鍵を作り、登録する公開鍵を表示
      resident-sign-in CODE              住民モード: マイページに表示されたコードにカードで答える
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import sys
from pathlib import Path

from terminal_client.api import ApiClient, Unreachable
from terminal_client.jpki import JpkiCard
from terminal_client.outbox import Outbox
from terminal_client.reader import CardReaderError, PcscReader
from terminal_client.signing import load_ed25519_private_key, new_terminal_key
from terminal_client.terminal import PaymentPending, ServerRefused, Terminal, TerminalConfig

JST = dt.timezone(dt.timedelta(hours=9))


def _local_time(posted_at: str) -> str:
    moment = dt.datetime.fromisoformat(posted_at.replace("Z", "+00:00")).astimezone(JST)
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def _receipt(title: str, lines: list[tuple[str, str]]) -> str:
    rule = "─" * 34
    return "\n".join([rule, f" {title}", rule] + [f" {label}: {value}" for label, value in lines] + [rule])


def _ask_pin(tries_left: int) -> str:
    prompt = f"暗証番号（4桁、残り {tries_left} 回）: "
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    # Unattended (tests, a PIN pad that types into standard input): one PIN per line.
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    print()
    return line.strip()


def _open_card(reader_name: str | None):
    @contextlib.contextmanager
    def open_card():
        reader = PcscReader(reader_name)
        reader.connect()
        try:
            yield JpkiCard(reader)
        finally:
            reader.disconnect()

    return open_card


def _keygen(arguments) -> int:
    private, public = new_terminal_key()
    out = Path(arguments.out)
    if out.exists():
        print(f"{out} は既にあります。上書きしません。", file=sys.stderr)
        return 2
    out.write_text(json.dumps({"terminal_id": arguments.terminal_id, "private_key": private, "public_key": public},
                              ensure_ascii=False, indent=2), encoding="utf-8")
    out.chmod(0o600)
    print(f"端末 {arguments.terminal_id} の鍵を作成しました（秘密鍵: {out}）。")
    print("次の公開鍵を自治体の管理画面で端末として登録してください:")
    print(public)
    return 0


def _resident_sign_in(arguments) -> int:
    from terminal_client.terminal import resident_sign_in

    api = ApiClient(arguments.base_url, "", None)
    resident_sign_in(api, _open_card(arguments.reader), _ask_pin, arguments.code.strip().upper())
    print("カードで確認しました。ブラウザの画面に戻ってください。")
    return 0


def _with_clear_errors(action) -> int:
    """Every failure the people at the counter can meet, said in Japanese, with an exit code per kind."""
    try:
        return action()
    except CardReaderError as error:
        print(f"エラー: {error.message}", file=sys.stderr)
        return 4
    except ServerRefused as error:
        print(f"エラー: {error}", file=sys.stderr)
        return 1
    except PaymentPending as pending:
        print(f"サーバーから応答がありません。支払い {pending.transfer_id} は未確定として保存しました。"
              "status で確定してください（二重に請求されることはありません）。", file=sys.stderr)
        return 3
    except Unreachable:
        print("サーバーに接続できません。ネットワークを確認してください。", file=sys.stderr)
        return 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m terminal_client", description="店舗・施設端末")
    parser.add_argument("--config", default=".local/demo/terminal-shop.json", help="端末設定（鍵）のファイル")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--reader", help="使うカードリーダーの名前（省略時はカードが置かれたもの）")
    parser.add_argument("--outbox", help="未確定の支払いを保存するファイル（省略時は設定ファイルの隣）")
    commands = parser.add_subparsers(dest="command", required=True)
    pay = commands.add_parser("pay", help="ポイントで支払う")
    pay.add_argument("amount", type=int)
    pay.add_argument("--municipality", help="自治体コード（省略時は端末の既定）")
    refund = commands.add_parser("refund", help="返金する")
    refund.add_argument("transfer_id")
    refund.add_argument("amount", type=int)
    commands.add_parser("balance", help="残高照会")
    commands.add_parser("lookup", help="施設の利用者番号を照会する")
    commands.add_parser("status", help="未確定の支払いを確定する")
    resident = commands.add_parser("resident-sign-in", help="住民モード: マイページのコードにカードで答える")
    resident.add_argument("code")
    keygen = commands.add_parser("keygen", help="新しい端末の鍵を作る")
    keygen.add_argument("--terminal-id", required=True)
    keygen.add_argument("--out", default="terminal.json")
    arguments = parser.parse_args(argv)

    if arguments.command == "keygen":
        return _keygen(arguments)
    if arguments.command == "resident-sign-in":
        return _with_clear_errors(lambda: _resident_sign_in(arguments))
    try:
        config_data = json.loads(Path(arguments.config).read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"端末設定 {arguments.config} がありません（make run で作成されます）。", file=sys.stderr)
        return 2
    config = TerminalConfig(config_data["terminal_id"], config_data["private_key"], config_data.get("municipality_code"),
                            config_data.get("pin_free_limits", {}))
    outbox_path = Path(arguments.outbox) if arguments.outbox else Path(arguments.config).with_suffix(".outbox.json")
    api = ApiClient(arguments.base_url, config.terminal_id, load_ed25519_private_key(config.private_key))
    terminal = Terminal(config, api, Outbox(outbox_path), _open_card(arguments.reader), _ask_pin)
    return _with_clear_errors(lambda: _run(terminal, arguments))


def _run(terminal: Terminal, arguments) -> int:
    if arguments.command == "pay":
        answer = terminal.pay(arguments.amount, arguments.municipality)
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
    elif arguments.command == "balance":
        answer = terminal.balance()
        print(f"{answer['merchant_name']} で使えるポイント")
        for entry in answer["balances"]:
            print(f"  {entry['municipality_name']}（{entry['point_name']}）: {entry['balance']:,} pt"
                  f"  うち30日以内に失効: {entry['expiring_within_30_days']:,} pt")
        if not answer["balances"]:
            print("  この店舗で使えるポイントはありません。")
    elif arguments.command == "lookup":
        answer = terminal.look_up_facility_id()
        print(f"利用者番号: {answer['local_id']}")
    elif arguments.command == "status":
        results = terminal.status()
        if not results:
            print("未確定の支払いはありません。")
        for transfer_id, answer, problem in results:
            if answer:
                print(f"確定: {transfer_id}  {answer['amount']:,} pt  残高 {answer['balance_after']:,} pt")
            else:
                print(f"未確定: {transfer_id}  {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
