import datetime as dt

import pytest

from chalicelib import errors
from chalicelib.domain import lots


def test_consume__takes_soonest_expiring_lots_first():
    remaining, taken = lots.consume({"2027-09-30": 1000, "2027-03-31": 300, "2028-03-31": 50}, 500)
    assert taken == {"2027-03-31": 300, "2027-09-30": 200}
    assert remaining == {"2027-09-30": 800, "2028-03-31": 50}


def test_consume__more_than_total__is_insufficient_balance():
    with pytest.raises(errors.InsufficientBalance):
        lots.consume({"2027-03-31": 10}, 11)


def test_restore__partial_refunds__return_latest_expiry_first_and_never_more_than_taken():
    taken = {"2027-03-31": 300, "2027-09-30": 200}
    wallet, returned = lots.restore({}, taken, already_refunded=0, amount=250)
    assert returned == {"2027-09-30": 200, "2027-03-31": 50}
    wallet, returned = lots.restore(wallet, taken, already_refunded=250, amount=250)
    assert returned == {"2027-03-31": 250}
    assert wallet == {"2027-09-30": 200, "2027-03-31": 300}
    with pytest.raises(errors.RefundExceedsPayment):
        lots.restore(wallet, taken, already_refunded=500, amount=1)


def test_expired__lots_before_today_only():
    assert lots.expired({"2027-03-31": 5, "2027-04-01": 7}, dt.date(2027, 4, 1)) == {"2027-03-31": 5}


def test_expiring_within__counts_lots_in_the_next_thirty_days():
    wallet = {"2027-03-31": 5, "2027-04-15": 7, "2027-06-01": 100}
    assert lots.expiring_within(wallet, dt.date(2027, 3, 20), 30) == 12


@pytest.mark.parametrize(
    "granted_on,expected",
    [(dt.date(2026, 11, 27), "2027-03-31"), (dt.date(2027, 3, 31), "2027-03-31"), (dt.date(2027, 4, 1), "2028-03-31")],
)
def test_expiry_date__fiscal_year_end__is_the_next_31_march(granted_on, expected):
    assert lots.expiry_date({"kind": "fiscal_year_end"}, granted_on) == expected


def test_expiry_date__months_after_grant__is_end_of_that_month():
    assert lots.expiry_date({"kind": "months_after_grant", "months": 6}, dt.date(2026, 11, 27)) == "2027-05-31"
    assert lots.expiry_date({"kind": "months_after_grant", "months": 3}, dt.date(2026, 11, 30)) == "2027-02-28"
