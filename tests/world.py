"""A small, fully registered world for tests: municipalities, merchants, terminals, cards, staff.

Works on any store with the `LedgerStore` contract (the in-memory fake or DynamoDB Local). Identifiers
are random per world, so many worlds can share one set of tables without seeing each other.
"""
from __future__ import annotations

import datetime as dt
import functools
import random
import uuid
from dataclasses import dataclass, field

from chalicelib.auth.cards import CardAuthority
from chalicelib.domain import identifiers
from chalicelib.services import ledger, onboarding, ports
from chalicelib.services.staff import StaffAccount, hash_password
from terminal_client.signing import new_terminal_key
from tools.devpki import DevCard, DevCertificateAuthority

HASH_SECRET = b"test-card-hash-secret"
NOW = 1_795_000_000.0  # 2026-11-18, a fixed clock for tests that do not run against real time


@functools.lru_cache(maxsize=1)
def shared_ca() -> DevCertificateAuthority:
    # One CA per test run: RSA key generation is the slow part of making cards.
    return DevCertificateAuthority.create()


# Valid from 2024 for ten years, so both the fixed test clock and the real clock fall inside.
CARD_NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def issue_test_card() -> DevCard:
    return shared_ca().issue_card(valid_days=3650, not_before=CARD_NOT_BEFORE)


# Codes handed out in this process: worlds share the session's tables, and two worlds with the same
# municipality code would see each other's transfers in their reports.
_USED_MUNICIPALITY_CODES: set[str] = set()


def random_municipality_code(rng: random.Random) -> str:
    while True:
        first_five = f"{rng.randint(10000, 99999)}"
        code = first_five + str(identifiers.municipality_check_digit(first_five))
        if code not in _USED_MUNICIPALITY_CODES:
            _USED_MUNICIPALITY_CODES.add(code)
            return code


def random_mykey_id(rng: random.Random) -> str:
    return "".join(rng.choice(identifiers.MYKEY_ALPHABET) for _ in range(8))


@dataclass
class TerminalKeys:
    terminal_id: str
    merchant_id: str
    private_key_base64: str
    public_key_base64: str

    @property
    def private_key(self):
        from terminal_client.signing import load_ed25519_private_key

        return load_ed25519_private_key(self.private_key_base64)


@dataclass
class World:
    store: object
    rng: random.Random
    authority: CardAuthority
    home_code: str = ""
    other_code: str = ""
    shop: TerminalKeys | None = None
    other_shop: TerminalKeys | None = None
    facility: TerminalKeys | None = None
    cards: dict[str, DevCard] = field(default_factory=dict)  # mykey_id -> card
    card_keys: dict[str, str] = field(default_factory=dict)  # mykey_id -> certificate key
    now: float = NOW

    def clock(self) -> float:
        return self.now

    def terminal(self, keys: TerminalKeys) -> ports.Terminal:
        return self.store.get_terminal(keys.terminal_id)

    def add_card(self, status: str = "active", home: str | None = None) -> str:
        mykey_id = random_mykey_id(self.rng)
        card = issue_test_card()
        verified = self.authority.verify_certificate(card.certificate_der, self.now)
        onboarding.register_card(self.store, verified.certificate_key, mykey_id, home or self.home_code, "2026-11-01T00:00:00Z")
        if status != "active":
            self.store.set_card_status(verified.certificate_key, status)
        self.cards[mykey_id] = card
        self.card_keys[mykey_id] = verified.certificate_key
        return mykey_id

    def grant(self, mykey_id: str, amount: int, code: str | None = None, expires_on: str | None = None) -> ports.Transfer:
        command = ledger.GrantCommand(
            grant_id=str(uuid.UUID(int=self.rng.getrandbits(128))),
            municipality_code=code or self.home_code,
            mykey_id=mykey_id,
            amount=amount,
            reason="テスト付与",
            expires_on=expires_on,
            staff_id="test-staff",
            request_fingerprint=f"fp-{self.rng.getrandbits(64)}",
        )
        return ledger.grant(command, self.store, self.clock)

    def payment_command(self, mykey_id: str, amount: int, keys: TerminalKeys | None = None, code: str | None = None,
                        transfer_id: str | None = None, sign: bool = False, signed_at: int | None = None,
                        fingerprint: str | None = None) -> ledger.PaymentCommand:
        from terminal_client.signing import payment_message

        keys = keys or self.shop
        code = code or self.home_code
        transfer_id = transfer_id or str(uuid.UUID(int=self.rng.getrandbits(128)))
        card = self.cards[mykey_id]
        signature = None
        if sign:
            signed_at = int(self.now) if signed_at is None else signed_at
            signature = card.sign(payment_message(transfer_id, keys.terminal_id, code, amount, signed_at))
        return ledger.PaymentCommand(
            transfer_id=transfer_id,
            municipality_code=code,
            amount=amount,
            terminal=self.terminal(keys),
            card=ledger.PresentedCard(card.certificate_der, signature, signed_at if sign else None),
            request_fingerprint=fingerprint or f"{transfer_id}/{amount}/{code}/{keys.terminal_id}",
        )

    def pay(self, mykey_id: str, amount: int, **options) -> ports.Transfer:
        return ledger.pay(self.payment_command(mykey_id, amount, **options), self.store, self.authority, self.clock)


def build_world(store, seed: int = 1, budget_total: int = 100_000_000, pin_free_limit: int = 3000,
                budget_shards: int = 4, staff_store=None) -> World:
    rng = random.Random(seed)
    authority = CardAuthority(shared_ca().certificate_pem, HASH_SECRET)
    world = World(store=store, rng=rng, authority=authority)
    world.home_code = random_municipality_code(rng)
    world.other_code = random_municipality_code(rng)
    while world.other_code == world.home_code:
        world.other_code = random_municipality_code(rng)
    for code, name in ((world.home_code, "長浜市"), (world.other_code, "豊島区")):
        onboarding.register_municipality(
            store,
            ports.Municipality(
                code=code, name=name, point_name=f"{name}ポイント", expiry_rule={"kind": "fiscal_year_end"},
                pin_free_limit=pin_free_limit, max_amount=100_000, budget_total=budget_total,
                budget_shards=budget_shards,
            ),
        )
    suffix = f"{rng.getrandbits(40):010x}"

    def merchant(name: str, kind: str, code: str, accepted: set[str]) -> TerminalKeys:
        merchant_id = f"m-{kind}-{code}-{suffix}"
        onboarding.register_merchant(store, ports.Merchant(merchant_id, name, kind, code, frozenset(accepted)))
        private, public = new_terminal_key()
        terminal_id = f"t-{kind}-{code}-{suffix}"
        onboarding.register_terminal(store, ports.Terminal(terminal_id, merchant_id, public))
        return TerminalKeys(terminal_id, merchant_id, private, public)

    world.shop = merchant("黒壁スクエア商店", "shop", world.home_code, {world.home_code})
    world.facility = merchant("長浜城歴史博物館", "public_facility", world.home_code, {world.home_code})
    world.other_shop = merchant("池袋商店街", "shop", world.other_code, {world.other_code})
    if staff_store is not None:
        for role in ("viewer", "operator", "approver"):
            for code in (world.home_code, world.other_code):
                staff_store.put_staff(StaffAccount(f"{role}-{code}-{suffix}", code, role, _PASSWORD_HASH))
        for role in ("call_centre", "platform_operator"):
            staff_store.put_staff(StaffAccount(f"{role}-platform-{suffix}", "platform", role, _PASSWORD_HASH))
    world.staff_suffix = suffix
    return world


STAFF_PASSWORD = "correct horse battery staple"
_PASSWORD_HASH = hash_password(STAFF_PASSWORD)
