"""Reconcile one Japan day of point conversions: what you sent against what the platform decided.

    python examples/reconcile_day.py --partner-file partner.json --base-url URL --date 2026-12-01 --sent sent.jsonl

`sent.jsonl` is your own record of the conversions you sent: one JSON object a line, with at least
`partner_txn_id` and `partner_points` (other fields are ignored). `--base-url` is the API base URL given
at onboarding (`https://<api id>.execute-api.ap-northeast-1.amazonaws.com/v/`; the local cloud's is
http://127.0.0.1:8000). See docs/PARTNERS.md §15 and §16.

It reads every decision the platform made for you that Japan day (all pages of
`POST /v1/partner/conversion-inquiries {"date": ...}`), then asks by id (100 at a time) about the sent
transactions the day does not list, since they may have been decided on another day. The report sorts
them into:

- matched: credited with the partner points you sent;
- rejected: refused, with the reason (a refusal is final). An id the read API itself refuses (an
  Individual Number in it, more than 128 characters) is reported rejected for that reason: a message
  carrying it was refused so, and the day lists such refusals with `partner_txn_id: null`;
- missing: unknown to the platform, not received (or not decided yet): resend it with the same
  partner_txn_id (it is credited at most once, however often it arrives);
- differing: credited with other partner points than you recorded, or a credit the day lists that is not
  in your file (one sent just before midnight may be decided the next day: include such late sends).

Exit status: 0 when every sent transaction is credited as sent and the day lists nothing else; 1
otherwise; 2 when reconciliation could not be done (unreadable file, API error).
Needs only cryptography (and partner_api.py beside it).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from dataclasses import dataclass, field

from partner_api import MAX_IDS_PER_INQUIRY, PartnerApi, PartnerApiError, Transport

# The read API's refusal of one id in an inquiry (`field` names it), and the reason a message carrying
# that id got: the same rule decides both (docs/PARTNERS.md §15).
REFUSED_ID_REASONS = {"individual_number_forbidden": "individual_number_forbidden", "validation_failed": "malformed_message"}
_ID_FIELD = re.compile(r"partner_txn_ids\[([0-9]+)\]")


class SentFileError(Exception):
    pass


@dataclass
class Reconciliation:
    matched: list[tuple[dict, dict]] = field(default_factory=list)      # (sent, decision)
    rejected: list[tuple[dict | None, dict]] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    differing: list[tuple[dict | None, dict]] = field(default_factory=list)

    def all_matched(self, sent_count: int) -> bool:
        """Every sent transaction credited as sent, and nothing else decided."""
        return not (self.rejected or self.missing or self.differing) and len(self.matched) == sent_count


def read_sent(path: str) -> dict[str, dict]:
    """Your sent transactions by partner_txn_id, in file order."""
    sent: dict[str, dict] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                txn_id, points = record["partner_txn_id"], record["partner_points"]
            except (ValueError, KeyError, TypeError) as error:
                raise SentFileError(f"{path}:{number}: partner_txn_id と partner_points のある JSON ではありません / "
                                    f"not JSON with partner_txn_id and partner_points ({error})") from None
            if not isinstance(txn_id, str) or isinstance(points, bool) or not isinstance(points, int):
                raise SentFileError(f"{path}:{number}: partner_txn_id は文字列、partner_points は整数です / "
                                    "partner_txn_id must be a string and partner_points an integer")
            if txn_id in sent and sent[txn_id]["partner_points"] != points:
                raise SentFileError(f"{path}:{number}: {txn_id} が異なるポイント数で2回あります / "
                                    f"{txn_id} appears twice with different partner_points")
            sent[txn_id] = record
    return sent


def reconcile(api: PartnerApi, date: str, sent: dict[str, dict]) -> Reconciliation:
    outcome = Reconciliation()
    listed = api.day_conversions(date)
    listed_ids = {decision["partner_txn_id"] for decision in listed}
    elsewhere = ask_by_id(api, [txn_id for txn_id in sent if txn_id not in listed_ids])
    # A sent id the API will not look up (it holds an Individual Number) was refused and is listed without
    # its id: each such id stands for one of the day's unnamed refusals, which are not counted twice.
    unnamed = [decision for decision in listed if decision["partner_txn_id"] is None]
    refused_ids = sum(1 for decision in elsewhere if decision.get("id_refused"))
    named = [decision for decision in listed if decision["partner_txn_id"] is not None]
    for decision in [*named, *unnamed[refused_ids:], *elsewhere]:
        record = sent.get(decision["partner_txn_id"]) if decision["partner_txn_id"] is not None else None
        if decision["status"] == "unknown":
            outcome.missing.append(record)
        elif decision["status"] == "rejected":
            outcome.rejected.append((record, decision))
        elif record is not None and record["partner_points"] == decision["partner_points"]:
            outcome.matched.append((record, decision))
        else:
            outcome.differing.append((record, decision))
    return outcome


def ask_by_id(api: PartnerApi, txn_ids: list[str]) -> list[dict]:
    """The outcome of each transaction, asking 100 at a time. An id the API refuses is answered here as
    rejected, and the rest of its group asked again."""
    decisions = []
    for start in range(0, len(txn_ids), MAX_IDS_PER_INQUIRY):
        group = txn_ids[start:start + MAX_IDS_PER_INQUIRY]
        while group:
            try:
                decisions.extend(api.conversion_inquiries(partner_txn_ids=group)["conversions"])
                break
            except PartnerApiError as error:
                named = _ID_FIELD.fullmatch(error.field or "")
                if error.status != 400 or error.code not in REFUSED_ID_REASONS or not named or int(named.group(1)) >= len(group):
                    raise
                decisions.append({"partner_txn_id": group.pop(int(named.group(1))), "status": "rejected",
                                  "reason": REFUSED_ID_REASONS[error.code], "id_refused": True})
    return decisions


def _credit(decision: dict) -> str:
    where = decision["municipality_code"] or "留保口座 / reserve"
    return f"{decision['partner_points']:,} → {decision['points']:,} pt ({where}, {decision['decided_at']})"


def report(outcome: Reconciliation, date: str, partner_id: str, sent_count: int) -> list[str]:
    lines = [f"{date} の交換の照合（{partner_id}、送信記録 {sent_count} 件） / "
             f"Conversions of {date} reconciled ({partner_id}, {sent_count} sent)"]
    lines.append(f"一致 / matched: {len(outcome.matched)}")
    lines += [f"  {record['partner_txn_id']}: {_credit(decision)}" for record, decision in outcome.matched]
    lines.append(f"拒否 / rejected: {len(outcome.rejected)}")
    for record, decision in outcome.rejected:
        txn_id = decision["partner_txn_id"] or "（取引IDが不正 / invalid partner_txn_id）"
        if record is None:
            note = "（送信記録にありません / not in the sent file）"
        elif decision.get("id_refused"):
            note = "（取引IDそのものが受け付けられません / the id itself is refused）"
        else:
            note = ""
        lines.append(f"  {txn_id}: {decision['reason']}{note}")
    lines.append(f"未着 / missing: {len(outcome.missing)}"
                 + ("（届いていないか未判定です。同じ取引IDで再送してください / "
                    "not received or not decided yet: resend with the same partner_txn_id）"
                    if outcome.missing else ""))
    lines += [f"  {record['partner_txn_id']}: {record['partner_points']:,}" for record in outcome.missing]
    lines.append(f"相違 / differing: {len(outcome.differing)}")
    for record, decision in outcome.differing:
        if record is None:
            lines.append(f"  {decision['partner_txn_id']}: 送信記録にない交換 / credited but not in the sent file: {_credit(decision)}")
        else:
            lines.append(f"  {decision['partner_txn_id']}: 送信記録 / sent {record['partner_points']:,}、"
                         f"交換 / credited {_credit(decision)}")
    lines.append("結果 / result: " + ("すべて一致 / all matched" if outcome.all_matched(sent_count)
                                       else "確認が必要です / needs attention"))
    return lines


def main(argv: list[str] | None = None, transport: Transport | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partner-file", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--date", required=True, help="the Japan date, YYYY-MM-DD")
    parser.add_argument("--sent", required=True, help="your sent conversions, one JSON object a line")
    arguments = parser.parse_args(argv)
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", arguments.date):
            raise ValueError(arguments.date)
        datetime.date.fromisoformat(arguments.date)
    except ValueError:
        parser.error(f"--date は YYYY-MM-DD です / --date must be YYYY-MM-DD: {arguments.date}")

    try:
        sent = read_sent(arguments.sent)
        api = PartnerApi.from_partner_file(arguments.partner_file, arguments.base_url, transport)
        outcome = reconcile(api, arguments.date, sent)
    except (OSError, SentFileError, PartnerApiError) as error:
        print(f"照合できませんでした / could not reconcile: {error}", file=sys.stderr)
        return 2
    print("\n".join(report(outcome, arguments.date, api.partner_id, len(sent))))
    return 0 if outcome.all_matched(len(sent)) else 1


if __name__ == "__main__":
    sys.exit(main())
