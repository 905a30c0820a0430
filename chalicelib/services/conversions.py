"""Partner point conversions (地域経済応援ポイント) and the reserve account (留保口座): docs/CONTRACTS.md#partner-conversions and #reserve.

A partner sends a signed message; the platform checks the signature and the partner's agreement, then
credits the resident's wallet of the chosen municipality, or their reserve when no municipality is
chosen, in one transaction that also records the partner payable (the transfer's debit account) and
moves the resident's daily and monthly cap counters under their conditions. The transfer id is derived
from (partner_id, partner_txn_id), so a message is credited exactly once however often it arrives, for
ever. A refusal made after the signature checked out is recorded too, so a redelivery gets the same
answer. Each outcome goes to the partner's result queue.

Reserve points wait 14 days (their lot's date is the last day); the resident may allocate them to any
municipality on the platform; from day 15 a daily job moves what is left to the home municipality.
Every step is a transfer.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.domain import identifiers
from chalicelib.domain import lots as lot_rules
from chalicelib.domain.time import japan_date, japan_month, posted_at
from chalicelib.services import ports
from chalicelib.services.retry import MAX_ATTEMPTS

Clock = Callable[[], float]
CONVERSION_NAMESPACE = uuid.UUID("0d6f3c2e-8a4b-4f1e-9c7d-5b2a1e3f4c60")
RESERVE_DAYS = 14
MESSAGE_VERSION = 1
MAX_AGE_DAYS = 30
ROUNDING_RULES = ("floor", "half_up", "ceil")
MAX_PARTNER_POINTS = 100_000_000
MAX_PARTNER_TXN_ID_CHARACTERS = 128
# Every reason a result message can carry (docs/PARTNERS.md lists each with an example).
REFUSAL_REASONS = (
    "malformed_message", "individual_number_forbidden", "signature_missing", "signature_invalid",
    "unknown_mykey_id", "mykey_suspended", "unknown_campaign", "campaign_municipality_mismatch",
    "municipality_not_in_agreement", "municipality_unknown", "points_too_small", "points_too_large",
    "occurred_at_out_of_range", "daily_cap_exceeded", "monthly_cap_exceeded", "partner_txn_conflict",
)


class Rejected(Exception):
    """A conversion refused for good, with the reason reported to the partner."""

    def __init__(self, reason: str, record: bool = True):
        super().__init__(reason)
        self.reason = reason
        # Refusals before the signature is verified are never recorded: a forger must not be able to
        # claim a partner's transaction id ahead of the partner.
        self.record = record


@dataclass(frozen=True)
class ConversionMessage:
    partner_id: str
    partner_txn_id: str
    mykey_id: str
    municipality_code: str | None
    partner_points: int
    campaign_code: str | None
    occurred_at: dt.datetime


def conversion_transfer_id(partner_id: str, partner_txn_id: str) -> str:
    return str(uuid.uuid5(CONVERSION_NAMESPACE, f"{partner_id}/{partner_txn_id}"))


def message_fingerprint(data: dict | None) -> str | None:
    """SHA-256 of the message's canonical JSON: key order and spacing aside, any difference is another message."""
    if data is None:
        return None
    import hashlib

    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def partner_txn_key(secret: bytes, partner_id: str, partner_txn_id: str) -> str:
    """The key a refusal is recorded under: an HMAC of the transaction id, never the id itself, because a
    refused id may be an Individual Number (docs/CONTRACTS.md#individual-number)."""
    import hashlib
    import hmac

    message = f"partner-txn/{partner_id}/{partner_txn_id}".encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def safe_partner_txn_id(partner_txn_id: str | None) -> str | None:
    """The transaction id when it may be kept and logged in clear: 1–128 characters, no Individual Number."""
    if not isinstance(partner_txn_id, str) or not 1 <= len(partner_txn_id) <= MAX_PARTNER_TXN_ID_CHARACTERS:
        return None
    if identifiers.identifier_holds_individual_number(partner_txn_id):
        return None
    return partner_txn_id


def reserve_account(mykey_id: str) -> str:
    return f"reserve:{mykey_id}"


def partner_account(partner_id: str) -> str:
    return f"partner:{partner_id}"


# -- message parsing and the agreement ------------------------------------------------------------------


def _peek(body: str) -> tuple[dict | None, str | None, str | None]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or an integer literal too long to convert
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    try:
        # JSON may escape lone surrogates ("\ud800") that no identifier, store or result message can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return None, None, None
    partner_id = data.get("partner_id") if isinstance(data.get("partner_id"), str) else None
    txn = data.get("partner_txn_id") if isinstance(data.get("partner_txn_id"), str) else None
    return data, partner_id, txn


def parse_message(data: dict) -> ConversionMessage:
    expected = {"version", "partner_id", "partner_txn_id", "mykey_id", "municipality_code", "partner_points",
                "campaign_code", "occurred_at"}
    # `type(...) is int`: JSON's true and 1.0 compare equal to 1 in Python but are not version 1.
    if set(data) != expected or type(data["version"]) is not int or data["version"] != MESSAGE_VERSION:
        raise Rejected("malformed_message")
    txn = data["partner_txn_id"]
    if not isinstance(txn, str) or not 1 <= len(txn) <= MAX_PARTNER_TXN_ID_CHARACTERS:
        raise Rejected("malformed_message")
    # The transaction id is kept with the credit and shown back to the partner: an Individual Number
    # anywhere in it is refused, not only an id that is one.
    if identifiers.identifier_holds_individual_number(txn):
        raise Rejected("individual_number_forbidden")
    for field in ("mykey_id", "municipality_code", "campaign_code"):
        if identifiers.looks_like_individual_number(data[field]):
            raise Rejected("individual_number_forbidden")
    try:
        mykey = identifiers.mykey_id(data["mykey_id"])
        code = identifiers.municipality_code(data["municipality_code"]) if data["municipality_code"] is not None else None
    except errors.DomainError as error:
        raise Rejected("malformed_message") from error
    points = data["partner_points"]
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_PARTNER_POINTS:
        raise Rejected("malformed_message")
    campaign = data["campaign_code"]
    if campaign is not None and (not isinstance(campaign, str) or not 1 <= len(campaign) <= 64):
        raise Rejected("malformed_message")
    try:
        occurred_at = dt.datetime.fromisoformat(data["occurred_at"])
    except (TypeError, ValueError) as error:
        raise Rejected("malformed_message") from error
    if occurred_at.tzinfo is None:
        raise Rejected("malformed_message")
    return ConversionMessage(data["partner_id"], txn, mykey, code, points, campaign, occurred_at)


def verify_signature(public_keys_base64: list[str], body: str, signature_base64: str | None) -> None:
    """Accept a signature by any of the partner's keys: two are registered while it changes keys."""
    from chalicelib.auth.terminals import signed_by_any

    if not signature_base64:
        raise Rejected("signature_missing", record=False)
    try:
        signature = base64.b64decode(signature_base64, validate=True)
    except (ValueError, binascii.Error) as error:
        raise Rejected("signature_invalid", record=False) from error
    if not signed_by_any(public_keys_base64, signature, body.encode("utf-8")):
        raise Rejected("signature_invalid", record=False)


def convert(partner_points: int, numerator: int, denominator: int, rounding: str) -> int:
    """Municipal points for `partner_points` at numerator/denominator, rounded by the agreement's rule."""
    whole, remainder = divmod(partner_points * numerator, denominator)
    if rounding == "floor" or remainder == 0:
        return whole
    if rounding == "ceil":
        return whole + 1
    if rounding == "half_up":
        return whole + (1 if remainder * 2 >= denominator else 0)
    raise ValueError(f"unknown rounding rule {rounding}")


@dataclass(frozen=True)
class Terms:
    municipality_code: str | None  # None: the reserve
    points: int
    campaign_code: str | None


def apply_agreement(agreement: dict, message: ConversionMessage) -> Terms:
    """The municipality and the points a message earns under the partner's agreement, or a refusal."""
    numerator, denominator = agreement["rate_numerator"], agreement["rate_denominator"]
    municipality_code = message.municipality_code
    applied_campaign = None
    if message.campaign_code is not None:
        campaign = next((c for c in agreement.get("campaigns", []) if c["campaign_code"] == message.campaign_code), None)
        if campaign is None:
            raise Rejected("unknown_campaign")
        starts = dt.datetime.fromisoformat(campaign["starts_at"])
        ends = dt.datetime.fromisoformat(campaign["ends_at"])
        # A campaign's rate applies only inside its window; outside it the base rate applies.
        if starts <= message.occurred_at < ends:
            target = campaign.get("target_municipality_code")
            if target and municipality_code and municipality_code != target:
                raise Rejected("campaign_municipality_mismatch")
            municipality_code = municipality_code or target
            numerator, denominator = campaign["rate_numerator"], campaign["rate_denominator"]
            applied_campaign = campaign["campaign_code"]
    participating = agreement.get("municipalities", ["*"])
    if municipality_code is not None and "*" not in participating and municipality_code not in participating:
        raise Rejected("municipality_not_in_agreement")
    points = convert(message.partner_points, numerator, denominator, agreement.get("rounding", "floor"))
    if points < 1:
        raise Rejected("points_too_small")
    if points > identifiers.MAX_AMOUNT:
        raise Rejected("points_too_large")
    return Terms(municipality_code, points, applied_campaign)


def validate_agreement(agreement: dict) -> dict:
    """The operator's agreement as the consumer will read it; refuses what it could not apply."""
    def positive(value, field):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.ValidationFailed(f"{field} は1以上の整数です。", field=field)
        return value

    known = {"municipalities", "rate_numerator", "rate_denominator", "rounding", "daily_cap_per_resident",
             "monthly_cap_per_resident", "campaigns"}
    unknown = sorted(set(agreement) - known)
    if unknown:
        # A typo must not silently fall back to a default (["*"] would open every municipality).
        raise errors.ValidationFailed(f"agreement に未知の項目があります: {', '.join(unknown)}", field=f"agreement.{unknown[0]}")
    campaigns = agreement.get("campaigns", [])
    if not isinstance(campaigns, list) or not all(isinstance(campaign, dict) for campaign in campaigns):
        raise errors.ValidationFailed("campaigns はオブジェクトの配列です。", field="agreement.campaigns")
    result = {
        "municipalities": agreement.get("municipalities", ["*"]),
        "rate_numerator": positive(agreement.get("rate_numerator"), "agreement.rate_numerator"),
        "rate_denominator": positive(agreement.get("rate_denominator"), "agreement.rate_denominator"),
        "rounding": agreement.get("rounding", "floor"),
        "daily_cap_per_resident": positive(agreement.get("daily_cap_per_resident"), "agreement.daily_cap_per_resident"),
        "monthly_cap_per_resident": positive(agreement.get("monthly_cap_per_resident"), "agreement.monthly_cap_per_resident"),
        "campaigns": [],
    }
    if result["rounding"] not in ROUNDING_RULES:
        raise errors.ValidationFailed("rounding は floor, half_up, ceil のいずれかです。", field="agreement.rounding")
    if not isinstance(result["municipalities"], list) or not result["municipalities"]:
        raise errors.ValidationFailed("municipalities は自治体コードの配列か [\"*\"] です。", field="agreement.municipalities")
    for code in result["municipalities"]:
        if code != "*":
            identifiers.municipality_code(code, "agreement.municipalities")
    campaign_fields = {"campaign_code", "rate_numerator", "rate_denominator", "starts_at", "ends_at", "target_municipality_code"}
    for campaign in campaigns:
        if set(campaign) - campaign_fields:
            raise errors.ValidationFailed("campaign に未知の項目があります。", field="agreement.campaigns")
        checked = {
            "campaign_code": identifiers.plain_identifier(campaign.get("campaign_code"), "campaign_code"),
            "rate_numerator": positive(campaign.get("rate_numerator"), "campaign.rate_numerator"),
            "rate_denominator": positive(campaign.get("rate_denominator"), "campaign.rate_denominator"),
            "starts_at": campaign.get("starts_at"),
            "ends_at": campaign.get("ends_at"),
            "target_municipality_code": campaign.get("target_municipality_code"),
        }
        try:
            starts = dt.datetime.fromisoformat(checked["starts_at"])
            ends = dt.datetime.fromisoformat(checked["ends_at"])
        except (TypeError, ValueError) as error:
            raise errors.ValidationFailed("campaign の starts_at / ends_at はタイムゾーン付きの ISO 8601 です。", field="campaign") from error
        if starts.tzinfo is None or ends.tzinfo is None or ends <= starts:
            raise errors.ValidationFailed("campaign の期間が正しくありません。", field="campaign")
        if checked["target_municipality_code"] is not None:
            identifiers.municipality_code(checked["target_municipality_code"], "campaign.target_municipality_code")
        result["campaigns"].append(checked)
    codes = [campaign["campaign_code"] for campaign in result["campaigns"]]
    if len(codes) != len(set(codes)):
        raise errors.ValidationFailed("campaign_code が重複しています。", field="agreement.campaigns")
    return result


# -- crediting ------------------------------------------------------------------------------------------


def _cap_counters(partner_id: str, mykey_id: str, day: dt.date, agreement: dict, points: int) -> list[ports.CounterWrite]:
    month = day.strftime("%Y-%m")
    return [
        ports.CounterWrite(f"convday#{partner_id}#{mykey_id}#{day.isoformat()}", points, "at_most",
                           agreement["daily_cap_per_resident"] - points),
        ports.CounterWrite(f"convmonth#{partner_id}#{mykey_id}#{month}", points, "at_most",
                           agreement["monthly_cap_per_resident"] - points),
    ]


def _result(partner_txn_id: str | None, status: str, reason: str | None, municipality_code: str | None, points: int) -> dict:
    return {"partner_txn_id": partner_txn_id, "status": status, "reason": reason,
            "municipality_code": municipality_code, "points": points}


def _credited(transfer: ports.Transfer) -> dict:
    code = None if transfer.municipality_code == ports.RESERVE else transfer.municipality_code
    return _result(transfer.partner_txn_id, "credited", None, code, transfer.amount)


FINGERPRINT_PREFIX = "partner-message:"


def _replayed(transfer: ports.Transfer, fingerprint: str | None) -> dict:
    """The credit's result again for the same message; a conflict for another message under its id."""
    recorded = transfer.request_fingerprint
    # Credits from before fingerprints were kept say only "partner-message": they replay as before.
    if recorded.startswith(FINGERPRINT_PREFIX) and recorded != FINGERPRINT_PREFIX + (fingerprint or ""):
        raise Rejected("partner_txn_conflict", record=False)
    return _credited(transfer)


def _refused_before(previous: dict, fingerprint: str | None, partner_txn_id: str | None) -> dict:
    if previous["message_fingerprint"] is not None and previous["message_fingerprint"] != fingerprint:
        raise Rejected("partner_txn_conflict", record=False)
    return _result(partner_txn_id, "rejected", previous["reason"], None, 0)


def log_fields(body: str, hash_secret: Callable[[], bytes]) -> dict:
    """What a log line may say about a message: the partner id when it is a plain identifier, the
    transaction id when it may be kept in clear, else its keyed hash (never an Individual Number)."""
    _, partner_id, txn = _peek(body)
    try:
        plain_partner = identifiers.plain_identifier(partner_id, "partner_id") if partner_id else None
    except errors.DomainError:
        plain_partner = None
    fields = {"partner_id": plain_partner, "partner_txn_id": safe_partner_txn_id(txn)}
    if txn is not None and fields["partner_txn_id"] is None and plain_partner:
        fields["partner_txn_key"] = partner_txn_key(hash_secret(), plain_partner, txn)
    return fields


def process_message(ledger_store, identity_store, body: str, signature: str | None, clock: Clock,
                    hash_secret: Callable[[], bytes]) -> tuple[dict, str | None]:
    """Decide one partner message. Returns (the result for the partner, the partner's result queue or
    None when no registered, active partner can be named). Raises only for transient failures, to be
    retried. `hash_secret` gives the key of the keyed hash refusals are recorded under."""
    data, partner_id, txn = _peek(body)
    partner = ledger_store.get_partner(partner_id) if partner_id else None
    if partner is None or not partner.get("active", True):
        return _result(txn, "rejected", "unknown_partner", None, 0), None
    queue = partner["result_queue"]
    fingerprint = message_fingerprint(data)
    txn_key = None
    try:
        verify_signature(partner.get("public_keys") or [partner["public_key"]], body, signature)
        if txn:
            existing = ledger_store.get_transfer(conversion_transfer_id(partner_id, txn))
            if existing is not None:
                return _replayed(existing, fingerprint), queue
            txn_key = partner_txn_key(hash_secret(), partner_id, txn)
            previous = ledger_store.get_conversion_rejection(partner_id, txn_key)
            if previous is not None:
                return _refused_before(previous, fingerprint, txn), queue
        message = parse_message(data)
        return _credit(ledger_store, identity_store, partner, message, fingerprint, clock), queue
    except Rejected as rejection:
        if rejection.record and txn_key:
            ledger_store.put_conversion_rejection(partner_id, txn_key, safe_partner_txn_id(txn), rejection.reason,
                                                  fingerprint, posted_at(clock()))
            # Two deliveries of different messages under one id may be refused at once: the first
            # recorded refusal stands, and the other message is the conflict.
            stored = ledger_store.get_conversion_rejection(partner_id, txn_key)
            if stored is not None:
                try:
                    return _refused_before(stored, fingerprint, txn), queue
                except Rejected as conflict:
                    rejection = conflict
        return _result(txn, "rejected", rejection.reason, None, 0), queue


def _credit(ledger_store, identity_store, partner: dict, message: ConversionMessage, fingerprint: str | None,
            clock: Clock) -> dict:
    now = clock()
    transfer_id = conversion_transfer_id(partner["partner_id"], message.partner_txn_id)
    occurred = message.occurred_at.timestamp()
    if occurred > now + 86400 or occurred < now - MAX_AGE_DAYS * 86400:
        raise Rejected("occurred_at_out_of_range")
    mykey = identity_store.get_mykey(message.mykey_id)
    if mykey is None:
        raise Rejected("unknown_mykey_id")
    if mykey.status != "active":
        raise Rejected("mykey_suspended")
    agreement = partner["agreement"]
    terms = apply_agreement(agreement, message)
    today = japan_date(now)
    if terms.municipality_code is not None:
        municipality = ledger_store.get_municipality(terms.municipality_code)
        if municipality is None:
            raise Rejected("municipality_unknown")
        wallet_code, credit_account = terms.municipality_code, f"wallet:{message.mykey_id}:{terms.municipality_code}"
        expires_on = lot_rules.expiry_date(municipality.expiry_rule, today)
    else:
        wallet_code, credit_account = ports.RESERVE, reserve_account(message.mykey_id)
        expires_on = (today + dt.timedelta(days=RESERVE_DAYS)).isoformat()
    # Caps count by the Japan date of this decision, the day the statement and the partner's day listing
    # put the credit on (docs/PARTNERS.md): a message sent late on the 31st but credited on the 1st
    # counts in the 1st's day and month everywhere. A redelivery never reaches here once credited.
    counters = _cap_counters(partner["partner_id"], message.mykey_id, today, agreement, terms.points)
    for _ in range(MAX_ATTEMPTS):
        wallet = ledger_store.get_wallet(message.mykey_id, wallet_code)
        new_lots = lot_rules.add(wallet.lots, expires_on, terms.points)
        transfer = ports.Transfer(
            transfer_id=transfer_id, kind=ports.CONVERSION, debit_account=partner_account(partner["partner_id"]),
            credit_account=credit_account, amount=terms.points, municipality_code=wallet_code,
            mykey_id=message.mykey_id, posted_at=posted_at(now), request_fingerprint=FINGERPRINT_PREFIX + (fingerprint or ""),
            balance_after=lot_rules.total(new_lots), lots={expires_on: terms.points},
            partner_id=partner["partner_id"], partner_txn_id=message.partner_txn_id,
            partner_points=message.partner_points, campaign_code=terms.campaign_code,
        )
        try:
            ledger_store.post_transfer(transfer, ports.WalletWrite(message.mykey_id, wallet_code, wallet.version, new_lots), counters)
            return _credited(transfer)
        except ports.TransferAlreadyPosted as posted:
            return _replayed(posted.existing, fingerprint)
        except ports.CounterConditionFailed as failed:
            raise Rejected("daily_cap_exceeded" if failed.counter_id.startswith("convday#") else "monthly_cap_exceeded")
        except (ports.WalletChanged, ports.WriteContention):
            continue
    raise errors.ConcurrentUpdate()


# -- the reserve account --------------------------------------------------------------------------------


def reserve_summary(ledger_store, mykey_id: str) -> dict:
    wallet = ledger_store.get_wallet(mykey_id, ports.RESERVE)
    return {
        "balance": wallet.balance,
        "lots": [{"points": points, "last_day": day} for day, points in sorted(wallet.lots.items())],
    }


def allocate_reserve(ledger_store, mykey_id: str, municipality_code: str, amount: int, allocation_id: str,
                     clock: Clock, reason: str = "resident") -> ports.Transfer:
    """Move reserve points (soonest deadline first) into one municipality's wallet: one transfer."""
    now = clock()
    municipality = ledger_store.get_municipality(municipality_code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    expires_on = lot_rules.expiry_date(municipality.expiry_rule, japan_date(now))
    for _ in range(MAX_ATTEMPTS):
        reserve = ledger_store.get_wallet(mykey_id, ports.RESERVE)
        target = ledger_store.get_wallet(mykey_id, municipality_code)
        fingerprint = f"{mykey_id}/{municipality_code}/{amount}"
        try:
            remaining, taken = lot_rules.consume(reserve.lots, amount)
        except errors.InsufficientBalance:
            existing = ledger_store.get_transfer(allocation_id)
            if existing is not None:
                if existing.kind != ports.RESERVE_ALLOCATION or existing.request_fingerprint != fingerprint:
                    raise errors.TransferIdConflict()
                return existing
            raise
        new_target = lot_rules.add(target.lots, expires_on, amount)
        transfer = ports.Transfer(
            transfer_id=allocation_id, kind=ports.RESERVE_ALLOCATION, debit_account=reserve_account(mykey_id),
            credit_account=f"wallet:{mykey_id}:{municipality_code}", amount=amount, municipality_code=municipality_code,
            mykey_id=mykey_id, posted_at=posted_at(now), request_fingerprint=fingerprint,
            balance_after=lot_rules.total(new_target), lots={expires_on: amount}, reason=reason,
        )
        try:
            ledger_store.post_transfer(
                transfer, ports.WalletWrite(mykey_id, ports.RESERVE, reserve.version, remaining, debit_amount=amount), [],
                second_wallet=ports.WalletWrite(mykey_id, municipality_code, target.version, new_target),
            )
            return transfer
        except ports.TransferAlreadyPosted as posted:
            if posted.existing.kind != ports.RESERVE_ALLOCATION or posted.existing.request_fingerprint != transfer.request_fingerprint:
                raise errors.TransferIdConflict()
            return posted.existing
        except (ports.WalletChanged, ports.WriteContention):
            continue
    raise errors.ConcurrentUpdate()


def move_expired_reserves(ledger_store, identity_store, clock: Clock) -> list[ports.Transfer]:
    """Day 15: whatever is still in a reserve after its 14 days goes to the resident's home municipality."""
    now = clock()
    today = japan_date(now)
    moved = []
    for mykey_id, code in ledger_store.wallets_due_for_expiry(today.isoformat()):
        if code != ports.RESERVE:
            continue
        reserve = ledger_store.get_wallet(mykey_id, ports.RESERVE)
        due = lot_rules.expired(reserve.lots, today)
        mykey = identity_store.get_mykey(mykey_id)
        if not due or mykey is None:
            continue
        # Named after the reserve's state: a re-run on the same state is a replay, not a second move.
        allocation_id = str(uuid.uuid5(CONVERSION_NAMESPACE, f"reserve-move/{mykey_id}/{reserve.version}"))
        try:
            moved.append(allocate_reserve(ledger_store, mykey_id, mykey.home_municipality_code, lot_rules.total(due),
                                          allocation_id, clock, reason="reserve_deadline"))
        except errors.DomainError:
            # One resident's problem (say, a home municipality no longer on the platform) must not stop
            # the others' moves; it is logged and retried on the next run.
            from chalicelib.observability import get_logger

            get_logger().exception("reserve move failed", extra={"mykey_id": mykey_id})
    return moved


# -- statements -----------------------------------------------------------------------------------------


def monthly_statement(ledger_store, partner_id: str, month: str) -> dict:
    """Points converted per municipality in a month and the yen the partner owes (1 pt = 1 yen).

    A credit belongs to the Japan month in which the platform credited it (its posted_at), the same day
    basis as the caps and the partner's day listing, so a closed month's statement never changes."""
    label, start, end = japan_month(month)
    lines: dict[str, dict] = {}
    for posted in ledger_store.transfers_of_partner(partner_id, start, end):
        line = lines.setdefault(posted["municipality_code"], {"municipality_code": posted["municipality_code"],
                                                              "conversions": 0, "partner_points": 0, "points": 0})
        line["conversions"] += 1
        line["partner_points"] += posted["partner_points"]
        line["points"] += posted["amount"]
    ordered = [dict(line, yen_owed=line["points"]) for _, line in sorted(lines.items())]
    return {
        "partner_id": partner_id,
        "month": label,
        "lines": ordered,
        "total_conversions": sum(line["conversions"] for line in ordered),
        "total_partner_points": sum(line["partner_points"] for line in ordered),
        "total_points": sum(line["points"] for line in ordered),
        "total_yen_owed": sum(line["points"] for line in ordered),
    }


def statement_csv(statement: dict) -> str:
    """The statement for Excel: UTF-8 with a BOM, CRLF line ends, Japanese and English headers."""
    rows = ["自治体コード municipality_code,件数 conversions,提携先ポイント partner_points,付与ポイント points,請求額（円） yen_owed"]
    for line in statement["lines"]:
        code = "留保口座 reserve" if line["municipality_code"] == ports.RESERVE else line["municipality_code"]
        rows.append(f"{code},{line['conversions']},{line['partner_points']},{line['points']},{line['yen_owed']}")
    rows.append(f"合計 total,{statement['total_conversions']},{statement['total_partner_points']},"
                f"{statement['total_points']},{statement['total_yen_owed']}")
    return "\ufeff" + "\r\n".join(rows) + "\r\n"
