"""Ledger operations: grant, payment, refund, expiry, balance inquiry, history and summary.

Each function takes a plain command and the injected `LedgerStore`, checks the rules, and posts at most
one transfer through one conditional transaction (docs/CONTRACTS.md#transactions). A repeat of a known idempotency key with
the same request returns the first outcome whatever its age; with a different request it is a conflict.
Refusals that depend on time or state (an old card signature, a revoked card, a spent balance) look
for an earlier posting first, so that a terminal settling its outbox always gets the original answer.
"""
from __future__ import annotations

import datetime as dt
import uuid
import zlib
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.auth.cards import CardAuthority, payment_message
from chalicelib.domain import lots as lot_rules
from chalicelib.domain.time import japan_date, posted_at
from chalicelib.services import ports
from chalicelib.services.identity import refuse_unusable_card
from chalicelib.services.retry import post_with_retries

Clock = Callable[[], float]
_EXPIRY_NAMESPACE = uuid.UUID("6f1c7a52-4d0e-4a55-9a43-2b1d8f0c9e11")


def wallet_account(mykey_id: str, municipality_code: str) -> str:
    return f"wallet:{mykey_id}:{municipality_code}"


def issuance_account(municipality_code: str) -> str:
    return f"issuance:{municipality_code}"


def merchant_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def expired_account(municipality_code: str) -> str:
    return f"expired:{municipality_code}"


def budget_counter_id(municipality_code: str, shard: int) -> str:
    return f"budget#{municipality_code}#{shard}"


def refund_counter_id(payment_transfer_id: str) -> str:
    return f"refunded#{payment_transfer_id}"


@dataclass(frozen=True)
class PresentedCard:
    certificate_der: bytes
    signature: bytes | None = None
    signed_at: int | None = None


@dataclass(frozen=True)
class PaymentCommand:
    transfer_id: str
    municipality_code: str
    amount: int
    terminal: ports.Terminal
    card: PresentedCard
    request_fingerprint: str


@dataclass(frozen=True)
class RefundCommand:
    payment_transfer_id: str
    refund_id: str
    amount: int
    terminal: ports.Terminal
    request_fingerprint: str


@dataclass(frozen=True)
class GrantCommand:
    grant_id: str
    municipality_code: str
    mykey_id: str
    amount: int
    reason: str
    expires_on: str | None
    staff_id: str
    request_fingerprint: str


# -- shared checks ------------------------------------------------------------------------------------


def _municipality(store: ports.LedgerStore, code: str) -> ports.Municipality:
    municipality = store.get_municipality(code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    return municipality


def _merchant_of(store: ports.LedgerStore, terminal: ports.Terminal) -> ports.Merchant:
    merchant = store.get_merchant(terminal.merchant_id)
    if merchant is None or not merchant.active:
        raise errors.TerminalAuthenticationFailed("この端末の店舗は利用できません。")
    return merchant


def resolve_card(
    store: ports.LedgerStore, authority: CardAuthority, certificate_der: bytes, now: float
):
    """The card's binding and its verified certificate; refuses unknown, suspended and revoked cards."""
    verified = authority.verify_certificate(certificate_der, now)
    card = store.get_card(verified.certificate_key)
    if card is None:
        raise errors.CardUnknown()
    refuse_unusable_card(card)
    return card, verified


def _replay(store: ports.LedgerStore, transfer_id: str, kind: str, fingerprint: str) -> ports.Transfer | None:
    existing = store.get_transfer(transfer_id)
    if existing is None:
        return None
    return _same_request_or_conflict(existing, kind, fingerprint)


def _same_request_or_conflict(existing: ports.Transfer, kind: str, fingerprint: str) -> ports.Transfer:
    if existing.kind != kind or existing.request_fingerprint != fingerprint:
        raise errors.TransferIdConflict()
    return existing


def _refuse_unless_replay(store, transfer_id: str, kind: str, fingerprint: str, refusal: errors.DomainError):
    replayed = _replay(store, transfer_id, kind, fingerprint)
    if replayed is not None:
        return replayed
    raise refusal


# -- payment ------------------------------------------------------------------------------------------


def pay(command: PaymentCommand, store: ports.LedgerStore, authority: CardAuthority, clock: Clock) -> ports.Transfer:
    now = clock()
    card = None
    card_remembered = False
    try:
        municipality = _municipality(store, command.municipality_code)
        merchant = _merchant_of(store, command.terminal)
        if command.municipality_code not in merchant.accepted_municipalities:
            raise errors.MerchantNotAcceptingMunicipality()
        if command.amount > municipality.max_amount:
            raise errors.InvalidAmount(f"1回に使えるのは {municipality.max_amount} ポイントまでです。", field="amount")
        verified = authority.verify_certificate(command.card.certificate_der, now)
        card, card_remembered = _card_for_payment(store, verified.certificate_key)
        _check_card_signature(command, municipality, authority, verified, now)
    except errors.DomainError as refusal:
        if card_remembered:
            refusal = _stopped_card_first(store, verified.certificate_key, refusal)
        return _refuse_unless_replay(store, command.transfer_id, ports.PAYMENT, command.request_fingerprint, refusal)

    today = japan_date(now)

    def build(wallet: ports.Wallet):
        remaining, taken = lot_rules.spend(wallet.lots, command.amount, today)
        transfer = ports.Transfer(
            transfer_id=command.transfer_id,
            kind=ports.PAYMENT,
            debit_account=wallet_account(card.mykey_id, command.municipality_code),
            credit_account=merchant_account(merchant.merchant_id),
            amount=command.amount,
            municipality_code=command.municipality_code,
            mykey_id=card.mykey_id,
            posted_at=posted_at(now),
            request_fingerprint=command.request_fingerprint,
            balance_after=lot_rules.total(lot_rules.usable(remaining, today)),
            lots=taken,
            merchant_id=merchant.merchant_id,
            terminal_id=command.terminal.terminal_id,
        )
        return transfer, ports.WalletWrite(
            card.mykey_id, command.municipality_code, wallet.version, remaining, debit_amount=command.amount
        ), []

    # A binding this container remembers may be up to its cache age old: the transaction itself checks that
    # the card is still active and bound to that MyKey ID. A binding just read (strongly consistent, a few
    # milliseconds ago in this invocation) needs no second look, which would cost the transaction an item:
    # 2 more capacity units on every first tap in a container.
    card_guard = ports.CardGuard(verified.certificate_key, card.mykey_id) if card_remembered else None
    try:
        return post_with_retries(store, card.mykey_id, command.municipality_code, build, card_guard=card_guard)
    except ports.TransferAlreadyPosted as posted:
        return _same_request_or_conflict(posted.existing, ports.PAYMENT, command.request_fingerprint)
    except errors.InsufficientBalance as refusal:
        if card_remembered:
            refusal = _stopped_card_first(store, verified.certificate_key, refusal)
        return _refuse_unless_replay(store, command.transfer_id, ports.PAYMENT, command.request_fingerprint, refusal)
    except ports.CardChanged:
        # Stopped or renewed since its binding was read: the card as it is now gives the refusal.
        store.forget_card(verified.certificate_key)
        try:
            fresh = store.get_card(verified.certificate_key)
            if fresh is None:
                raise errors.CardUnknown()
            refuse_unusable_card(fresh)
        except errors.DomainError as refusal:
            return _refuse_unless_replay(store, command.transfer_id, ports.PAYMENT, command.request_fingerprint, refusal)
        # Usable again already (stopped and restarted while this payment ran): the terminal's retry with
        # the same transfer_id starts from the card as it is now.
        raise errors.ConcurrentUpdate()


def _card_for_payment(store: ports.LedgerStore, certificate_key: str) -> tuple[ports.Card, bool]:
    card, remembered = store.card_for_payment(certificate_key)
    if card is None:
        raise errors.CardUnknown()
    refuse_unusable_card(card)
    return card, remembered


def _stopped_card_first(store: ports.LedgerStore, certificate_key: str, refusal: errors.DomainError) -> errors.DomainError:
    """A remembered binding may hide a card stopped since: the stopped card is the refusal to give, as an
    uncached payment would have given it, before a balance or signature refusal."""
    fresh = store.get_card(certificate_key)
    try:
        if fresh is None:
            raise errors.CardUnknown()
        refuse_unusable_card(fresh)
    except errors.DomainError as stopped:
        store.forget_card(certificate_key)
        return stopped
    return refusal


def _check_card_signature(command: PaymentCommand, municipality, authority, verified, now: float) -> None:
    presented = command.card
    if presented.signature is None:
        if command.amount > municipality.pin_free_limit:
            raise errors.CardSignatureRequired()
        return
    if presented.signed_at is None:
        raise errors.CardSignatureInvalid("署名時刻（signed_at）がありません。")
    message = payment_message(
        command.transfer_id, command.terminal.terminal_id, command.municipality_code, command.amount, presented.signed_at
    )
    authority.verify_signature(verified, message, presented.signature)
    if now - presented.signed_at > 600 or presented.signed_at - now > 300:
        raise errors.CardSignatureExpired()


def find_payment(store: ports.LedgerStore, transfer_id: str, terminal: ports.Terminal) -> tuple[ports.Transfer, int]:
    """A payment and its refunded total, visible only to terminals of the merchant that took it."""
    _merchant_of(store, terminal)
    transfer = store.get_transfer(transfer_id)
    if transfer is None or transfer.kind != ports.PAYMENT or transfer.merchant_id != terminal.merchant_id:
        raise errors.TransferNotFound()
    return transfer, store.get_counter(refund_counter_id(transfer_id))


# -- refund -------------------------------------------------------------------------------------------


def refund(command: RefundCommand, store: ports.LedgerStore, clock: Clock) -> ports.Transfer:
    """Give back part or all of a payment, never more than what is left of it."""
    now = clock()
    _merchant_of(store, command.terminal)
    payment = store.get_transfer(command.payment_transfer_id)
    if payment is None or payment.kind != ports.PAYMENT:
        raise errors.TransferNotFound()
    if payment.merchant_id != command.terminal.merchant_id:
        raise errors.RefundNotAllowed()
    counter_id = refund_counter_id(payment.transfer_id)

    def build(wallet: ports.Wallet):
        already_refunded = store.get_counter(counter_id)
        if already_refunded + command.amount > payment.amount:
            raise errors.RefundExceedsPayment()
        new_lots, returned = lot_rules.restore(wallet.lots, payment.lots, already_refunded, command.amount)
        transfer = ports.Transfer(
            transfer_id=command.refund_id,
            kind=ports.REFUND,
            debit_account=merchant_account(payment.merchant_id),
            credit_account=wallet_account(payment.mykey_id, payment.municipality_code),
            amount=command.amount,
            municipality_code=payment.municipality_code,
            mykey_id=payment.mykey_id,
            posted_at=posted_at(now),
            request_fingerprint=command.request_fingerprint,
            balance_after=lot_rules.total(new_lots),
            lots=returned,
            merchant_id=payment.merchant_id,
            terminal_id=command.terminal.terminal_id,
            related_transfer_id=payment.transfer_id,
        )
        # The refund total must still be what this attempt read, so two refunds never return the same lot.
        guard = ports.CounterWrite(counter_id, command.amount, "equals", already_refunded)
        return transfer, ports.WalletWrite(payment.mykey_id, payment.municipality_code, wallet.version, new_lots), [guard]

    for _ in range(10):
        try:
            return post_with_retries(store, payment.mykey_id, payment.municipality_code, build)
        except ports.TransferAlreadyPosted as posted:
            return _same_request_or_conflict(posted.existing, ports.REFUND, command.request_fingerprint)
        except ports.CounterConditionFailed:
            continue  # another refund of the same payment came first; re-read its total and try again
        except errors.RefundExceedsPayment as refusal:
            return _refuse_unless_replay(store, command.refund_id, ports.REFUND, command.request_fingerprint, refusal)
    raise errors.ConcurrentUpdate()


# -- grant --------------------------------------------------------------------------------------------


def grant(command: GrantCommand, store: ports.LedgerStore, clock: Clock) -> ports.Transfer:
    now = clock()
    try:
        municipality = _municipality(store, command.municipality_code)
        if command.amount > municipality.max_amount:
            raise errors.InvalidAmount(f"1回に付与できるのは {municipality.max_amount} ポイントまでです。", field="amount")
        if not store.mykey_exists(command.mykey_id):
            raise errors.MykeyIdUnknown()
        today = japan_date(now)
        if command.expires_on is not None:
            if dt.date.fromisoformat(command.expires_on) < today:
                raise errors.ValidationFailed("有効期限が過去の日付です。", field="expires_on")
            expires_on = command.expires_on
        else:
            expires_on = lot_rules.expiry_date(municipality.expiry_rule, today)
    except errors.DomainError as refusal:
        return _refuse_unless_replay(store, command.grant_id, ports.GRANT, command.request_fingerprint, refusal)

    shard = zlib.crc32(command.grant_id.encode()) % municipality.budget_shards

    def build(wallet: ports.Wallet):
        new_lots = lot_rules.add(wallet.lots, expires_on, command.amount)
        transfer = ports.Transfer(
            transfer_id=command.grant_id,
            kind=ports.GRANT,
            debit_account=issuance_account(command.municipality_code),
            credit_account=wallet_account(command.mykey_id, command.municipality_code),
            amount=command.amount,
            municipality_code=command.municipality_code,
            mykey_id=command.mykey_id,
            posted_at=posted_at(now),
            request_fingerprint=command.request_fingerprint,
            balance_after=lot_rules.total(new_lots),
            lots={expires_on: command.amount},
            reason=command.reason,
            staff_id=command.staff_id,
        )
        budget = ports.CounterWrite(budget_counter_id(command.municipality_code, shard), -command.amount, "at_least", command.amount)
        return transfer, ports.WalletWrite(command.mykey_id, command.municipality_code, wallet.version, new_lots), [budget]

    for _ in range(2 * municipality.budget_shards + 4):
        try:
            return post_with_retries(store, command.mykey_id, command.municipality_code, build)
        except ports.TransferAlreadyPosted as posted:
            return _same_request_or_conflict(posted.existing, ports.GRANT, command.request_fingerprint)
        except ports.CounterConditionFailed:
            try:
                shard = _budget_shard_covering(store, municipality, command.amount, preferred=shard)
            except errors.BudgetExceeded as refusal:
                return _refuse_unless_replay(store, command.grant_id, ports.GRANT, command.request_fingerprint, refusal)
    # Still contended: when what is left could not cover the grant anyway, say so rather than "try again".
    if budget_remaining(store, municipality) < command.amount:
        return _refuse_unless_replay(store, command.grant_id, ports.GRANT, command.request_fingerprint, errors.BudgetExceeded())
    raise errors.ConcurrentUpdate()


def _budget_shard_covering(store: ports.LedgerStore, municipality: ports.Municipality, amount: int, preferred: int) -> int:
    """A budget shard holding at least `amount`, gathering remainders into one shard if none does.

    The budget is split across shards so that no single item takes every grant's write. A large grant
    late in the year may find every shard too small although their sum suffices; then the remainders
    are moved, each move a conditional transaction of its own, into the preferred shard.
    """
    shard_ids = [budget_counter_id(municipality.code, shard) for shard in range(municipality.budget_shards)]
    values = store.get_counters(shard_ids)
    if sum(values.values()) < amount:
        raise errors.BudgetExceeded()
    for shard, counter_id in enumerate(shard_ids):
        if values[counter_id] >= amount:
            return shard
    target = shard_ids[preferred]
    needed = amount - values[target]
    for counter_id in shard_ids:
        if counter_id == target or needed <= 0 or values[counter_id] <= 0:
            continue
        portion = min(values[counter_id], needed)
        try:
            store.move_counter(counter_id, target, portion)
            needed -= portion
        except (ports.CounterConditionFailed, ports.WriteContention):
            continue  # that shard was spent or contended meanwhile; the caller's retry re-reads
    return preferred


def budget_remaining(store: ports.LedgerStore, municipality: ports.Municipality) -> int:
    shard_ids = [budget_counter_id(municipality.code, shard) for shard in range(municipality.budget_shards)]
    return sum(store.get_counters(shard_ids).values())


# -- expiry -------------------------------------------------------------------------------------------


def expire_due(store: ports.LedgerStore, clock: Clock) -> list[ports.Transfer]:
    """Post an `expire` transfer for every wallet holding lots whose last day has passed in Japan."""
    now = clock()
    today = japan_date(now)
    posted = []
    for mykey_id, municipality_code in store.wallets_due_for_expiry(today.isoformat()):
        if municipality_code == ports.RESERVE:
            continue  # reserve points never expire: after 14 days they move to the home municipality
        transfer = expire_wallet(store, mykey_id, municipality_code, today, now)
        if transfer is not None:
            posted.append(transfer)
    return posted


def expire_wallet(store: ports.LedgerStore, mykey_id: str, municipality_code: str, today: dt.date, now: float):
    def build(wallet: ports.Wallet):
        due = lot_rules.expired(wallet.lots, today)
        if not due:
            raise _NothingToExpire()
        remaining = {day: points for day, points in wallet.lots.items() if day not in due}
        # Named after the wallet's state, so a re-run of the same job on the same state is a replay.
        transfer_id = str(uuid.uuid5(_EXPIRY_NAMESPACE, f"{mykey_id}/{municipality_code}/{wallet.version}"))
        amount = lot_rules.total(due)
        transfer = ports.Transfer(
            transfer_id=transfer_id,
            kind=ports.EXPIRE,
            debit_account=wallet_account(mykey_id, municipality_code),
            credit_account=expired_account(municipality_code),
            amount=amount,
            municipality_code=municipality_code,
            mykey_id=mykey_id,
            posted_at=posted_at(now),
            request_fingerprint=f"expire:{wallet.version}",
            balance_after=lot_rules.total(remaining),
            lots=due,
        )
        return transfer, ports.WalletWrite(mykey_id, municipality_code, wallet.version, remaining, debit_amount=amount), []

    try:
        return post_with_retries(store, mykey_id, municipality_code, build, fresh=True)
    except (_NothingToExpire, ports.TransferAlreadyPosted):
        return None


class _NothingToExpire(Exception):
    pass


# -- reading ------------------------------------------------------------------------------------------


def balances_at_merchant(
    store: ports.LedgerStore, merchant: ports.Merchant, mykey_id: str, clock: Clock
) -> list[dict]:
    """Balances the card's holder can spend here: only municipalities this merchant accepts."""
    today = japan_date(clock())
    result = []
    for wallet in store.list_wallets(mykey_id):
        if wallet.municipality_code not in merchant.accepted_municipalities:
            continue
        municipality = store.get_municipality(wallet.municipality_code)
        if municipality is None:
            continue
        live_lots = lot_rules.usable(wallet.lots, today)
        result.append(
            {
                "municipality_code": wallet.municipality_code,
                "municipality_name": municipality.name,
                "point_name": municipality.point_name,
                "balance": lot_rules.total(live_lots),
                "expiring_within_30_days": lot_rules.expiring_within(live_lots, today, 30),
                "next_expires_on": lot_rules.next_expiry(live_lots),
                "pin_free_limit": municipality.pin_free_limit,
            }
        )
    return sorted(result, key=lambda entry: entry["municipality_code"])


# How each kind of transfer changes the resident's wallet. A confirmed transfer-out moves points that
# already left the wallet when they were held.
_WALLET_SIGN = {ports.GRANT: 1, ports.REFUND: 1, ports.CONVERSION: 1, ports.RESERVE_ALLOCATION: 1,
                ports.TRANSFER_OUT_VOID: 1, ports.PAYMENT: -1, ports.EXPIRE: -1, ports.TRANSFER_OUT_HOLD: -1,
                ports.TRANSFER_OUT: 0}


def history(store: ports.LedgerStore, mykey_id: str, municipality_code: str | None = None, limit: int = 100) -> list[dict]:
    """A resident's movements, newest first, with the merchant's or facility's name where there is one."""
    transfers = store.transfers_of_mykey(mykey_id, municipality_code=municipality_code, limit=limit)
    merchants = store.get_merchants(t.merchant_id for t in transfers if t.merchant_id)
    return [
        {
            "transfer_id": transfer.transfer_id,
            "kind": transfer.kind,
            "amount": transfer.amount,
            "wallet_change": _WALLET_SIGN.get(transfer.kind, 0) * transfer.amount,
            "municipality_code": transfer.municipality_code,
            "merchant_name": merchants[transfer.merchant_id].name if transfer.merchant_id in merchants else None,
            "reason": transfer.reason,
            "posted_at": transfer.posted_at,
            "balance_after": transfer.balance_after,
        }
        for transfer in transfers
    ]


SUMMARY_KINDS = {
    ports.GRANT: "issued",
    ports.TRANSFER_OUT_HOLD: "held_for_transfer_out",
    ports.TRANSFER_OUT_VOID: "released_from_transfer_out",
    ports.CONVERSION: "converted_in",
    # Reserve points count for a municipality when they reach its wallet.
    ports.RESERVE_ALLOCATION: "converted_in",
    ports.PAYMENT: "spent",
    ports.REFUND: "refunded",
    ports.EXPIRE: "expired",
    ports.TRANSFER_OUT: "transferred_out",
}


def summary(store: ports.LedgerStore, municipality_code: str, start: str | None = None, end: str | None = None) -> dict:
    """Totals of a municipality's transfers; outstanding is what they leave in residents' wallets."""
    municipality = _municipality(store, municipality_code)
    totals, counts = _totals(store, municipality_code, start, end)
    net_change = _net(totals)
    # Outstanding is what residents hold now, whatever the period; it needs the whole history.
    outstanding = net_change if start is None and end is None else _net(_totals(store, municipality_code, None, None)[0])
    return {
        "municipality_code": municipality_code,
        "municipality_name": municipality.name,
        "period": {"from": start, "to": end},
        **totals,
        "pending_transfer_out": totals["held_for_transfer_out"] - totals["released_from_transfer_out"] - totals["transferred_out"],
        "net_change": net_change,
        "outstanding": outstanding,
        "transfer_counts": counts,
        "budget_total": municipality.budget_total,
        "budget_remaining": budget_remaining(store, municipality),
    }


def _totals(store: ports.LedgerStore, municipality_code: str, start: str | None, end: str | None):
    totals = {name: 0 for name in SUMMARY_KINDS.values()}
    counts = {name: 0 for name in SUMMARY_KINDS.values()}
    for posted in store.transfers_of_municipality(municipality_code, start, end):
        name = SUMMARY_KINDS.get(posted.kind)
        if name:
            totals[name] += posted.amount
            counts[name] += 1
    return totals, counts


def _net(totals: dict) -> int:
    # What wallets hold: a transfer-out leaves the wallet when it is held (then pending), and comes back
    # only if voided; its confirmation moves pending points to the operator without touching the wallet.
    return (
        totals["issued"] + totals["converted_in"] - totals["spent"] + totals["refunded"]
        - totals["expired"] - totals["held_for_transfer_out"] + totals["released_from_transfer_out"]
    )
