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
    store: ports.LedgerStore, mykey_id: str, municipality_code: str, build: Build
) -> ports.Transfer:
    """Post the transfer `build` describes for the wallet's current state; retry while the wallet moves.

    `build` may raise a domain error (for example insufficient balance) after looking at the wallet;
    `TransferAlreadyPosted` and `CounterConditionFailed` are left to the caller, which knows what a
    replay or an exhausted counter means for its operation.
    """
    wallet: ports.Wallet | None = None
    for attempt in range(MAX_ATTEMPTS):
        if wallet is None:
            wallet = store.get_wallet(mykey_id, municipality_code)
        transfer, wallet_write, counters = build(wallet)
        try:
            store.post_transfer(transfer, wallet_write, counters)
            return transfer
        except ports.WalletChanged as changed:
            wallet = changed.current
        except ports.WriteContention:
            wallet = None
            # Jitter spreads competing writers apart so that one of them wins the next round.
            time.sleep(random.uniform(0, _BACKOFF_SECONDS * (attempt + 1)))
    raise errors.ConcurrentUpdate()
