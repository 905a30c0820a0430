"""Ledger services on the in-memory store: the rules, independent of DynamoDB."""
import dataclasses

import pytest

from chalicelib import errors
from chalicelib.services import ledger, ports
from tests.fakes import FakeLedgerStore
from tests.world import build_world


@pytest.fixture
def world():
    return build_world(FakeLedgerStore(), seed=7)


def test_grant__credits_wallet_with_programme_expiry_and_spends_budget(world):
    mykey = world.add_card()
    transfer = world.grant(mykey, 1200)
    assert transfer.lots == {"2027-03-31": 1200}
    assert world.store.get_wallet(mykey, world.home_code).balance == 1200
    municipality = world.store.get_municipality(world.home_code)
    assert ledger.budget_remaining(world.store, municipality) == municipality.budget_total - 1200


def test_grant__unknown_mykey_id__is_refused(world):
    with pytest.raises(errors.MykeyIdUnknown):
        world.grant("ABCD2345", 100)
    assert world.store.transfers == {}


def test_grant__beyond_budget__is_refused_and_budget_untouched():
    world = build_world(FakeLedgerStore(), seed=3, budget_total=1000, budget_shards=4)
    mykey = world.add_card()
    world.grant(mykey, 600)  # needs remainders gathered from several shards of 250
    with pytest.raises(errors.BudgetExceeded):
        world.grant(mykey, 401)
    municipality = world.store.get_municipality(world.home_code)
    assert ledger.budget_remaining(world.store, municipality) == 400
    world.grant(mykey, 400)
    assert ledger.budget_remaining(world.store, municipality) == 0


def test_payment__spends_soonest_expiring_points_first(world):
    mykey = world.add_card()
    world.grant(mykey, 300, expires_on="2027-09-30")
    world.grant(mykey, 200, expires_on="2027-01-31")
    payment = world.pay(mykey, 250)
    assert payment.lots == {"2027-01-31": 200, "2027-09-30": 50}
    assert payment.balance_after == 250
    assert world.store.get_wallet(mykey, world.home_code).lots == {"2027-09-30": 250}


def test_payment__insufficient_balance__is_refused(world):
    mykey = world.add_card()
    world.grant(mykey, 100)
    with pytest.raises(errors.InsufficientBalance):
        world.pay(mykey, 101)
    assert [t.kind for t in world.store.transfers.values()] == ["grant"]


def test_payment__same_transfer_id_same_body__returns_first_outcome(world):
    mykey = world.add_card()
    world.grant(mykey, 1000)
    command = world.payment_command(mykey, 400)
    first = ledger.pay(command, world.store, world.authority, world.clock)
    world.now += 10 * 24 * 3600  # days later, with less balance than the payment
    world.pay(mykey, 600)
    again = ledger.pay(command, world.store, world.authority, world.clock)
    assert again == first
    assert world.store.get_wallet(mykey, world.home_code).balance == 0


def test_payment__same_transfer_id_other_body__is_conflict(world):
    mykey = world.add_card()
    world.grant(mykey, 1000)
    command = world.payment_command(mykey, 400)
    ledger.pay(command, world.store, world.authority, world.clock)
    other = dataclasses.replace(command, amount=300, request_fingerprint="another body")
    with pytest.raises(errors.TransferIdConflict):
        ledger.pay(other, world.store, world.authority, world.clock)


def test_payment__above_pin_free_limit_without_signature__is_refused(world):
    mykey = world.add_card()
    world.grant(mykey, 10000)
    with pytest.raises(errors.CardSignatureRequired):
        world.pay(mykey, 3001)
    assert world.pay(mykey, 3001, sign=True).amount == 3001


def test_payment__signature_over_other_amount__is_invalid(world):
    mykey = world.add_card()
    world.grant(mykey, 10000)
    command = world.payment_command(mykey, 5000, sign=True)
    with pytest.raises(errors.CardSignatureInvalid):
        ledger.pay(dataclasses.replace(command, amount=5001), world.store, world.authority, world.clock)


def test_payment__signature_older_than_600_seconds__is_expired_unless_a_replay(world):
    mykey = world.add_card()
    world.grant(mykey, 10000)
    with pytest.raises(errors.CardSignatureExpired):
        world.pay(mykey, 5000, sign=True, signed_at=int(world.now) - 601)
    command = world.payment_command(mykey, 5000, sign=True)
    first = ledger.pay(command, world.store, world.authority, world.clock)
    world.now += 3600
    assert ledger.pay(command, world.store, world.authority, world.clock) == first


@pytest.mark.parametrize(
    "status,refusal",
    [("revoked", errors.CardRevoked), ("suspended", errors.CardSuspended), ("superseded", errors.CardSuperseded)],
)
def test_payment__revoked_suspended_or_renewed_card__is_refused_with_its_code(world, status, refusal):
    mykey = world.add_card(status=status)
    with pytest.raises(refusal):
        world.pay(mykey, 1)


def test_payment__card_from_unknown_issuer__is_refused(world):
    from tools.devpki import DevCertificateAuthority

    mykey = world.add_card()
    world.cards[mykey] = DevCertificateAuthority.create("Some Other CA").issue_card()
    with pytest.raises(errors.CardCertificateInvalid):
        world.pay(mykey, 1)


def test_payment__merchant_not_accepting_municipality__is_refused(world):
    mykey = world.add_card()
    world.grant(mykey, 100, code=world.other_code)
    with pytest.raises(errors.MerchantNotAcceptingMunicipality):
        world.pay(mykey, 10, code=world.other_code)


def test_refund__partial_then_rest__never_above_payment(world):
    mykey = world.add_card()
    world.grant(mykey, 1000)
    payment = world.pay(mykey, 600)
    terminal = world.terminal(world.shop)

    def refund(amount, refund_id):
        return ledger.refund(
            ledger.RefundCommand(payment.transfer_id, refund_id, amount, terminal, f"fp-{refund_id}-{amount}"),
            world.store, world.clock,
        )

    refund(200, "00000000-0000-4000-8000-000000000001")
    refund(400, "00000000-0000-4000-8000-000000000002")
    with pytest.raises(errors.RefundExceedsPayment):
        refund(1, "00000000-0000-4000-8000-000000000003")
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def test_refund__by_another_merchants_terminal__is_refused(world):
    mykey = world.add_card()
    world.grant(mykey, 1000)
    payment = world.pay(mykey, 600)
    command = ledger.RefundCommand(payment.transfer_id, "00000000-0000-4000-8000-000000000009", 10,
                                   world.terminal(world.facility), "fp")
    with pytest.raises(errors.RefundNotAllowed):
        ledger.refund(command, world.store, world.clock)


def test_expiry__posts_expire_transfer_for_passed_lots_and_is_idempotent(world):
    mykey = world.add_card()
    world.grant(mykey, 100, expires_on="2026-11-30")
    world.grant(mykey, 50, expires_on="2027-03-31")
    world.now += 13 * 24 * 3600  # into December 2026 in Japan
    posted = ledger.expire_due(world.store, world.clock)
    assert [(t.kind, t.amount, t.lots) for t in posted] == [("expire", 100, {"2026-11-30": 100})]
    assert ledger.expire_due(world.store, world.clock) == []
    assert world.store.get_wallet(mykey, world.home_code).balance == 50


def test_balance_inquiry__shows_only_municipalities_the_merchant_accepts(world):
    mykey = world.add_card()
    world.grant(mykey, 100)
    world.grant(mykey, 70, code=world.other_code)
    merchant = world.store.get_merchant(world.shop.merchant_id)
    balances = ledger.balances_at_merchant(world.store, merchant, mykey, world.clock)
    assert [(b["municipality_code"], b["balance"]) for b in balances] == [(world.home_code, 100)]


def test_summary__outstanding_equals_sum_of_wallets(world):
    residents = [world.add_card() for _ in range(3)]
    for mykey in residents:
        world.grant(mykey, 1000)
    payment = world.pay(residents[0], 300)
    ledger.refund(ledger.RefundCommand(payment.transfer_id, "00000000-0000-4000-8000-00000000000a", 100,
                                       world.terminal(world.shop), "fp"), world.store, world.clock)
    report = ledger.summary(world.store, world.home_code)
    assert (report["issued"], report["spent"], report["refunded"]) == (3000, 300, 100)
    assert report["outstanding"] == sum(w.balance for w in world.store.wallets_of_municipality(world.home_code)) == 2800


def test_history__newest_first_with_merchant_names(world):
    mykey = world.add_card()
    world.grant(mykey, 1000)
    world.now += 1
    world.pay(mykey, 300)
    entries = ledger.history(world.store, mykey)
    assert [(e["kind"], e["wallet_change"], e["merchant_name"]) for e in entries] == [
        ("payment", -300, "黒壁スクエア商店"), ("grant", 1000, None)
    ]


def test_payment__lot_past_its_last_day__is_not_spendable_before_the_expiry_job(world):
    mykey = world.add_card()
    world.grant(mykey, 100, expires_on="2026-11-30")
    world.grant(mykey, 50, expires_on="2027-03-31")
    world.now += 13 * 24 * 3600  # 1 December 2026 in Japan; the expiry job has not run yet
    with pytest.raises(errors.InsufficientBalance):
        world.pay(mykey, 51)
    payment = world.pay(mykey, 50)
    assert payment.lots == {"2027-03-31": 50} and payment.balance_after == 0
    merchant = world.store.get_merchant(world.shop.merchant_id)
    assert ledger.balances_at_merchant(world.store, merchant, mykey, world.clock)[0]["balance"] == 0
    assert [t.amount for t in ledger.expire_due(world.store, world.clock)] == [100]


def test_history__one_municipality__is_complete_even_when_others_are_busier(world):
    mykey = world.add_card()
    world.grant(mykey, 10, code=world.other_code)
    for _ in range(5):
        world.now += 1
        world.grant(mykey, 1)
    entries = ledger.history(world.store, mykey, municipality_code=world.other_code, limit=3)
    assert [(e["municipality_code"], e["amount"]) for e in entries] == [(world.other_code, 10)]


def test_summary__with_a_period__reports_net_change_and_current_outstanding(world):
    from chalicelib.domain.time import posted_at

    mykey = world.add_card()
    world.grant(mykey, 1000)
    world.now += 86400
    start = posted_at(world.now)
    world.pay(mykey, 300)
    report = ledger.summary(world.store, world.home_code, start=start)
    assert (report["issued"], report["spent"], report["net_change"], report["outstanding"]) == (0, 300, -300, 700)


class _GuardRecordingStore(FakeLedgerStore):
    """Says whether the card binding came from the container's memory, and records the card guards sent."""

    def __init__(self):
        super().__init__()
        self.remembered = False
        self.guards = []

    def card_for_payment(self, certificate_key):
        return self.get_card(certificate_key), self.remembered

    def post_transfer(self, transfer, wallet, counters, second_wallet=None, card_guard=None):
        self.guards.append(card_guard)
        return super().post_transfer(transfer, wallet, counters, second_wallet, card_guard)


@pytest.mark.parametrize("remembered", [False, True])
def test_payment__card_rechecked_in_the_transaction_only_when_its_binding_was_remembered(remembered):
    world = build_world(_GuardRecordingStore(), seed=11)
    mykey = world.add_card()
    world.grant(mykey, 1000)
    world.store.guards.clear()
    world.store.remembered = remembered

    world.pay(mykey, 100)

    [guard] = world.store.guards
    if remembered:
        assert guard is not None and guard.mykey_id == mykey
    else:
        assert guard is None  # read a moment ago in this invocation: the transaction writes two items only
