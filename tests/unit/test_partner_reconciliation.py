"""The partner read API's service against the in-memory store: signed requests by either key, the inquiry
body, a day's decisions page by page, and transaction ids answered credited, rejected or unknown."""
from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import errors
from chalicelib.auth.terminals import request_message
from chalicelib.domain.time import japan_day_start_utc, posted_at
from chalicelib.services import conversions, ports
from chalicelib.services import partner_reconciliation as reconciliation
from tests.fakes import FakeLedgerStore

NOW = 1_795_000_000.0  # 2026-11-18 20:06:40 in Japan
DAY = "2026-11-18"
DAY_START = 1_794_927_600.0  # 2026-11-18 00:00 in Japan
SECRET = b"unit-test-hash-secret"
PATH = "/v1/partner/conversion-inquiries"


def _key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, base64.b64encode(public).decode()


def _headers(key, partner_id: str, body: bytes = b"{}", method: str = "POST", path: str = PATH,
             prefix: str = "POINTS-PARTNER-V1", timestamp: int = int(NOW)) -> dict:
    nonce = secrets.token_hex(16)
    signature = key.sign(request_message(method, path, str(timestamp), nonce, body, prefix))
    return {"X-Partner-Id": partner_id, "X-Timestamp": str(timestamp), "X-Nonce": nonce,
            "X-Signature": base64.b64encode(signature).decode()}


def _authenticate(store, headers, body: bytes = b"{}"):
    return reconciliation.authenticate(store, "POST", PATH, headers, body, lambda: NOW)


@pytest.fixture
def store():
    return FakeLedgerStore()


def _partner(store, partner_id: str = "air", keys: int = 1, **changes) -> list[Ed25519PrivateKey]:
    pairs = [_key() for _ in range(keys)]
    store.put_partner({"partner_id": partner_id, "name": "例示航空", "public_key": pairs[0][1],
                       "public_keys": [public for _, public in pairs], "result_queue": f"{partner_id}-results",
                       "agreement": {}, "active": True, **changes})
    return [key for key, _ in pairs]


def _credit(store, partner_id: str, txn: str, at: float, municipality_code: str = "252034", points: int = 500) -> None:
    transfer_id = conversions.conversion_transfer_id(partner_id, txn)
    store.transfers[transfer_id] = ports.Transfer(
        transfer_id=transfer_id, kind=ports.CONVERSION, debit_account=f"partner:{partner_id}",
        credit_account=f"wallet:ABCD2345:{municipality_code}", amount=points, municipality_code=municipality_code,
        mykey_id="ABCD2345", posted_at=posted_at(at), request_fingerprint="partner-message", balance_after=points,
        partner_id=partner_id, partner_txn_id=txn, partner_points=points * 2, campaign_code=None)


def _refuse(store, partner_id: str, txn: str, at: float, reason: str = "unknown_mykey_id", clear: bool = True) -> None:
    store.put_conversion_rejection(partner_id, conversions.partner_txn_key(SECRET, partner_id, txn), txn if clear else None,
                                   reason, "f" * 64, posted_at(at))


# -- authentication ---------------------------------------------------------------------------------------


def test_authenticate__either_key_of_a_two_key_partner__is_accepted(store):
    old, new = _partner(store, keys=2)
    for key in (old, new):
        assert _authenticate(store, _headers(key, "air"))["partner_id"] == "air"


def test_authenticate__record_with_only_the_old_single_key__is_accepted(store):
    key, public = _key()
    store.partners["legacy"] = {"partner_id": "legacy", "public_key": public, "active": True}
    assert _authenticate(store, _headers(key, "legacy"))["partner_id"] == "legacy"


def test_authenticate__key_removed_after_rotation__is_refused(store):
    old, new = _partner(store, keys=2)
    store.partners["air"]["public_keys"] = store.partners["air"]["public_keys"][1:]
    assert _authenticate(store, _headers(new, "air"))["partner_id"] == "air"
    with pytest.raises(errors.PartnerAuthenticationFailed):
        _authenticate(store, _headers(old, "air"))


@pytest.mark.parametrize("case", ["inactive", "unknown", "other_key", "operator_prefix", "stale", "body_changed"])
def test_authenticate__any_failure__is_partner_authentication_failed_and_spends_no_nonce(store, case):
    [key] = _partner(store, active=case != "inactive")
    headers = {
        "inactive": lambda: _headers(key, "air"),
        "unknown": lambda: _headers(key, "nobody"),
        "other_key": lambda: _headers(_key()[0], "air"),
        "operator_prefix": lambda: _headers(key, "air", prefix="POINTS-OPERATOR-V1"),
        "stale": lambda: _headers(key, "air", timestamp=int(NOW) - 301),
        "body_changed": lambda: _headers(key, "air", body=b'{"date":"2026-11-18"}'),
    }[case]()
    with pytest.raises(errors.PartnerAuthenticationFailed) as refused:
        _authenticate(store, headers)
    assert refused.value.status == 401 and refused.value.code == "partner_authentication_failed"
    assert store.nonces == {}


def test_authenticate__replayed_request__is_refused(store):
    [key] = _partner(store)
    headers = _headers(key, "air")
    _authenticate(store, headers)
    with pytest.raises(errors.PartnerAuthenticationFailed):
        _authenticate(store, headers)


# -- the inquiry body -------------------------------------------------------------------------------------


def test_parse_inquiry__day_with_or_without_cursor__and_ids_each_once_in_order():
    assert reconciliation.parse_inquiry({"date": DAY, "cursor": None}) == reconciliation.Inquiry(date=DAY)
    assert reconciliation.parse_inquiry({"date": DAY, "cursor": "abc"}).cursor == "abc"
    assert reconciliation.parse_inquiry({"partner_txn_ids": ["b", "a", "b"]}).partner_txn_ids == ("b", "a")


@pytest.mark.parametrize("body,field", [
    ({"date": DAY, "limit": 10}, "limit"),
    ({}, "date"),
    ({"date": None, "partner_txn_ids": None}, "date"),
    ({"date": DAY, "partner_txn_ids": ["a"]}, "partner_txn_ids"),
    ({"partner_txn_ids": ["a"], "cursor": "abc"}, "cursor"),
    ({"date": "2026-02-30"}, "date"),
    ({"date": "2026-W47-3"}, "date"),
    ({"date": "20261118"}, "date"),
    ({"date": "1999-12-31"}, "date"),
    ({"date": 20261118}, "date"),
    ({"date": DAY, "cursor": ""}, "cursor"),
    ({"date": DAY, "cursor": 5}, "cursor"),
    ({"date": DAY, "cursor": "c" * 2049}, "cursor"),
    ({"partner_txn_ids": []}, "partner_txn_ids"),
    ({"partner_txn_ids": "t1"}, "partner_txn_ids"),
    ({"partner_txn_ids": [f"t{n}" for n in range(101)]}, "partner_txn_ids"),
    ({"partner_txn_ids": ["t1", ""]}, "partner_txn_ids[1]"),
    ({"partner_txn_ids": ["t" * 129]}, "partner_txn_ids[0]"),
    ({"partner_txn_ids": [7]}, "partner_txn_ids[0]"),
])
def test_parse_inquiry__anything_off_the_contract__is_validation_failed_naming_the_field(body, field):
    with pytest.raises(errors.ValidationFailed) as refused:
        reconciliation.parse_inquiry(body)
    assert refused.value.code == "validation_failed" and refused.value.details["field"] == field


def test_parse_inquiry__individual_number_inside_an_id__is_refused():
    with pytest.raises(errors.IndividualNumberForbidden) as refused:
        reconciliation.parse_inquiry({"partner_txn_ids": ["ok", "order-1234-5678-9018"]})
    assert refused.value.details["field"] == "partner_txn_ids[1]"


def test_parse_inquiry__limits__are_accepted_at_their_edge():
    assert len(reconciliation.parse_inquiry({"partner_txn_ids": [f"t{n}" for n in range(100)]}).partner_txn_ids) == 100
    assert reconciliation.parse_inquiry({"partner_txn_ids": ["t" * 128]}).partner_txn_ids == ("t" * 128,)
    assert reconciliation.parse_inquiry({"date": DAY, "cursor": "c" * 2048}).cursor == "c" * 2048


# -- by day -----------------------------------------------------------------------------------------------


def _day_of_decisions(store):
    """Three credits and two refusals on DAY, one of each just outside it, and another partner's."""
    start = DAY_START
    _credit(store, "air", "before-midnight", start - 0.001)
    for index in range(3):
        _credit(store, "air", f"c{index}", start + 60 * index, municipality_code=ports.RESERVE if index == 2 else "252034")
    _refuse(store, "air", "r0", start + 30)
    _refuse(store, "air", "123456789018", start + 90, reason="individual_number_forbidden", clear=False)
    _refuse(store, "air", "next-day", start + 86_400)
    _credit(store, "rail", "c0", start + 10)


def _read_all_pages(store, limit: int) -> list[dict]:
    pages, cursor = [], None
    while True:
        page = reconciliation.conversions_of_day(store, lambda: SECRET, "air", DAY, cursor, limit=limit)
        pages.append(page)
        cursor = page["cursor"]
        if cursor is None:
            return pages


def test_by_day__pages_of_two__credits_then_refusals_of_that_japan_day_only(store):
    assert japan_day_start_utc(DAY) == posted_at(DAY_START)
    _day_of_decisions(store)
    pages = _read_all_pages(store, limit=2)
    assert [len(page["conversions"]) for page in pages] == [2, 2, 1]
    assert all(page["partner_id"] == "air" and page["date"] == DAY for page in pages)
    lines = [line for page in pages for line in page["conversions"]]
    assert [(line["partner_txn_id"], line["status"]) for line in lines] == [
        ("c0", "credited"), ("c1", "credited"), ("c2", "credited"), ("r0", "rejected"), (None, "rejected")]
    assert all(tuple(line) == reconciliation.LINE_FIELDS for line in lines)
    assert lines[0] == {"partner_txn_id": "c0", "status": "credited", "reason": None, "municipality_code": "252034",
                        "points": 500, "partner_points": 1000, "campaign_code": None, "decided_at": "2026-11-17T15:00:00.000Z"}
    assert lines[2]["municipality_code"] is None  # a reserve credit
    assert lines[4] == {"partner_txn_id": None, "status": "rejected", "reason": "individual_number_forbidden",
                        "municipality_code": None, "points": 0, "partner_points": None, "campaign_code": None,
                        "decided_at": "2026-11-17T15:01:30.000Z"}


def test_by_day__the_default_page__holds_everything_of_a_small_day(store):
    _day_of_decisions(store)
    page = reconciliation.conversions_of_day(store, lambda: SECRET, "air", DAY, None)
    assert len(page["conversions"]) == 5 and page["cursor"] is None


def test_by_day__cursor_of_another_day_or_partner_or_tampered__is_refused(store):
    _day_of_decisions(store)
    cursor = reconciliation.conversions_of_day(store, lambda: SECRET, "air", DAY, None, limit=2)["cursor"]
    payload, tag = cursor.rsplit(".", 1)
    refused_reads = [
        ("air", "2026-11-19", cursor),
        ("rail", DAY, cursor),
        ("air", DAY, f"{payload}x.{tag}"),
        ("air", DAY, payload),
        ("air", DAY, "2"),  # the store's own cursor, unsealed
    ]
    for partner_id, day, sent in refused_reads:
        with pytest.raises(errors.ValidationFailed) as refused:
            reconciliation.conversions_of_day(store, lambda: SECRET, partner_id, day, sent, limit=2)
        assert refused.value.details["field"] == "cursor"
    with pytest.raises(errors.ValidationFailed):
        reconciliation.conversions_of_day(store, lambda: b"another secret", "air", DAY, cursor, limit=2)


# -- by transaction ids -----------------------------------------------------------------------------------


def test_by_ids__credited_rejected_unknown_and_another_partners__in_the_order_asked(store):
    _credit(store, "air", "paid", NOW, municipality_code=ports.RESERVE)
    _refuse(store, "air", "refused", NOW + 1, reason="daily_cap_exceeded")
    _credit(store, "rail", "theirs", NOW)
    _refuse(store, "rail", "theirs-refused", NOW)
    answer = reconciliation.conversions_by_ids(store, lambda: SECRET, "air",
                                               ["refused", "never-sent", "theirs", "theirs-refused", "paid"])
    assert answer["partner_id"] == "air" and answer["date"] is None and answer["cursor"] is None
    by_id = {line["partner_txn_id"]: line for line in answer["conversions"]}
    assert list(by_id) == ["refused", "never-sent", "theirs", "theirs-refused", "paid"]
    assert by_id["paid"] == {"partner_txn_id": "paid", "status": "credited", "reason": None, "municipality_code": None,
                             "points": 500, "partner_points": 1000, "campaign_code": None, "decided_at": posted_at(NOW)}
    assert by_id["refused"] == {"partner_txn_id": "refused", "status": "rejected", "reason": "daily_cap_exceeded",
                                "municipality_code": None, "points": 0, "partner_points": None, "campaign_code": None,
                                "decided_at": posted_at(NOW + 1)}
    unknown = {"status": "unknown", "reason": None, "municipality_code": None, "points": 0, "partner_points": None,
               "campaign_code": None, "decided_at": None}
    for txn in ("never-sent", "theirs", "theirs-refused"):
        assert by_id[txn] == {"partner_txn_id": txn, **unknown}


def test_by_ids__a_payment_whose_id_collides_with_a_conversion__is_unknown(store):
    transfer_id = conversions.conversion_transfer_id("air", "t1")
    store.transfers[transfer_id] = ports.Transfer(
        transfer_id=transfer_id, kind=ports.PAYMENT, debit_account="wallet:ABCD2345:252034", credit_account="merchant:m",
        amount=100, municipality_code="252034", mykey_id="ABCD2345", posted_at=posted_at(NOW), request_fingerprint="x",
        balance_after=0)
    [line] = reconciliation.conversions_by_ids(store, lambda: SECRET, "air", ["t1"])["conversions"]
    assert line["status"] == "unknown"


def test_by_ids__all_credited__never_reads_the_hash_secret(store):
    _credit(store, "air", "paid", NOW)

    def no_secret():
        raise AssertionError("the secret is needed only to look a refusal up")

    [line] = reconciliation.conversions_by_ids(store, no_secret, "air", ["paid"])["conversions"]
    assert line["status"] == "credited"
