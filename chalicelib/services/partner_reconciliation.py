"""Partners reading their own conversions back (docs/CONTRACTS.md#partner-reconciliation, #partner-signature).

A partner signs each HTTP request like a point-management company, with its own header and prefix
(`X-Partner-Id`, `POINTS-PARTNER-V1`) and either of its registered keys; any failure, an unknown or
inactive partner included, is `401 partner_authentication_failed`. It may then ask, for its own
conversions only:

- by Japan day: a page of up to 500 decisions made that day (by the platform's decision time, credits
  first, then refusals), with a cursor for the next page;
- by transaction ids (1-100): each one `credited`, `rejected` or `unknown`. Another partner's
  transaction is `unknown`, exactly like one never sent, so nothing tells one partner about another.

The store's cursor is wrapped in one sealed with an HMAC under the platform's hash secret and bound to
the partner and the day: a cursor comes back from outside, and one from another day (or tampered with)
must be a clear `400 validation_failed`, never a DynamoDB error about a start key outside the query.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.domain import identifiers
from chalicelib.services import conversions, ports

Clock = Callable[[], float]
HashSecret = Callable[[], bytes]

SIGNATURE_PREFIX = "POINTS-PARTNER-V1"
ID_HEADER = "X-Partner-Id"
PAGE_SIZE = 500
MAX_IDS = 100
MAX_TXN_ID_CHARACTERS = conversions.MAX_PARTNER_TXN_ID_CHARACTERS
MAX_CURSOR_CHARACTERS = 2048
INQUIRY_FIELDS = ("date", "cursor", "partner_txn_ids")
# The fields of every line of an answer, whichever way it was asked.
LINE_FIELDS = ("partner_txn_id", "status", "reason", "municipality_code", "points", "partner_points", "campaign_code",
               "decided_at")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BAD_CURSOR = "cursor が正しくありません。同じ日付の前のページの cursor をそのまま指定してください。"


def authenticate(ledger_store, method: str, path: str, headers, body: bytes, clock: Clock) -> dict:
    """The partner that signed this request, active, with the nonce spent; else PartnerAuthenticationFailed."""
    from chalicelib.auth import terminals

    return terminals.authenticate_signed(ledger_store, method, path, headers, body, clock(), ID_HEADER, SIGNATURE_PREFIX,
                                         ledger_store.get_partner, errors.PartnerAuthenticationFailed, "提携先")


@dataclass(frozen=True)
class Inquiry:
    """Either a day (with the cursor of the previous page, or None) or transaction ids, never both."""

    date: str | None = None
    cursor: str | None = None
    partner_txn_ids: tuple[str, ...] | None = None


def parse_inquiry(body: dict) -> Inquiry:
    """The body of `POST /v1/partner/conversion-inquiries`, checked field by field (null is absent)."""
    unknown = sorted(set(body) - set(INQUIRY_FIELDS))
    if unknown:
        raise errors.ValidationFailed(f"未知の項目があります: {', '.join(unknown)}", field=unknown[0])
    day, cursor, txn_ids = (body.get(name) for name in INQUIRY_FIELDS)
    if (day is None) == (txn_ids is None):
        raise errors.ValidationFailed("date（日ごとの一覧）か partner_txn_ids（取引IDでの照会）のどちらか一方を指定してください。",
                                      field="date" if day is None else "partner_txn_ids")
    if txn_ids is not None:
        if cursor is not None:
            raise errors.ValidationFailed("cursor は date での照会にだけ指定できます。", field="cursor")
        return Inquiry(partner_txn_ids=_txn_ids(txn_ids))
    if cursor is not None and (not isinstance(cursor, str) or not 1 <= len(cursor) <= MAX_CURSOR_CHARACTERS):
        raise errors.ValidationFailed(_BAD_CURSOR, field="cursor")
    return Inquiry(date=_day(day), cursor=cursor)


def _day(value) -> str:
    message = "date は日本時間の日付 YYYY-MM-DD です（2000〜2999年）。"
    if not isinstance(value, str) or not _DATE.fullmatch(value) or not value.startswith("2"):
        raise errors.ValidationFailed(message, field="date")
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError as error:  # 2026-02-30, 2026-13-01
        raise errors.ValidationFailed(message, field="date") from error


def _txn_ids(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS:
        raise errors.ValidationFailed(f"partner_txn_ids は取引IDの配列です（1〜{MAX_IDS}件）。", field="partner_txn_ids")
    for index, txn in enumerate(value):
        field = f"partner_txn_ids[{index}]"
        if not isinstance(txn, str) or not 1 <= len(txn) <= MAX_TXN_ID_CHARACTERS:
            raise errors.ValidationFailed(f"取引IDは1〜{MAX_TXN_ID_CHARACTERS}文字の文字列です。", field=field)
        # The same rule as the messages (docs/CONTRACTS.md#individual-number): such an id was refused
        # `individual_number_forbidden` and recorded without it; it is not taken here either.
        if identifiers.identifier_holds_individual_number(txn):
            raise errors.IndividualNumberForbidden(field=field)
    return tuple(dict.fromkeys(value))  # each id once, in the order asked


def answer(ledger_store, hash_secret: HashSecret, partner_id: str, inquiry: Inquiry) -> dict:
    if inquiry.partner_txn_ids is not None:
        return conversions_by_ids(ledger_store, hash_secret, partner_id, inquiry.partner_txn_ids)
    return conversions_of_day(ledger_store, hash_secret, partner_id, inquiry.date, inquiry.cursor)


def conversions_of_day(ledger_store, hash_secret: HashSecret, partner_id: str, day: str, cursor: str | None,
                       limit: int | None = None) -> dict:
    """One page (`PAGE_SIZE` lines unless told) of the partner's decisions of a Japan day: credits first,
    then refusals, each kind in the order it was decided."""
    from chalicelib.domain.time import japan_day_end_utc, japan_day_start_utc

    limit = PAGE_SIZE if limit is None else limit
    secret = hash_secret()
    store_cursor = None if cursor is None else _open_cursor(secret, partner_id, day, cursor)
    lines, following = ledger_store.conversion_page(partner_id, japan_day_start_utc(day), japan_day_end_utc(day),
                                                    store_cursor, limit)
    return {"partner_id": partner_id, "date": day, "conversions": [_line(line) for line in lines],
            "cursor": None if following is None else _seal_cursor(secret, partner_id, day, following)}


def conversions_by_ids(ledger_store, hash_secret: HashSecret, partner_id: str, partner_txn_ids) -> dict:
    """Each transaction id's outcome for this partner: its credit, its recorded refusal, or unknown."""
    secret = None
    lines = []
    for txn in partner_txn_ids:
        transfer = ledger_store.get_transfer(conversions.conversion_transfer_id(partner_id, txn))
        # The partner check matters: transfer ids of payments are chosen by terminals, and one could be
        # chosen to equal a conversion's; only this partner's own conversion is reported.
        if transfer is not None and transfer.partner_id == partner_id and transfer.kind == ports.CONVERSION:
            lines.append(_line({
                "partner_txn_id": txn, "status": "credited",
                "municipality_code": None if transfer.municipality_code == ports.RESERVE else transfer.municipality_code,
                "points": transfer.amount, "partner_points": transfer.partner_points,
                "campaign_code": transfer.campaign_code, "decided_at": transfer.posted_at}))
            continue
        secret = secret if secret is not None else hash_secret()
        rejection = ledger_store.get_conversion_rejection(partner_id, conversions.partner_txn_key(secret, partner_id, txn))
        if rejection is not None:
            lines.append(_line({"partner_txn_id": txn, "status": "rejected", "reason": rejection["reason"], "points": 0,
                                "decided_at": rejection["rejected_at"]}))
        else:
            lines.append(_line({"partner_txn_id": txn, "status": "unknown", "points": 0}))
    return {"partner_id": partner_id, "date": None, "conversions": lines, "cursor": None}


def _line(values: dict) -> dict:
    return {name: values.get(name) for name in LINE_FIELDS}


# -- the cursor ------------------------------------------------------------------------------------------


def _cursor_tag(secret: bytes, partner_id: str, payload: str) -> str:
    digest = hmac.new(secret, f"partner-cursor/{partner_id}/{payload}".encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _seal_cursor(secret: bytes, partner_id: str, day: str, store_cursor: str) -> str:
    text = json.dumps({"date": day, "page": store_cursor}, separators=(",", ":"), ensure_ascii=False)
    payload = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")
    return f"{payload}.{_cursor_tag(secret, partner_id, payload)}"


def _open_cursor(secret: bytes, partner_id: str, day: str, cursor: str) -> str:
    payload, _, tag = cursor.rpartition(".")
    if not payload or not hmac.compare_digest(tag.encode("utf-8"), _cursor_tag(secret, partner_id, payload).encode("utf-8")):
        raise errors.ValidationFailed(_BAD_CURSOR, field="cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, binascii.Error) as error:  # sealed by us, so only if the format ever changes
        raise errors.ValidationFailed(_BAD_CURSOR, field="cursor") from error
    if not isinstance(data, dict) or data.get("date") != day or not isinstance(data.get("page"), str):
        raise errors.ValidationFailed(_BAD_CURSOR, field="cursor")
    return data["page"]
