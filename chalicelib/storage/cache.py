"""What a Lambda container remembers between requests, so that a payment is one round trip to DynamoDB.

A payment needs the programme, the merchant and the terminal (settings that change a few times a year),
the card's binding to a MyKey ID, and the wallet's lots. Reading them all again for every tap would cost
four or five reads and as many round trips. The container keeps:

* **settings** (programme, merchant, terminal) for `ttl_seconds`. A change reaches every container within
  that time: a disabled terminal or merchant is refused everywhere at most `ttl_seconds` later.
* **card bindings** of cards it saw active. Never trusted on their own: the payment's transaction checks
  that the card is still active and bound to that MyKey ID (`ports.CardGuard`), so a card stopped a
  second ago is refused; the binding is then forgotten.
* **wallet states** it read or wrote last. Never trusted on their own either: every wallet write is
  guarded by the wallet's version, so a stale state makes the transaction fail, DynamoDB hands back the
  current item, and the write is computed again from it. A refusal computed from a remembered state
  (not enough points) is checked again against a fresh read before it is given.

Everything is bounded (`max_entries` per kind, oldest forgotten first) and nothing is shared between
containers. `ttl_seconds = 0` turns the whole cache off.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

from chalicelib.services import ports

T = TypeVar("T")


class _Bounded:
    def __init__(self, max_entries: int):
        self._entries: OrderedDict = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._entries.pop(key, None)


class ContainerCache:
    def __init__(self, ttl_seconds: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.enabled = ttl_seconds > 0
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._settings = _Bounded(max_entries)
        self._cards = _Bounded(max_entries)
        self._wallets = _Bounded(max_entries)

    def setting(self, key: Hashable, read: Callable[[], T]) -> T:
        if not self.enabled:
            return read()
        known = self._settings.get(key)
        now = self._clock()
        if known is not None and known[0] > now:
            return known[1]
        value = read()
        if value is not None:  # an unknown id is asked again next time: it may be registered meanwhile
            self._settings.put(key, (now + self._ttl_seconds, value))
        return value

    def card(self, certificate_key: str) -> ports.Card | None:
        return self._cards.get(certificate_key) if self.enabled else None

    def remember_card(self, card: ports.Card) -> None:
        if self.enabled:
            self._cards.put(card.certificate_key, card)

    def forget_card(self, certificate_key: str) -> None:
        self._cards.pop(certificate_key)

    def wallet(self, mykey_id: str, municipality_code: str) -> ports.Wallet | None:
        return self._wallets.get((mykey_id, municipality_code)) if self.enabled else None

    def remember_wallet(self, wallet: ports.Wallet) -> None:
        if self.enabled:
            self._wallets.put((wallet.mykey_id, wallet.municipality_code), wallet)

    def remember_written_wallet(self, write: ports.WalletWrite) -> None:
        """The state a successful write left: exactly what the next write of this wallet will start from."""
        if self.enabled:
            lots = {day: points for day, points in write.new_lots.items() if points > 0}
            self.remember_wallet(ports.Wallet(write.mykey_id, write.municipality_code, sum(lots.values()), lots,
                                              write.expected_version + 1))
