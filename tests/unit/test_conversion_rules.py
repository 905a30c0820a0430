"""Conversion rules without storage: rates and rounding, campaigns and their windows, message shape."""
import datetime as dt

import pytest

from chalicelib.services.conversions import ConversionMessage, Rejected, apply_agreement, convert, parse_message

JST = dt.timezone(dt.timedelta(hours=9))
AGREEMENT = {
    "municipalities": ["203211", "252034"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
    "daily_cap_per_resident": 10_000, "monthly_cap_per_resident": 50_000,
    "campaigns": [{"campaign_code": "aomori-flight", "rate_numerator": 3, "rate_denominator": 2,
                   "starts_at": "2026-11-01T00:00:00+09:00", "ends_at": "2026-12-01T00:00:00+09:00",
                   "target_municipality_code": "252034"}],
}


def _message(**changes):
    values = dict(partner_id="jal", partner_txn_id="t1", mykey_id="ABCD2345", municipality_code="203211",
                  partner_points=1001, campaign_code=None, occurred_at=dt.datetime(2026, 11, 27, 10, tzinfo=JST))
    values.update(changes)
    return ConversionMessage(**values)


@pytest.mark.parametrize("rounding,expected", [("floor", 333), ("ceil", 334), ("half_up", 333)])
def test_convert__integer_ratio_with_the_stated_rounding(rounding, expected):
    assert convert(1000, 1, 3, rounding) == expected


def test_convert__half_up_rounds_halves_up():
    assert convert(1001, 1, 2, "half_up") == 501 and convert(1001, 1, 2, "floor") == 500


def test_agreement__base_rate_and_participating_municipality():
    terms = apply_agreement(AGREEMENT, _message())
    assert (terms.municipality_code, terms.points, terms.campaign_code) == ("203211", 500, None)
    with pytest.raises(Rejected) as refused:
        apply_agreement(AGREEMENT, _message(municipality_code="131016"))
    assert refused.value.reason == "municipality_not_in_agreement"


def test_campaign__inside_its_window__premium_rate_and_target_municipality():
    terms = apply_agreement(AGREEMENT, _message(municipality_code=None, campaign_code="aomori-flight"))
    assert (terms.municipality_code, terms.points, terms.campaign_code) == ("252034", 1501, "aomori-flight")


def test_campaign__outside_its_window__base_rate_only():
    late = _message(campaign_code="aomori-flight", occurred_at=dt.datetime(2026, 12, 1, 0, 0, tzinfo=JST))
    terms = apply_agreement(AGREEMENT, late)
    assert (terms.points, terms.campaign_code) == (500, None)


def test_campaign__other_municipality_than_its_target__is_refused():
    with pytest.raises(Rejected) as refused:
        apply_agreement(AGREEMENT, _message(campaign_code="aomori-flight"))
    assert refused.value.reason == "campaign_municipality_mismatch"


def test_unknown_campaign_or_too_few_points__are_refused():
    for message, reason in ((_message(campaign_code="nope"), "unknown_campaign"), (_message(partner_points=1), "points_too_small")):
        with pytest.raises(Rejected) as refused:
            apply_agreement(AGREEMENT, message)
        assert refused.value.reason == reason


@pytest.mark.parametrize("change", [
    {"version": 2}, {"partner_points": "10"}, {"partner_points": 0}, {"mykey_id": "ABCD1234"},
    {"municipality_code": "252035"}, {"occurred_at": "2026-11-27T10:00:00"}, {"extra": 1}, {"partner_txn_id": ""},
])
def test_parse_message__anything_off_the_contract__is_malformed(change):
    data = {"version": 1, "partner_id": "jal", "partner_txn_id": "t1", "mykey_id": "ABCD2345", "municipality_code": None,
            "partner_points": 100, "campaign_code": None, "occurred_at": "2026-11-27T10:00:00+09:00"}
    data.update(change)
    with pytest.raises(Rejected) as refused:
        parse_message(data)
    assert refused.value.reason == "malformed_message"


def test_parse_message__individual_number_in_a_field__is_refused():
    data = {"version": 1, "partner_id": "jal", "partner_txn_id": "123456789018", "mykey_id": "ABCD2345",
            "municipality_code": None, "partner_points": 100, "campaign_code": None, "occurred_at": "2026-11-27T10:00:00+09:00"}
    with pytest.raises(Rejected) as refused:
        parse_message(data)
    assert refused.value.reason == "individual_number_forbidden"
