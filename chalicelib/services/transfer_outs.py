"""Transferring municipal points out to shopping-district programmes and prepaid cards, in two phases.

At a terminal the resident names the destination programme and account and signs, with the card and
its PIN, `JPKI-TRANSFER-OUT-V1\\n{transfer_id}\\n{terminal_id}\\n{municipality_code}\\n{amount}\\n
{programme_id}\\n{destination_account}\\n{signed_at}`. A mistyped account is refused by the programme's
format and check digit before anything is held. Then one transaction moves the points from the wallet
into the municipality's pending account and records a **hold**; the point-management company
(operator) is asked to credit the destination. It confirms, echoing the account and the amount, which
posts the hold (pending → operator), or rejects it, which voids the hold and gives the points back with
their original expiry; a hold not confirmed by its deadline is voided by a job. Every state change is
conditional on the hold still being pending, so a confirmation racing the deadline ends in exactly one
outcome.
"""
from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.auth.cards import CardAuthority
from chalicelib.domain import lots as lot_rules
from chalicelib.domain.accounts import account_valid
from chalicelib.domain.time import japan_date, japan_month, posted_at
from chalicelib.services import ports
from chalicelib.services.ledger import PresentedCard, _merchant_of, _refuse_unless_replay, _same_request_or_conflict, resolve_card
from chalicelib.services.retry import MAX_ATTEMPTS

Clock = Callable[[], float]
PENDING, POSTED, VOIDED = "pending", "posted", "voided"
_HOLD_NAMESPACE = uuid.UUID("a3e1c0b4-7d2f-4f65-8b1a-9e0c6d4f2a17")


def transfer_out_message(transfer_id: str, terminal_id: str, municipality_code: str, amount: int, programme_id: str,
                         destination_account: str, signed_at: int) -> bytes:
    return (f"JPKI-TRANSFER-OUT-V1\n{transfer_id}\n{terminal_id}\n{municipality_code}\n{amount}\n{programme_id}\n"
            f"{destination_account}\n{signed_at}").encode("utf-8")


def pending_account(municipality_code: str) -> str:
    return f"pending:{municipality_code}"


def operator_account(operator_id: str) -> str:
    return f"operator:{operator_id}"


@dataclass(frozen=True)
class TransferOutCommand:
    transfer_id: str
    municipality_code: str
    amount: int
    programme_id: str
    destination_account: str
    terminal: ports.Terminal
    card: PresentedCard
    request_fingerprint: str


def validate_destination(programme: dict | None, municipality_code: str, destination_account: str) -> dict:
    if programme is None or not programme["active"] or programme["municipality_code"] != municipality_code:
        raise errors.ProgrammeNotFound()
    if not account_valid(destination_account, programme["account_pattern"], programme["check_digit"]):
        raise errors.DestinationAccountInvalid(field="destination_account")
    return programme


def request_transfer_out(command: TransferOutCommand, store, authority: CardAuthority, clock: Clock) -> tuple[dict, bool]:
    """Hold the points and record the request. Returns (the hold, whether it was created now)."""
    now = clock()
    try:
        programme = validate_destination(store.get_programme(command.programme_id), command.municipality_code,
                                         command.destination_account)
        operator = store.get_operator(programme["operator_id"])
        if operator is None or not operator["active"]:
            # A stopped operator could never confirm: hold nothing rather than strand points until the deadline.
            raise errors.ProgrammeNotFound("この移行先は現在利用できません。")
        municipality = store.get_municipality(command.municipality_code)
        if municipality is None:
            raise errors.MunicipalityNotFound()
        if command.amount > municipality.max_amount:
            raise errors.InvalidAmount(f"1回に移行できるのは {municipality.max_amount} ポイントまでです。", field="amount")
        _merchant_of(store, command.terminal)
        card, verified = resolve_card(store, authority, command.card.certificate_der, now)
        if command.card.signature is None or command.card.signed_at is None:
            raise errors.CardSignatureRequired("ポイントの移行には暗証番号の入力が必要です。")
        authority.verify_signature(verified, transfer_out_message(
            command.transfer_id, command.terminal.terminal_id, command.municipality_code, command.amount,
            command.programme_id, command.destination_account, command.card.signed_at), command.card.signature)
        if now - command.card.signed_at > 600 or command.card.signed_at - now > 300:
            raise errors.CardSignatureExpired()
    except errors.DomainError as refusal:
        _refuse_unless_replay(store, command.transfer_id, ports.TRANSFER_OUT_HOLD, command.request_fingerprint, refusal)
        return store.get_hold(command.transfer_id), False

    today = japan_date(now)
    for _ in range(MAX_ATTEMPTS):
        wallet = store.get_wallet(card.mykey_id, command.municipality_code)
        try:
            remaining, taken = lot_rules.spend(wallet.lots, command.amount, today)
        except errors.InsufficientBalance as refusal:
            _refuse_unless_replay(store, command.transfer_id, ports.TRANSFER_OUT_HOLD, command.request_fingerprint, refusal)
            return store.get_hold(command.transfer_id), False
        transfer = ports.Transfer(
            transfer_id=command.transfer_id, kind=ports.TRANSFER_OUT_HOLD,
            debit_account=f"wallet:{card.mykey_id}:{command.municipality_code}",
            credit_account=pending_account(command.municipality_code), amount=command.amount,
            municipality_code=command.municipality_code, mykey_id=card.mykey_id, posted_at=posted_at(now),
            request_fingerprint=command.request_fingerprint, balance_after=lot_rules.total(lot_rules.usable(remaining, today)), lots=taken,
            terminal_id=command.terminal.terminal_id, merchant_id=command.terminal.merchant_id,
        )
        hold = {
            "hold_id": command.transfer_id, "state": PENDING, "municipality_code": command.municipality_code,
            "mykey_id": card.mykey_id, "amount": command.amount, "lots": taken, "programme_id": programme["programme_id"],
            "operator_id": programme["operator_id"], "destination_account": command.destination_account,
            "deadline": int(now) + programme["hold_seconds"], "created_at": posted_at(now),
        }
        try:
            store.create_hold(transfer, ports.WalletWrite(card.mykey_id, command.municipality_code, wallet.version, remaining,
                                                          debit_amount=command.amount), hold)
            return hold, True
        except ports.TransferAlreadyPosted as posted:
            _same_request_or_conflict(posted.existing, ports.TRANSFER_OUT_HOLD, command.request_fingerprint)
            return store.get_hold(command.transfer_id), False
        except (ports.WalletChanged, ports.WriteContention):
            continue
    raise errors.ConcurrentUpdate()


def _finish_transfer(hold: dict, kind: str, debit: str, credit: str, now: float, balance_after: int) -> ports.Transfer:
    return ports.Transfer(
        transfer_id=str(uuid.uuid5(_HOLD_NAMESPACE, f"{hold['hold_id']}/{kind}")), kind=kind, debit_account=debit,
        credit_account=credit, amount=hold["amount"], municipality_code=hold["municipality_code"], mykey_id=hold["mykey_id"],
        posted_at=posted_at(now), request_fingerprint=f"{hold['hold_id']}/{kind}", balance_after=balance_after,
        lots=hold["lots"], related_transfer_id=hold["hold_id"],
    )


def void(store, hold: dict, reason: str, clock: Clock) -> dict:
    """Give the held points back with their original expiry; returns the hold as it ends up."""
    now = clock()
    for _ in range(MAX_ATTEMPTS):
        wallet = store.get_wallet(hold["mykey_id"], hold["municipality_code"])
        restored = dict(wallet.lots)
        for expires_on, points in hold["lots"].items():
            restored = lot_rules.add(restored, expires_on, points)
        transfer = _finish_transfer(hold, ports.TRANSFER_OUT_VOID, pending_account(hold["municipality_code"]),
                                    f"wallet:{hold['mykey_id']}:{hold['municipality_code']}", now, lot_rules.total(restored))
        try:
            store.finish_hold(transfer, hold["hold_id"], VOIDED, reason,
                              ports.WalletWrite(hold["mykey_id"], hold["municipality_code"], wallet.version, restored))
            return {**hold, "state": VOIDED, "outcome_reason": reason, "finished_at": transfer.posted_at}
        except (ports.HoldNotPending, ports.TransferAlreadyPosted):
            return store.get_hold(hold["hold_id"])
        except (ports.WalletChanged, ports.WriteContention):
            continue
    raise errors.ConcurrentUpdate()


def _operators_hold(store, operator: dict, hold_id: str) -> dict:
    hold = store.get_hold(hold_id)
    # Another operator's hold is refused exactly like a hold that does not exist.
    if hold is None or hold["operator_id"] != operator["operator_id"]:
        raise errors.HoldNotFound()
    return hold


def confirm(store, operator: dict, hold_id: str, destination_account: str, amount: int, clock: Clock) -> dict:
    """Post the hold, if the echo matches and it is still pending before its deadline. Idempotent."""
    now = clock()
    hold = _operators_hold(store, operator, hold_id)
    if destination_account != hold["destination_account"] or amount != hold["amount"]:
        raise errors.ConfirmationMismatch()
    if hold["state"] == PENDING and now >= hold["deadline"]:
        hold = void(store, hold, "deadline", clock)
    if hold["state"] == POSTED:
        return hold
    if hold["state"] == VOIDED:
        raise errors.HoldAlreadyVoided()
    wallet = store.get_wallet(hold["mykey_id"], hold["municipality_code"])
    transfer = _finish_transfer(hold, ports.TRANSFER_OUT, pending_account(hold["municipality_code"]),
                                operator_account(operator["operator_id"]), now, wallet.balance)
    try:
        for attempt in range(MAX_ATTEMPTS):
            try:
                store.finish_hold(transfer, hold_id, POSTED, None, None, deadline_after=int(now))
                return {**hold, "state": POSTED, "finished_at": transfer.posted_at}
            except ports.WriteContention:
                # Throttled or in conflict with another transaction on the hold: the same posting, again.
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise errors.ConcurrentUpdate()
    except (ports.HoldNotPending, ports.TransferAlreadyPosted):
        current = store.get_hold(hold_id)
        if current["state"] == POSTED:
            return current
        if current["state"] == PENDING:  # past its deadline when the condition was checked
            current = void(store, current, "deadline", clock)
            if current["state"] == POSTED:
                return current
        raise errors.HoldAlreadyVoided()


def reject(store, operator: dict, hold_id: str, reason: str, clock: Clock) -> dict:
    hold = _operators_hold(store, operator, hold_id)
    if hold["state"] == PENDING:
        hold = void(store, hold, f"rejected: {reason}", clock)
    if hold["state"] == POSTED:
        raise errors.HoldAlreadyPosted()
    return hold


def void_expired_holds(store, clock: Clock) -> list[dict]:
    now = clock()
    voided = []
    for hold_id in store.pending_holds_due(int(now)):
        hold = store.get_hold(hold_id)
        if hold and hold["state"] == PENDING and now >= hold["deadline"]:
            voided.append(void(store, hold, "deadline", clock))
    return voided


def operator_statement(store, operator_id: str, month: str) -> dict:
    """Points an operator received in a month (Japan time), per municipality and programme."""
    label, start, end = japan_month(month)
    lines: dict[tuple[str, str], dict] = {}
    for hold in store.holds_of_operator(operator_id):
        if hold["state"] != POSTED or not (start <= hold["finished_at"] <= end):
            continue
        key = (hold["municipality_code"], hold["programme_id"])
        line = lines.setdefault(key, {"municipality_code": key[0], "programme_id": key[1], "transfers": 0, "points": 0})
        line["transfers"] += 1
        line["points"] += hold["amount"]
    ordered = [lines[key] for key in sorted(lines)]
    return {"operator_id": operator_id, "month": label, "lines": ordered,
            "total_points": sum(line["points"] for line in ordered)}
