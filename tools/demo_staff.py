"""Municipal staff actions on the local cloud's demo, without writing code: grant points, read the summary.

Signs in as the seeded staff member (`.local/demo/staff.json`), acts, and signs out. Shop and facility
operations are the terminal client's: `python -m terminal_client`.

    python -m tools.demo_staff [--base-url URL] grant AMOUNT | report
"""
from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

from terminal_client.api import ApiClient, Unreachable
from terminal_client.terminal import ServerRefused
from tools.demo_seed import MUNICIPALITY_CODE
from tools.localcloud.processes import REPOSITORY_ROOT


def _as_staff(api: ApiClient, demo_dir: Path, action):
    staff = json.loads((demo_dir / "staff.json").read_text(encoding="utf-8"))
    status, session = api.call("POST", "/v1/staff/sessions", {"staff_id": staff["staff_id"], "password": staff["password"]},
                               signed=False)
    if status != 201:
        raise ServerRefused(session, status)
    headers = {"Authorization": f"Bearer {session['token']}"}
    try:
        return action(headers)
    finally:
        api.call("DELETE", "/v1/staff/sessions/current", headers=headers, signed=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="デモ用の職員操作（ローカル環境）")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--data-dir", default=str(REPOSITORY_ROOT / ".local"))
    commands = parser.add_subparsers(dest="command", required=True)
    grant = commands.add_parser("grant", help="テストカードにポイントを付与する")
    grant.add_argument("amount", type=int)
    commands.add_parser("report", help="自治体の集計レポート")
    arguments = parser.parse_args(argv)

    demo_dir = Path(arguments.data_dir) / "demo"
    try:
        mykey_id = json.loads((demo_dir / "card.json").read_text(encoding="utf-8"))["mykey_id"]
    except FileNotFoundError:
        print("デモ用のデータがありません。先に make run を実行してください。", file=sys.stderr)
        return 2
    api = ApiClient(arguments.base_url, "", None)

    def grant_points(headers):
        body = {"grant_id": str(uuid.uuid4()), "mykey_id": mykey_id, "amount": arguments.amount, "reason": "デモ職員による付与"}
        status, answer = api.call("POST", f"/v1/municipalities/{MUNICIPALITY_CODE}/grants", body, headers, signed=False)
        if status != 201:
            raise ServerRefused(answer, status)
        print(f"{answer['amount']:,} pt を付与しました（有効期限 {answer['expires_on']}、残高 {answer['balance_after']:,} pt）")

    def report(headers):
        status, answer = api.call("GET", f"/v1/municipalities/{MUNICIPALITY_CODE}/reports/summary", None, headers, signed=False)
        if status != 200:
            raise ServerRefused(answer, status)
        for key, label in (("issued", "付与"), ("spent", "利用"), ("refunded", "返金"), ("expired", "失効"),
                           ("transferred_out", "移行"), ("outstanding", "未使用残高"), ("budget_remaining", "予算残")):
            print(f"  {label}: {answer[key]:,} pt")

    try:
        _as_staff(api, demo_dir, grant_points if arguments.command == "grant" else report)
    except ServerRefused as error:
        print(f"エラー: {error}", file=sys.stderr)
        return 1
    except Unreachable:
        print("サーバーに接続できません。make run が動いているか確認してください。", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
