"""The partner read API on DynamoDB Local, through the Chalice app: signed requests (either key of a
partner changing keys), a day's decisions page by page, transaction ids, and the partner's own statement.

Decisions are made by the consumer's own function (`conversions.process_message`) at a fixed clock, so
that every one of them falls on one known Japan day without an SQS round trip."""
from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.auth.terminals import request_message
from chalicelib.domain.time import japan_date
from chalicelib.services import conversions

pytestmark = pytest.mark.integration
JST = dt.timezone(dt.timedelta(hours=9))
SECRET = b"integration-hash-secret"
INQUIRIES = "/v1/partner/conversion-inquiries"
AGREEMENT = {"municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
             "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 500_000, "campaigns": []}


def _public(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


class ReadingPartner:
    """A partner onboarded by the platform operator, deciding conversions and reading them back."""

    def __init__(self, http, keys: int = 1):
        self.http, self.world = http, http.world
        self.partner_id = f"p{uuid.uuid4().hex[:10]}"
        self.keys = [Ed25519PrivateKey.generate() for _ in range(keys)]
        self.operator = http.sign_in("platform_operator", code="platform")
        assert self.register().status_code == 200
        # One clock for every decision: all of them on one Japan day, whatever the time of the run.
        self.clock = time.time()
        self.day = japan_date(self.clock).isoformat()

    def register(self, **changes):
        body = {"name": "テスト航空", "public_keys": [_public(key) for key in self.keys],
                "result_queue": f"points-partner-results-{self.partner_id}", "agreement": AGREEMENT, **changes}
        return self.http.staff(self.operator, "PUT", f"/v1/platform/partners/{self.partner_id}", body)

    def decide(self, txn: str, mykey_id: str, partner_points: int = 1000, municipality_code: str | None = None) -> dict:
        from chalicelib.api import dependencies

        message = {"version": 1, "partner_id": self.partner_id, "partner_txn_id": txn, "mykey_id": mykey_id,
                   "municipality_code": municipality_code, "partner_points": partner_points, "campaign_code": None,
                   "occurred_at": dt.datetime.fromtimestamp(self.clock, JST).isoformat()}
        body = json.dumps(message, ensure_ascii=False)
        signature = base64.b64encode(self.keys[0].sign(body.encode())).decode()
        result, _ = conversions.process_message(dependencies.get_ledger_store(), dependencies.get_identity_store(), body,
                                                signature, lambda: self.clock, dependencies.get_hash_secret())
        return result

    def request(self, method: str, path: str, body=None, *, key=None, partner_id=None, signature=None):
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signed_path = path.split("?", 1)[0]
        made = (key or self.keys[0]).sign(request_message(method, signed_path, timestamp, nonce, raw, "POINTS-PARTNER-V1"))
        headers = {"X-Partner-Id": partner_id or self.partner_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": signature or base64.b64encode(made).decode(), "Content-Type": "application/json"}
        return self.http.client.http.request(method, path, headers=headers, body=raw)

    def inquire(self, body: dict, **signing):
        return self.request("POST", INQUIRIES, body, **signing)


@pytest.fixture
def reading_http(http):
    from chalicelib.api import dependencies

    dependencies.override(hash_secret=lambda: SECRET)
    return http


@pytest.fixture
def partner(reading_http):
    return ReadingPartner(reading_http)


def _code(response) -> str:
    return response.json_body["error"]["code"]


def _resident(world) -> str:
    """A registered, active MyKey ID: all a conversion needs, without issuing a card (RSA keys are slow)."""
    from chalicelib.services import ports
    from tests.world import random_mykey_id

    mykey_id = random_mykey_id(world.rng)
    world.store.put_mykey(ports.Mykey(mykey_id, "active", world.home_code, "2026-11-01T00:00:00Z"))
    return mykey_id


def test_inquiry_by_day__pages_through_credits_then_refusals(partner, monkeypatch):
    from chalicelib.services import partner_reconciliation

    world = partner.world
    mykey = _resident(world)
    for index in range(3):
        assert partner.decide(f"c{index}", mykey, 1000, world.home_code)["status"] == "credited"
    assert partner.decide("reserve", mykey, 600)["status"] == "credited"
    assert partner.decide("no-such-card", "ZZZZ2345")["reason"] == "unknown_mykey_id"
    assert partner.decide("order-1234-5678-9018", mykey)["reason"] == "individual_number_forbidden"
    ReadingPartner(partner.http).decide("theirs", mykey, 1000, world.home_code)
    monkeypatch.setattr(partner_reconciliation, "PAGE_SIZE", 4)

    pages, body = [], {"date": partner.day, "cursor": None}
    while True:
        response = partner.inquire(body)
        assert response.status_code == 200, response.body
        pages.append(response.json_body)
        if response.json_body["cursor"] is None:
            break
        body = {"date": partner.day, "cursor": response.json_body["cursor"]}
    assert len(pages) == 2 and all(page["partner_id"] == partner.partner_id and page["date"] == partner.day for page in pages)
    lines = [line for page in pages for line in page["conversions"]]
    assert [line["status"] for line in lines] == ["credited"] * 4 + ["rejected"] * 2
    assert {line["partner_txn_id"] for line in lines[:4]} == {"c0", "c1", "c2", "reserve"}
    by_id = {line["partner_txn_id"]: line for line in lines}
    assert by_id["c0"] == {"partner_txn_id": "c0", "status": "credited", "reason": None,
                           "municipality_code": world.home_code, "points": 500, "partner_points": 1000,
                           "campaign_code": None, "decided_at": by_id["c0"]["decided_at"]}
    assert japan_date(dt.datetime.fromisoformat(by_id["c0"]["decided_at"].replace("Z", "+00:00")).timestamp()).isoformat() == partner.day
    assert (by_id["reserve"]["municipality_code"], by_id["reserve"]["points"]) == (None, 300)
    assert by_id["no-such-card"]["reason"] == "unknown_mykey_id"
    # A refused id that may hold an Individual Number is listed without it.
    assert by_id[None]["reason"] == "individual_number_forbidden"


def test_inquiry_by_day__cursor_of_another_day__is_validation_failed(partner, monkeypatch):
    from chalicelib.services import partner_reconciliation

    mykey = _resident(partner.world)
    for index in range(2):
        partner.decide(f"c{index}", mykey, 1000, partner.world.home_code)
    monkeypatch.setattr(partner_reconciliation, "PAGE_SIZE", 1)
    cursor = partner.inquire({"date": partner.day})
    assert cursor.status_code == 200 and cursor.json_body["cursor"]
    other_day = (dt.date.fromisoformat(partner.day) - dt.timedelta(days=1)).isoformat()
    response = partner.inquire({"date": other_day, "cursor": cursor.json_body["cursor"]})
    assert response.status_code == 400 and _code(response) == "validation_failed"
    assert response.json_body["error"]["field"] == "cursor"


def test_inquiry_by_ids__credited_rejected_unknown_and_another_partners(partner, caplog):
    world = partner.world
    mykey = _resident(world)
    partner.decide("paid", mykey, 1000, world.home_code)
    partner.decide("refused", "ZZZZ2345")
    other = ReadingPartner(partner.http)
    other.decide("theirs", mykey, 1000, world.home_code)
    other.decide("theirs-refused", "ZZZZ2345")

    response = partner.inquire({"partner_txn_ids": ["paid", "refused", "never-sent", "theirs", "theirs-refused"]})
    assert response.status_code == 200, response.body
    answer = response.json_body
    assert (answer["partner_id"], answer["date"], answer["cursor"]) == (partner.partner_id, None, None)
    from chalicelib.observability import get_logger

    formatter = get_logger().registered_formatter
    [logged] = [json.loads(formatter.format(record)) for record in caplog.records
                if record.getMessage() == "request" and record.__dict__.get("route") == "/v1/partner/conversion-inquiries"][-1:]
    assert logged["partner_id"] == partner.partner_id and logged["request_id"] == response.headers["X-Request-Id"]
    statuses = {line["partner_txn_id"]: (line["status"], line["reason"], line["points"]) for line in answer["conversions"]}
    assert statuses == {"paid": ("credited", None, 500), "refused": ("rejected", "unknown_mykey_id", 0),
                        "never-sent": ("unknown", None, 0), "theirs": ("unknown", None, 0),
                        "theirs-refused": ("unknown", None, 0)}
    # The other partner sees its own, and not this partner's.
    seen = other.inquire({"partner_txn_ids": ["theirs", "paid"]}).json_body["conversions"]
    assert [line["status"] for line in seen] == ["credited", "unknown"]


def test_inquiry__unknown_field__is_validation_failed_naming_it(partner):
    response = partner.inquire({"date": partner.day, "partner": "x"})
    assert response.status_code == 400 and response.json_body["error"]["field"] == "partner"


def test_two_key_partner__requests_signed_with_either_key__are_accepted_until_the_old_one_is_removed(reading_http):
    partner = ReadingPartner(reading_http, keys=2)
    old, new = partner.keys
    stored = reading_http.world.store.get_partner(partner.partner_id)
    assert stored["public_keys"] == [_public(old), _public(new)] and stored["public_key"] == _public(old)
    for key in (old, new):
        response = partner.inquire({"partner_txn_ids": ["t1"]}, key=key)
        assert response.status_code == 200, response.body
    partner.keys = [new]
    assert partner.register().status_code == 200
    assert partner.inquire({"partner_txn_ids": ["t1"]}, key=new).status_code == 200
    refused = partner.inquire({"partner_txn_ids": ["t1"]}, key=old)
    assert refused.status_code == 401 and _code(refused) == "partner_authentication_failed"


def test_deactivated_partner__is_refused_401(partner):
    assert partner.register(active=False).status_code == 200
    for response in (partner.inquire({"date": partner.day}), partner.request("GET", "/v1/partner/statements/2026-11")):
        assert response.status_code == 401 and _code(response) == "partner_authentication_failed"


@pytest.mark.parametrize("fault", ["bad_signature", "other_key", "unknown_partner"])
def test_bad_signature__is_refused_401(partner, fault):
    signing = {"bad_signature": {"signature": base64.b64encode(bytes(64)).decode()},
               "other_key": {"key": Ed25519PrivateKey.generate()},
               "unknown_partner": {"partner_id": "nobody"}}[fault]
    response = partner.inquire({"date": partner.day}, **signing)
    assert response.status_code == 401 and _code(response) == "partner_authentication_failed"
    assert "request_id" in response.json_body["error"]


def test_statement__the_partner_reads_its_own_month_as_json_and_csv(partner):
    world = partner.world
    mykey = _resident(world)
    partner.decide("a", mykey, 1000, world.home_code)
    partner.decide("b", mykey, 3000, world.home_code)
    partner.decide("r", mykey, 500)
    month = partner.day[:7]
    response = partner.request("GET", f"/v1/partner/statements/{month}")
    assert response.status_code == 200, response.body
    statement = response.json_body
    assert statement == conversions.monthly_statement(world.store, partner.partner_id, month)
    assert (statement["partner_id"], statement["month"], statement["total_points"]) == (partner.partner_id, month, 2250)
    csv = partner.request("GET", f"/v1/partner/statements/{month}?format=csv")
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.headers["Content-Disposition"] == f'attachment; filename="statement-{partner.partner_id}-{month}.csv"'
    text = csv.body.decode("utf-8")
    assert text.startswith("\ufeff") and text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert text == conversions.statement_csv(statement)
    assert f"\r\n{world.home_code},2,4000,2000,2000\r\n" in text


def test_statement__another_partner_reads_only_its_own(partner):
    world = partner.world
    partner.decide("a", _resident(world), 1000, world.home_code)
    other = ReadingPartner(partner.http)
    month = partner.day[:7]
    response = other.request("GET", f"/v1/partner/statements/{month}")
    assert response.status_code == 200, response.body
    assert response.json_body["partner_id"] == other.partner_id
    assert response.json_body["lines"] == [] and response.json_body["total_points"] == 0
    # Signing as the other partner with this partner's key is not reading this partner's statement.
    forged = partner.request("GET", f"/v1/partner/statements/{month}", partner_id=other.partner_id)
    assert forged.status_code == 401 and _code(forged) == "partner_authentication_failed"


@pytest.mark.parametrize("change,field", [
    ({"public_keys": []}, "public_keys"),
    ({"public_keys": "not-a-list"}, "public_keys"),
    ({"public_keys": ["a", "b", "c"]}, "public_keys"),
    ({"public_keys": ["bm90IGEga2V5"]}, "public_keys[0]"),
    ("same_key_twice", "public_keys[1]"),
    ("both_fields", "public_key"),
])
def test_registration__public_keys_not_one_or_two_distinct_keys__is_validation_failed(partner, change, field):
    key = _public(partner.keys[0])
    if isinstance(change, str):
        change = {"same_key_twice": {"public_keys": [key, key]}, "both_fields": {"public_key": key}}[change]
    response = partner.register(**change)
    assert response.status_code == 400 and _code(response) == "validation_failed"
    assert response.json_body["error"]["field"] == field


def test_registration__the_old_single_public_key__is_still_accepted(partner):
    key = _public(partner.keys[0])
    body = {"name": "テスト航空", "public_key": key, "result_queue": f"points-partner-results-{partner.partner_id}", "agreement": AGREEMENT}
    response = partner.http.staff(partner.operator, "PUT", f"/v1/platform/partners/{partner.partner_id}", body)
    assert response.status_code == 200, response.body
    assert (response.json_body["public_keys"], response.json_body["public_key"]) == ([key], key)
    assert partner.inquire({"partner_txn_ids": ["t1"]}).status_code == 200
