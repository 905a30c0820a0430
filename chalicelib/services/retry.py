"""The optimistic-concurrency loop shared by every wallet-changing operation.

A service reads the wallet, computes the new lots and asks the store to write them only if nobody wrote
the wallet in between. When that guard fails, the store hands back the wallet as it found it, so the
next attempt starts from there without another read. Contention is bounded: after `MAX_ATTEMPTS` the
caller gets `ConcurrentUpdate`, which is safe to retry with the same idempotency key.
"""
from __future__ import annotations

import random
import time
from typing import Callable

from chalicelib import errors
from chalicelib.services import ports

MAX_ATTEMPTS = 40
_BACKOFF_SECONDS = 0.002

Build = Callable[[ports.Wallet], tuple[ports.Transfer, ports.WalletWrite, list[ports.CounterWrite]]]


def post_with_retries(
    store: ports.LedgerStore, mykey_id: str, municipality_code: str, build: Build,
    card_guard: ports.CardGuard | None = None, fresh: bool = False,
) -> ports.Transfer:
    """Post the transfer `build` describes for the wallet's current state; retry while the wallet moves.

    The first attempt may start from the container's remembered wallet state (the version guard makes a
    stale one harmless). `build` may raise a domain error (for example insufficient balance) after
    looking at the wallet; when it does on a remembered state, the wallet is read again and `build`
    decides once more, so a refusal always rests on the wallet as it is. `TransferAlreadyPosted`,
    `CounterConditionFailed` and `CardChanged` are left to the caller, which knows what they mean.
    """
    # `fresh`: for writes whose decision to write at all rests on the wallet (expiry finds nothing due on
    # a stale state and would simply not write, which no version guard can catch).
    wallet, remembered = (None, False) if fresh else store.wallet_for_update(mykey_id, municipality_code)
    for attempt in range(MAX_ATTEMPTS):
        if wallet is None:
            wallet, remembered = store.get_wallet(mykey_id, municipality_code), False
        try:
            transfer, wallet_write, counters = build(wallet)
        except errors.DomainError:
            if not remembered:
                raise
            wallet = None
            continue
        try:
            if card_guard is not None:
                store.post_transfer(transfer, wallet_write, counters, card_guard=card_guard)
            else:
                store.post_transfer(transfer, wallet_write, counters)
            return transfer
        except ports.WalletChanged as changed:
            wallet, remembered = changed.current, False
        except ports.WriteContention:
            wallet = None
            # Jitter spreads competing writers apart so that one of them wins the next round.
            time.sleep(random.uniform(0, _BACKOFF_SECONDS * (attempt + 1)))
    raise errors.ConcurrentUpdate()
