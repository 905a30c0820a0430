"""Reports for municipal staff: daily movements for the dashboard chart, the monthly merchant settlement,
and the points that will expire soon.

All of them are read from the transfer records (the sharded municipality index) or the wallets, never
from a running total, so they always agree with the ledger. Days and months are Japan's.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Callable

from chalicelib import errors
from chalicelib.domain import lots as lot_rules
from chalicelib.domain.time import JST, japan_date, japan_day_end_utc, japan_day_start_utc, japan_month
from chalicelib.services import ports
from chalicelib.services.administration import MERCHANT_KIND_NAMES
from chalicelib.services.ledger import SUMMARY_KINDS

MAX_DAILY_REPORT_DAYS = 400
SETTLEMENT_COLUMNS = ("加盟店ID", "加盟店名", "種別", "所在自治体コード", "支払件数", "支払ポイント", "返金件数", "返金ポイント", "精算額（円）")


def _municipality(store, code: str) -> ports.Municipality:
    municipality = store.get_municipality(code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    return municipality


def _japan_day_of(posted_at: str) -> str:
    instant = dt.datetime.fromisoformat(posted_at.replace("Z", "+00:00"))
    return instant.astimezone(JST).date().isoformat()


def daily(store, municipality_code: str, start: str, end: str) -> dict:
    """Per Japanese day from `start` to `end` inclusive: issued, converted in, spent, refunded, expired, transferred out."""
    _municipality(store, municipality_code)
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    if last < first:
        raise errors.ValidationFailed("to は from 以降の日付にしてください。", field="to")
    if (last - first).days >= MAX_DAILY_REPORT_DAYS:
        raise errors.ValidationFailed(f"期間は{MAX_DAILY_REPORT_DAYS}日以内にしてください。", field="from")
    names = sorted(set(SUMMARY_KINDS.values()))
    days = {(first + dt.timedelta(days=offset)).isoformat(): {name: 0 for name in names}
            for offset in range((last - first).days + 1)}
    for posted in store.transfers_of_municipality(municipality_code, japan_day_start_utc(start), japan_day_end_utc(end)):
        name = SUMMARY_KINDS.get(posted.kind)
        day = _japan_day_of(posted.posted_at)
        if name and day in days:
            days[day][name] += posted.amount
    return {"municipality_code": municipality_code, "from": start, "to": end,
            "days": [{"date": day, **totals} for day, totals in days.items()]}


def settlement(store, municipality_code: str, month: str) -> dict:
    """What the municipality owes each merchant for a month: payments less refunds of its points."""
    _municipality(store, municipality_code)
    label, first, last = japan_month(month)
    per_merchant: dict[str, dict] = {}
    for posted in store.transfers_of_municipality(municipality_code, first, last):
        if posted.kind not in (ports.PAYMENT, ports.REFUND) or not posted.merchant_id:
            continue
        line = per_merchant.setdefault(posted.merchant_id, {"payments": 0, "payment_points": 0, "refunds": 0, "refund_points": 0})
        if posted.kind == ports.PAYMENT:
            line["payments"] += 1
            line["payment_points"] += posted.amount
        else:
            line["refunds"] += 1
            line["refund_points"] += posted.amount
    merchants = store.get_merchants(per_merchant)
    lines = []
    for merchant_id in sorted(per_merchant):
        merchant = merchants.get(merchant_id)
        line = per_merchant[merchant_id]
        lines.append({
            "merchant_id": merchant_id,
            "merchant_name": merchant.name if merchant else "",
            "kind": merchant.kind if merchant else "",
            "merchant_municipality_code": merchant.municipality_code if merchant else "",
            **line,
            "settlement_amount": line["payment_points"] - line["refund_points"],
        })
    return {"municipality_code": municipality_code, "month": label, "merchants": lines,
            "total_settlement_amount": sum(line["settlement_amount"] for line in lines)}


def excel_csv(header: tuple[str, ...] | list[str], rows: list[list]) -> str:
    """CSV that Excel opens correctly on a double click: UTF-8 with a byte-order mark, CRLF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        # A leading = + - @ would make Excel evaluate the cell as a formula (CSV injection).
        writer.writerow(["'" + cell if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@") else cell for cell in row])
    return "\ufeff" + buffer.getvalue()


def settlement_csv(report: dict) -> str:
    rows = [[line["merchant_id"], line["merchant_name"], MERCHANT_KIND_NAMES.get(line["kind"], line["kind"]),
             line["merchant_municipality_code"], line["payments"], line["payment_points"], line["refunds"],
             line["refund_points"], line["settlement_amount"]] for line in report["merchants"]]
    rows.append(["合計", "", "", "", sum(l["payments"] for l in report["merchants"]),
                 sum(l["payment_points"] for l in report["merchants"]), sum(l["refunds"] for l in report["merchants"]),
                 sum(l["refund_points"] for l in report["merchants"]), report["total_settlement_amount"]])
    return excel_csv(SETTLEMENT_COLUMNS, rows)


def expiring_soon(store, municipality_code: str, days: int, clock: Callable[[], float]) -> dict:
    """Points in residents' wallets that expire within `days` days (today included), by expiry date."""
    _municipality(store, municipality_code)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
        raise errors.ValidationFailed("days は 1〜366 の整数です。", field="days")
    today = japan_date(clock())
    horizon = today + dt.timedelta(days=days)
    by_date: dict[str, dict] = {}
    for wallet in store.wallets_of_municipality(municipality_code):
        for expires_on, points in lot_rules.usable(wallet.lots, today).items():
            if points > 0 and dt.date.fromisoformat(expires_on) < horizon:
                entry = by_date.setdefault(expires_on, {"expires_on": expires_on, "points": 0, "wallets": 0})
                entry["points"] += points
                entry["wallets"] += 1
    dates = [by_date[key] for key in sorted(by_date)]
    return {"municipality_code": municipality_code, "as_of": today.isoformat(), "within_days": days,
            "total_points": sum(entry["points"] for entry in dates), "by_date": dates}
