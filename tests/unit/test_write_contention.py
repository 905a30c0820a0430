"""A throttled or conflicting transaction (`ports.WriteContention`) is retried, never a 500.

Both paths were found by the reliability simulation (reliability/simulation.py) injecting throttling:
moving budget remainders between shards for a large grant, and posting a confirmed transfer-out.
"""
from __future__ import annotations

import time

import pytest

from chalicelib import errors
from chalicelib.services import ledger, ports, transfer_outs
from tests.fakes import FakeLedgerStore
from tests.world import build_world


class _ContendedOnce(FakeLedgerStore):
    """Refuses the first budget move as DynamoDB does when throttled."""

    def __init__(self):
        super().__init__()
        self.moves_refused = 0

    def move_counter(self, source_id, target_id, amount):
        if self.moves_refused == 0:
            self.moves_refused += 1
            raise ports.WriteContention("ThrottlingException")
        return super().move_counter(source_id, target_id, amount)


def test_grant__budget_move_throttled__is_retried_and_posts_once():
    world = build_world(_ContendedOnce(), seed=5, budget_total=1000, budget_shards=4)
    mykey = world.add_card()

    transfer = world.grant(mykey, 600)  # no shard of 250 covers it: remainders are moved, the first move throttled

    assert world.store.moves_refused == 1
    assert transfer.amount == 600
    assert world.store.get_wallet(mykey, world.home_code).balance == 600
    municipality = world.store.get_municipality(world.home_code)
    assert ledger.budget_remaining(world.store, municipality) == 400


class _HoldStore:
    """Just enough of the ledger store for confirming one pending hold."""

    def __init__(self, contended_attempts: int):
        self.contended_attempts = contended_attempts
        self.attempts = 0
        self.posted = []
        self.hold = {
            "hold_id": "7d5c3f0e-0c1e-4d55-9a57-3f3c1a2b4c5d", "state": transfer_outs.PENDING,
            "municipality_code": "252034", "mykey_id": "ABCD2345", "amount": 500, "lots": {"2027-03-31": 500},
            "programme_id": "p-1", "operator_id": "operator-1", "destination_account": "acct",
            "deadline": int(time.time()) + 600, "created_at": "2026-11-28T00:00:00Z",
        }

    def get_hold(self, hold_id):
        return dict(self.hold) if hold_id == self.hold["hold_id"] else None

    def get_wallet(self, mykey_id, municipality_code):
        return ports.Wallet(mykey_id, municipality_code, 1000, {"2027-03-31": 1000}, 3)

    def finish_hold(self, transfer, hold_id, new_state, reason, wallet, deadline_after=None):
        self.attempts += 1
        if self.attempts <= self.contended_attempts:
            raise ports.WriteContention("TransactionConflict")
        self.posted.append(transfer)
        self.hold["state"] = new_state


def test_transfer_out_confirm__throttled_transaction__is_retried_and_posts_once():
    store = _HoldStore(contended_attempts=2)

    hold = transfer_outs.confirm(store, {"operator_id": "operator-1"}, store.hold["hold_id"], "acct", 500, time.time)

    assert hold["state"] == transfer_outs.POSTED
    assert store.attempts == 3
    assert [transfer.kind for transfer in store.posted] == [ports.TRANSFER_OUT]


def test_transfer_out_confirm__contended_every_time__is_a_concurrent_update_refusal():
    store = _HoldStore(contended_attempts=10**6)

    with pytest.raises(errors.ConcurrentUpdate):
        transfer_outs.confirm(store, {"operator_id": "operator-1"}, store.hold["hold_id"], "acct", 500, time.time)
    assert store.posted == []
