"""What a Lambda container remembers can never move money wrongly (DynamoDB Local, two "containers").

Two stores on the same tables stand for two Lambda containers: one remembers a wallet or a card
binding, the other changes it, and the first one's next payment must still be right.
"""
from __future__ import annotations

import pytest

from chalicelib import errors
from chalicelib.services import ports
from chalicelib.storage.cache import ContainerCache
from chalicelib.storage.dynamo import DynamoLedgerStore
from tests.conftest import REGION

pytestmark = pytest.mark.integration


@pytest.fixture
def containers(dynamo_world):
    """The world's own store (no cache) and a caching container on the same tables."""
    cached = DynamoLedgerStore(REGION, cache_seconds=60)
    return dynamo_world, cached


def _pay_in(store, world, mykey, amount, **options):
    from chalicelib.services import ledger

    return ledger.pay(world.payment_command(mykey, amount, **options), store, world.authority, world.clock)


def test_remembered_wallet__changed_by_another_container__payment_uses_the_real_balance(containers):
    world, cached = containers
    mykey = world.add_card()
    world.grant(mykey, 1000)
    _pay_in(cached, world, mykey, 100)  # the container now remembers the wallet at 900
    world.pay(mykey, 300)               # another container spends 300: 600 left
    paid = _pay_in(cached, world, mykey, 200)
    assert paid.balance_after == 400
    assert world.store.get_wallet(mykey, world.home_code).balance == 400


def test_remembered_wallet__too_small__is_read_again_before_refusing(containers):
    world, cached = containers
    mykey = world.add_card()
    world.grant(mykey, 100)
    _pay_in(cached, world, mykey, 100)  # remembered: 0 left
    world.grant(mykey, 5000)            # granted elsewhere
    paid = _pay_in(cached, world, mykey, 2000)
    assert paid.balance_after == 3000


def test_remembered_wallet__really_too_small__is_refused_and_nothing_written(containers):
    world, cached = containers
    mykey = world.add_card()
    world.grant(mykey, 100)
    _pay_in(cached, world, mykey, 50)
    world.pay(mykey, 40)  # 10 left; the container remembers 50
    with pytest.raises(errors.InsufficientBalance):
        _pay_in(cached, world, mykey, 30)
    assert world.store.get_wallet(mykey, world.home_code).balance == 10


@pytest.mark.parametrize("status,refusal", [
    (ports.CARD_SUSPENDED, errors.CardSuspended), (ports.CARD_REVOKED, errors.CardRevoked),
    (ports.CARD_SUPERSEDED, errors.CardSuperseded)])
def test_remembered_card__stopped_elsewhere__is_refused_by_the_transaction(containers, status, refusal):
    world, cached = containers
    mykey = world.add_card()
    world.grant(mykey, 1000)
    _pay_in(cached, world, mykey, 100)  # the container remembers the card as active
    world.store.set_card_status(world.card_keys[mykey], status)
    command = world.payment_command(mykey, 100)
    from chalicelib.services import ledger

    with pytest.raises(refusal):
        ledger.pay(command, cached, world.authority, world.clock)
    assert world.store.get_transfer(command.transfer_id) is None
    assert world.store.get_wallet(mykey, world.home_code).balance == 900


def test_container_settings__are_kept_for_their_time_only():
    now = [0.0]
    cache = ContainerCache(30, clock=lambda: now[0])
    reads = []

    def read():
        reads.append(1)
        return f"value-{len(reads)}"

    assert cache.setting("terminal", read) == "value-1"
    now[0] = 29.9
    assert cache.setting("terminal", read) == "value-1"
    now[0] = 30.1
    assert cache.setting("terminal", read) == "value-2"
    assert ContainerCache(0).setting("x", read) == "value-3" and ContainerCache(0).setting("x", read) == "value-4"


def test_container_cache__forgets_the_oldest_beyond_its_size():
    cache = ContainerCache(30, max_entries=2)
    for number in range(3):
        cache.remember_wallet(ports.Wallet(f"M{number}", "252034", version=1))
    assert cache.wallet("M0", "252034") is None and cache.wallet("M2", "252034") is not None


def test_expiry__in_a_container_remembering_a_stale_wallet__still_expires_what_is_due(containers):
    """Found by the simulation (reliability/): expiry decided on a remembered state would skip due lots."""
    import datetime as dt

    from chalicelib.services import ledger

    world, cached = containers
    mykey = world.add_card()
    world.grant(mykey, 500, expires_on="2099-12-31")
    _pay_in(cached, world, mykey, 100)                   # the container remembers 400, nothing due soon
    world.grant(mykey, 300, expires_on="2026-11-18")     # granted elsewhere, last usable day today
    later = ledger.expire_wallet(cached, mykey, world.home_code, dt.date(2026, 11, 19), world.now + 86_400)
    assert later is not None and later.amount == 300
    assert world.store.get_wallet(mykey, world.home_code).lots == {"2099-12-31": 400}
