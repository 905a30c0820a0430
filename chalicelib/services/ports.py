"""What services need from storage: the records they read, the writes they ask for, and the outcomes.

The DynamoDB adapter (`chalicelib.storage.dynamo.DynamoLedgerStore`) and the in-memory fake used by
unit tests (`tests/fakes.py`) both implement `LedgerStore`. A write is described, not performed, by
the service: `post_transfer` receives the transfer record, the one wallet it changes and any counters,
and must apply all of them in one atomic, conditional step or none of them, reporting which guard failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

from chalicelib.domain.lots import Lots

GRANT = "grant"
PAYMENT = "payment"
REFUND = "refund"
EXPIRE = "expire"
CONVERSION = "conversion"
TRANSFER_OUT = "transfer_out"
RESERVE_ALLOCATION = "reserve_allocation"
TRANSFER_OUT_HOLD = "transfer_out_hold"
TRANSFER_OUT_VOID = "transfer_out_void"
# The reserve account (留保口座) is a wallet whose "municipality" is this marker.
RESERVE = "reserve"


@dataclass(frozen=True)
class Municipality:
    code: str
    name: str
    point_name: str
    expiry_rule: dict
    pin_free_limit: int
    max_amount: int
    budget_total: int
    budget_shards: int
    # A grant above this many points waits for a second staff member's approval (two-person rule).
    approval_threshold: int = 100_000


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    kind: str  # shop, large_store or public_facility
    municipality_code: str
    accepted_municipalities: frozenset[str]
    active: bool = True


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    merchant_id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 public key
    active: bool = True
    label: str | None = None


CARD_ACTIVE, CARD_SUSPENDED, CARD_REVOKED, CARD_SUPERSEDED = "active", "suspended", "revoked", "superseded"


@dataclass(frozen=True)
class Card:
    certificate_key: str
    mykey_id: str | None  # None for a revoked certificate that was never registered
    status: str  # active, suspended, revoked or superseded (renewed)
    registered_at: str = ""
    status_changed_at: str | None = None


@dataclass(frozen=True)
class Mykey:
    mykey_id: str
    status: str  # active or suspended
    home_municipality_code: str
    registered_at: str
    status_changed_at: str | None = None


@dataclass(frozen=True)
class Wallet:
    mykey_id: str
    municipality_code: str
    balance: int = 0
    lots: Lots = field(default_factory=dict)
    version: int = 0  # 0 means the wallet does not exist yet


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    kind: str
    debit_account: str
    credit_account: str
    amount: int
    municipality_code: str
    mykey_id: str
    posted_at: str
    request_fingerprint: str
    balance_after: int
    lots: Lots = field(default_factory=dict)
    merchant_id: str | None = None
    terminal_id: str | None = None
    related_transfer_id: str | None = None
    reason: str | None = None
    staff_id: str | None = None
    partner_id: str | None = None
    partner_txn_id: str | None = None
    partner_points: int | None = None
    campaign_code: str | None = None


@dataclass(frozen=True)
class PostedAmount:
    """The part of a transfer that reports add up: what kind, how much, where, when."""

    transfer_id: str
    kind: str
    amount: int
    merchant_id: str | None
    posted_at: str


@dataclass(frozen=True)
class WalletWrite:
    """Replace a wallet's lots, provided nobody wrote it since `expected_version` was read."""

    mykey_id: str
    municipality_code: str
    expected_version: int
    new_lots: Lots
    # Points this write takes out; the store also guards `balance >= debit_amount` (docs/CONTRACTS.md#transactions).
    debit_amount: int = 0


@dataclass(frozen=True)
class CounterWrite:
    """Add `delta` to a counter guarded by a condition on its value before the write.

    `at_least`: the value must be at least `bound` (budget shards never go below zero).
    `at_most`: the value must be at most `bound`, a missing counter counting as 0 (conversion caps).
    `equals`: the value must be exactly `bound`, a missing counter counting as 0 (refund totals).
    """

    counter_id: str
    delta: int
    condition: str
    bound: int


@dataclass(frozen=True)
class CardGuard:
    """The card must still be active and bound to this MyKey ID when the transfer is written.

    Checked inside the payment's transaction, so a card stopped a moment ago is refused even when the
    binding came from the container's cache instead of a read.
    """

    certificate_key: str
    mykey_id: str


class CardChanged(Exception):
    """The card guard failed: the card was suspended, revoked, renewed or rebound since it was read."""


class TransferAlreadyPosted(Exception):
    """The transfer-record Put found a record with the same id: the idempotency guard."""

    def __init__(self, existing: Transfer):
        super().__init__(existing.transfer_id)
        self.existing = existing


class WalletChanged(Exception):
    """The wallet guard failed: another write came first, or the balance no longer covers the debit."""

    def __init__(self, current: Wallet | None):
        super().__init__("wallet changed")
        self.current = current


class CounterConditionFailed(Exception):
    def __init__(self, counter_id: str, current_value: int | None):
        super().__init__(counter_id)
        self.counter_id = counter_id
        self.current_value = current_value


class HoldNotPending(Exception):
    """The hold was already posted or voided (or is past its deadline, for a confirmation)."""

    def __init__(self, current: dict | None):
        super().__init__("hold not pending")
        self.current = current


class WriteContention(Exception):
    """A transient refusal (transaction conflict, throttling): the same write may be tried again."""


class LedgerStore(Protocol):
    def get_municipality(self, code: str) -> Municipality | None: ...
    def get_merchant(self, merchant_id: str) -> Merchant | None: ...
    def get_merchants(self, merchant_ids: Iterable[str]) -> dict[str, Merchant]: ...
    def get_terminal(self, terminal_id: str) -> Terminal | None: ...
    def get_card(self, certificate_key: str) -> Card | None: ...
    def mykey_exists(self, mykey_id: str) -> bool: ...
    def get_wallet(self, mykey_id: str, municipality_code: str) -> Wallet: ...
    def list_wallets(self, mykey_id: str) -> list[Wallet]: ...
    def wallets_of_municipality(self, municipality_code: str) -> Iterator[Wallet]: ...
    def wallets_due_for_expiry(self, before_date: str) -> Iterator[tuple[str, str]]: ...
    def get_transfer(self, transfer_id: str) -> Transfer | None: ...
    def get_counter(self, counter_id: str) -> int: ...
    def get_counters(self, counter_ids: list[str]) -> dict[str, int]: ...
    def transfers_of_municipality(self, municipality_code: str, start: str | None, end: str | None) -> Iterator[PostedAmount]: ...
    def transfers_of_mykey(self, mykey_id: str, municipality_code: str | None, limit: int) -> list[Transfer]: ...
    def use_nonce(self, nonce_key: str, expires_at: int) -> bool: ...
    def post_transfer(self, transfer: Transfer, wallet: WalletWrite, counters: list[CounterWrite],
                      card_guard: CardGuard | None = None) -> None: ...
    # The wallet to start a write from: the container's last known state when it has one (the write's
    # version guard catches a stale one), else a read. The flag says which.
    def wallet_for_update(self, mykey_id: str, municipality_code: str) -> tuple[Wallet, bool]: ...
    # A card's binding for a payment: from the container's cache (flag True: only a card seen active is
    # cached, and the payment's card guard checks it is still active), else read.
    def card_for_payment(self, certificate_key: str) -> tuple[Card | None, bool]: ...
    def forget_card(self, certificate_key: str) -> None: ...
    def move_counter(self, source_id: str, target_id: str, amount: int) -> None: ...
