"""Balance safety, idempotency and the ledger invariant on DynamoDB Local (Amazon's engine)."""
from __future__ import annotations

import concurrent.futures
import datetime
import dataclasses
import random
import uuid

import pytest

from chalicelib import errors
from chalicelib.domain.time import japan_date
from chalicelib.services import ledger, ports

pytestmark = pytest.mark.integration


def _run_concurrently(calls, workers=50):
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(call) for call in calls]
        for future in futures:
            try:
                outcomes.append(future.result())
            except errors.DomainError as error:
                outcomes.append(error)
    return outcomes


def test_fifty_concurrent_payments__wallet_holds_ten__exactly_ten_post(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 10 * 700)
    commands = [world.payment_command(mykey, 700) for _ in range(50)]
    outcomes = _run_concurrently(
        [lambda c=c: ledger.pay(c, world.store, world.authority, world.clock) for c in commands]
    )
    posted = [o for o in outcomes if isinstance(o, ports.Transfer)]
    refused = [o for o in outcomes if isinstance(o, errors.DomainError)]
    assert len(posted) == 10
    assert len(refused) == 40 and all(isinstance(o, errors.InsufficientBalance) for o in refused)
    assert world.store.get_wallet(mykey, world.home_code).balance == 0
    stored = [world.store.get_transfer(c.transfer_id) for c in commands]
    assert sorted(t.transfer_id for t in stored if t) == sorted(t.transfer_id for t in posted)
    assert sum(t.amount for t in stored if t) == 7000
    assert sorted(t.balance_after for t in posted) == list(range(0, 7000, 700))


def test_same_transfer_id_twenty_times_concurrently__one_transfer(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 5000)
    command = world.payment_command(mykey, 300)
    outcomes = _run_concurrently([lambda: ledger.pay(command, world.store, world.authority, world.clock)] * 20, workers=20)
    assert all(isinstance(o, ports.Transfer) for o in outcomes), outcomes
    assert {o.transfer_id for o in outcomes} == {command.transfer_id}
    assert len({(o.posted_at, o.balance_after) for o in outcomes}) == 1
    assert world.store.get_wallet(mykey, world.home_code).balance == 4700
    assert [t.kind for t in world.store.transfers_of_mykey(mykey)].count("payment") == 1
    other = dataclasses.replace(command, amount=301, request_fingerprint="a different body")
    with pytest.raises(errors.TransferIdConflict):
        ledger.pay(other, world.store, world.authority, world.clock)


def test_store__stale_wallet_version__cancels_on_the_wallet_condition(dynamo_world, dynamodb_client, table_prefix):
    """The transaction itself refuses; the cancellation reasons name the wallet item, nothing else."""
    from pynamodb.exceptions import TransactWriteError

    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 100)
    wallet = world.store.get_wallet(mykey, world.home_code)
    transfer = world.pay(mykey, 10)
    replay_candidate = dataclasses.replace(transfer, transfer_id=str(uuid.uuid4()))
    with pytest.raises(ports.WalletChanged) as caught:
        world.store.post_transfer(
            replay_candidate, ports.WalletWrite(mykey, world.home_code, wallet.version, {"2027-03-31": 90}, 10), []
        )
    cause = caught.value.__cause__
    assert isinstance(cause, TransactWriteError)
    assert [r.code if r else None for r in cause.cancellation_reasons] == [None, "ConditionalCheckFailed"]
    assert caught.value.current.balance == 90  # the wallet as the transaction found it (ALL_OLD)
    assert world.store.get_transfer(replay_candidate.transfer_id) is None


def test_store__balance_below_debit__cancels_on_the_wallet_balance_condition(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 100)
    wallet = world.store.get_wallet(mykey, world.home_code)
    transfer = world.pay(mykey, 10)
    attempt = dataclasses.replace(transfer, transfer_id=str(uuid.uuid4()), amount=500)
    current = world.store.get_wallet(mykey, world.home_code)
    with pytest.raises(ports.WalletChanged) as caught:
        # The right version, but asking for more than the balance: only `balance >= :amount` can refuse.
        world.store.post_transfer(attempt, ports.WalletWrite(mykey, world.home_code, current.version, {}, 500), [])
    reasons = caught.value.__cause__.cancellation_reasons
    assert [r.code if r else None for r in reasons] == [None, "ConditionalCheckFailed"]
    assert caught.value.current.version == current.version and caught.value.current.balance == 90
    assert wallet.version < current.version


def test_store__existing_transfer_id__cancels_on_the_transfer_condition_and_returns_it(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 100)
    transfer = world.pay(mykey, 10)
    current = world.store.get_wallet(mykey, world.home_code)
    with pytest.raises(ports.TransferAlreadyPosted) as caught:
        world.store.post_transfer(transfer, ports.WalletWrite(mykey, world.home_code, current.version, {"2027-03-31": 80}, 10), [])
    assert caught.value.__cause__.cancellation_reasons[0].code == "ConditionalCheckFailed"
    assert caught.value.existing == transfer
    assert world.store.get_wallet(mykey, world.home_code).balance == 90


def test_grant__exhausted_budget_shard__cancels_on_the_counter_condition(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    transfer = world.grant(mykey, 10)
    counter_id = ledger.budget_counter_id(world.home_code, 0)
    current = world.store.get_wallet(mykey, world.home_code)
    too_much = world.store.get_counter(counter_id) + 1
    attempt = dataclasses.replace(transfer, transfer_id=str(uuid.uuid4()), amount=too_much)
    with pytest.raises(ports.CounterConditionFailed) as caught:
        world.store.post_transfer(
            attempt,
            ports.WalletWrite(mykey, world.home_code, current.version, {"2027-03-31": 10 + too_much}),
            [ports.CounterWrite(counter_id, -too_much, "at_least", too_much)],
        )
    assert [r.code if r else None for r in caught.value.__cause__.cancellation_reasons] == [None, None, "ConditionalCheckFailed"]
    assert world.store.get_wallet(mykey, world.home_code).balance == 10


def test_concurrent_partial_refunds__never_exceed_the_payment(dynamo_world):
    world = dynamo_world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    payment = world.pay(mykey, 500)
    terminal = world.terminal(world.shop)
    commands = [
        ledger.RefundCommand(payment.transfer_id, str(uuid.uuid4()), 100, terminal, f"fp{i}") for i in range(12)
    ]
    outcomes = _run_concurrently([lambda c=c: ledger.refund(c, world.store, world.clock) for c in commands], workers=12)
    posted = [o for o in outcomes if isinstance(o, ports.Transfer)]
    assert len(posted) == 5
    assert all(isinstance(o, errors.RefundExceedsPayment) for o in outcomes if not isinstance(o, ports.Transfer))
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000
    assert world.store.get_counter(ledger.refund_counter_id(payment.transfer_id)) == 500


def test_concurrent_grants__never_exceed_the_budget(dynamo_store, dynamo_staff_store):
    from tests.world import build_world

    world = build_world(dynamo_store, seed=random.getrandbits(32), budget_total=1000, budget_shards=4)
    residents = [world.add_card() for _ in range(4)]
    outcomes = _run_concurrently([lambda m=residents[i % 4]: world.grant(m, 90) for i in range(16)], workers=16)
    posted = [o for o in outcomes if isinstance(o, ports.Transfer)]
    assert len(posted) == 11  # 11 × 90 = 990 ≤ 1000 < 12 × 90
    assert all(isinstance(o, errors.BudgetExceeded) for o in outcomes if not isinstance(o, ports.Transfer)), [repr(o) for o in outcomes if not isinstance(o, ports.Transfer)]
    municipality = world.store.get_municipality(world.home_code)
    assert ledger.budget_remaining(world.store, municipality) == 10


def test_seeded_random_sequence__invariant_holds_for_every_municipality(dynamo_store):
    """1,000 random grants, payments, refunds and expiries; then the invariant of docs/CONTRACTS.md#invariant, per municipality."""
    from tests.world import build_world

    rng = random.Random(20261127)
    world = build_world(dynamo_store, seed=rng.getrandbits(32), budget_total=10_000_000)
    # The shop accepts both municipalities here, so payments move both ledgers.
    merchant = world.store.get_merchant(world.shop.merchant_id)
    world.store.put_merchant(dataclasses.replace(merchant, accepted_municipalities=frozenset({world.home_code, world.other_code})))
    residents = [world.add_card() for _ in range(12)]
    codes = [world.home_code, world.other_code]
    payments: list[ports.Transfer] = []
    counts = {"grant": 0, "payment": 0, "refund": 0, "expire": 0, "refused": 0}
    for step in range(1000):
        roll = rng.random()
        try:
            if roll < 0.35:
                expires_on = japan_date(world.now) + datetime.timedelta(days=rng.randint(0, 90))
                world.grant(rng.choice(residents), rng.randint(1, 3000), code=rng.choice(codes),
                            expires_on=expires_on.isoformat())
                counts["grant"] += 1
            elif roll < 0.80:
                payments.append(world.pay(rng.choice(residents), rng.randint(1, 2500), code=rng.choice(codes)))
                counts["payment"] += 1
            elif roll < 0.95 and payments:
                payment = rng.choice(payments)
                ledger.refund(ledger.RefundCommand(payment.transfer_id, str(uuid.UUID(int=rng.getrandbits(128))),
                                                   rng.randint(1, payment.amount), world.terminal(world.shop), f"r{step}"),
                              world.store, world.clock)
                counts["refund"] += 1
            else:
                world.now += rng.randint(1, 20) * 86400
                counts["expire"] += len(ledger.expire_due(world.store, world.clock))
        except (errors.InsufficientBalance, errors.RefundExceedsPayment):
            counts["refused"] += 1
    assert min(counts.values()) > 0, counts
    for code in codes:
        report = ledger.summary(world.store, code)
        wallets = list(world.store.wallets_of_municipality(code))
        assert all(w.balance >= 0 and all(p > 0 for p in w.lots.values()) for w in wallets)
        assert all(w.balance == sum(w.lots.values()) for w in wallets)
        assert report["outstanding"] == sum(w.balance for w in wallets), (code, report)
        assert report["issued"] - report["spent"] + report["refunded"] - report["expired"] == report["outstanding"]
