"""The fixed terminal API of docs/CONTRACTS.md#http-core through the Chalice app, on DynamoDB Local."""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from terminal_client.signing import payment_message
from tests.world import issue_test_card

pytestmark = pytest.mark.integration


def _payment(world, mykey, amount, code=None, transfer_id=None, sign=False, signed_at=None, keys=None, certificate=None):
    transfer_id = transfer_id or str(uuid.uuid4())
    code = code or world.home_code
    keys = keys or world.shop
    card = world.cards[mykey] if mykey else None
    body = {
        "transfer_id": transfer_id,
        "municipality_code": code,
        "amount": amount,
        "card": {"certificate": certificate or card.certificate_base64},
    }
    if sign:
        signed_at = int(time.time()) if signed_at is None else signed_at
        message = payment_message(transfer_id, keys.terminal_id, code, amount, signed_at)
        body["card"]["signature"] = base64.b64encode(card.sign(message)).decode()
        body["card"]["signed_at"] = signed_at
    return body


def test_health__answers_ok(http):
    response = http.client.http.get("/v1/health")
    assert response.status_code == 200 and response.json_body == {"status": "ok"}


def test_payment__posts_and_answers_the_fixed_fields(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    body = _payment(world, mykey, 400)
    response = http.terminal(world.shop, "POST", "/v1/payments", body)
    assert response.status_code == 201, response.body
    assert set(response.json_body) == {"transfer_id", "status", "amount", "municipality_code", "balance_after", "posted_at"}
    assert response.json_body["status"] == "posted" and response.json_body["balance_after"] == 600
    assert uuid.UUID(response.headers["X-Request-Id"])


def test_payment__retry_with_fresh_request_signature__returns_first_outcome(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    body = _payment(world, mykey, 4000 if False else 400)
    first = http.terminal(world.shop, "POST", "/v1/payments", body)
    again = http.terminal(world.shop, "POST", "/v1/payments", body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json_body == again.json_body
    changed = dict(body, amount=401)
    conflict = http.terminal(world.shop, "POST", "/v1/payments", changed)
    assert conflict.status_code == 409 and conflict.json_body["error"]["code"] == "transfer_id_conflict"
    assert world.store.get_wallet(mykey, world.home_code).balance == 600


def test_payment__signed_above_pin_free_limit__posts(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 10000)
    response = http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 5000, sign=True))
    assert response.status_code == 201, response.body
    assert response.json_body["balance_after"] == 5000


def test_get_payment__settles_the_outbox_and_hides_other_merchants_payments(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    body = _payment(world, mykey, 300)
    posted = http.terminal(world.shop, "POST", "/v1/payments", body).json_body
    path = f"/v1/payments/{body['transfer_id']}"
    found = http.terminal(world.shop, "GET", path)
    assert found.status_code == 200 and found.json_body == dict(posted, refunded_amount=0)
    hidden = http.terminal(world.facility, "GET", path)
    assert hidden.status_code == 404 and hidden.json_body["error"]["code"] == "transfer_not_found"
    missing = http.terminal(world.shop, "GET", f"/v1/payments/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json_body["error"]["code"] == "transfer_not_found"


def test_refund__partial_full_and_beyond(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    body = _payment(world, mykey, 500)
    http.terminal(world.shop, "POST", "/v1/payments", body)
    path = f"/v1/payments/{body['transfer_id']}/refunds"
    first = http.terminal(world.shop, "POST", path, {"refund_id": str(uuid.uuid4()), "amount": 200})
    assert first.status_code == 201, first.body
    assert first.json_body["balance_after"] == 700 and first.json_body["payment_transfer_id"] == body["transfer_id"]
    beyond = http.terminal(world.shop, "POST", path, {"refund_id": str(uuid.uuid4()), "amount": 301})
    assert beyond.status_code == 409 and beyond.json_body["error"]["code"] == "refund_exceeds_payment"
    elsewhere = http.terminal(world.facility, "POST", path, {"refund_id": str(uuid.uuid4()), "amount": 1})
    assert elsewhere.status_code == 403 and elsewhere.json_body["error"]["code"] == "refund_not_allowed"
    rest = http.terminal(world.shop, "POST", path, {"refund_id": str(uuid.uuid4()), "amount": 300})
    assert rest.status_code == 201 and rest.json_body["balance_after"] == 1000
    settled = http.terminal(world.shop, "GET", f"/v1/payments/{body['transfer_id']}")
    assert settled.json_body["refunded_amount"] == 500


def test_balance_inquiry__lists_only_what_this_merchant_accepts(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    world.grant(mykey, 50, code=world.other_code)
    response = http.terminal(world.shop, "POST", "/v1/balance-inquiries",
                             {"card": {"certificate": world.cards[mykey].certificate_base64}})
    assert response.status_code == 200, response.body
    assert [(b["municipality_code"], b["balance"]) for b in response.json_body["balances"]] == [(world.home_code, 1000)]
    assert response.json_body["merchant_name"] == "黒壁スクエア商店"


# -- every refusal of POST /v1/payments: its code, its status, and nothing written -------------------


def _refusal_cases():
    def missing_transfer_id(world, mykey):
        body = _payment(world, mykey, 10)
        del body["transfer_id"]
        return body

    def unknown_card(world, mykey):
        return _payment(world, None, 10, certificate=issue_test_card().certificate_base64)

    def foreign_ca(world, mykey):
        from tools.devpki import DevCertificateAuthority

        return _payment(world, None, 10, certificate=DevCertificateAuthority.create("Other CA").issue_card().certificate_base64)

    def unregistered_municipality(world, mykey):
        return _payment(world, mykey, 10, code="131016" if world.home_code != "131016" else "252034")

    def individual_number(world, mykey):
        return _payment(world, mykey, 10, code="123456789018")

    def bad_signature(world, mykey):
        body = _payment(world, mykey, 5000, sign=True)
        body["card"]["signature"] = base64.b64encode(b"\x00" * 256).decode()
        return body

    def conflict(world, mykey):
        body = _payment(world, mykey, 10)
        world._conflict_seed = body
        return dict(body, amount=11)

    return {
        "missing transfer_id": (missing_transfer_id, 400, "validation_failed"),
        "upper-case transfer_id": (lambda w, m: _payment(w, m, 10, transfer_id=str(uuid.uuid4()).upper()), 400, "validation_failed"),
        "check digit": (lambda w, m: _payment(w, m, 10, code="252035"), 400, "invalid_municipality_code"),
        "Individual Number": (individual_number, 400, "individual_number_forbidden"),
        "zero amount": (lambda w, m: _payment(w, m, 0), 400, "invalid_amount"),
        "string amount": (lambda w, m: _payment(w, m, "10"), 400, "invalid_amount"),
        "over a million": (lambda w, m: _payment(w, m, 1_000_001), 400, "invalid_amount"),
        "over programme maximum": (lambda w, m: _payment(w, m, 100_001), 400, "invalid_amount"),
        "unknown field": (lambda w, m: dict(_payment(w, m, 10), tip=5), 400, "validation_failed"),
        "not base64": (lambda w, m: _payment(w, m, 10, certificate="***"), 400, "validation_failed"),
        # docs/openapi.yaml's Certificate has minLength 1: the server refuses the empty string the same way.
        "empty certificate": (lambda w, m: dict(_payment(w, m, 10), card={"certificate": ""}), 400, "validation_failed"),
        "not a certificate": (lambda w, m: _payment(w, m, 10, certificate=base64.b64encode(b"hello").decode()), 401, "card_certificate_invalid"),
        "foreign CA": (foreign_ca, 401, "card_certificate_invalid"),
        "unknown card": (unknown_card, 404, "card_unknown"),
        "revoked card": ("revoked", 403, "card_revoked"),
        "suspended card": ("suspended", 403, "card_suspended"),
        "renewed card": ("superseded", 403, "card_superseded"),
        "unregistered municipality": (unregistered_municipality, 404, "municipality_not_found"),
        "municipality not accepted": (lambda w, m: _payment(w, m, 10, code=w.other_code), 403, "merchant_not_accepting_municipality"),
        "no card signature above limit": (lambda w, m: _payment(w, m, 3001), 401, "card_signature_required"),
        "bad card signature": (bad_signature, 401, "card_signature_invalid"),
        "old card signature": (lambda w, m: _payment(w, m, 5000, sign=True, signed_at=int(time.time()) - 601), 401, "card_signature_expired"),
        "insufficient balance": (lambda w, m: _payment(w, m, 20_001, sign=True), 409, "insufficient_balance"),
        "transfer id conflict": (conflict, 409, "transfer_id_conflict"),
    }


@pytest.mark.parametrize("case", list(_refusal_cases()))
def test_payment_refusal__documented_code__and_nothing_written(http, table_snapshot, case):
    build, status, code = _refusal_cases()[case]
    world = http.world
    mykey = world.add_card(status=build if isinstance(build, str) else "active")
    world.grant(mykey, 20_000)
    body = _payment(world, mykey, 10) if isinstance(build, str) else build(world, mykey)
    if case == "transfer id conflict":
        assert http.terminal(world.shop, "POST", "/v1/payments", world._conflict_seed).status_code == 201
    before = table_snapshot()
    response = http.terminal(world.shop, "POST", "/v1/payments", body)
    after = table_snapshot()
    assert response.status_code == status, response.body
    error = response.json_body["error"]
    assert error["code"] == code and error["message"] and error["request_id"]
    # The request's nonce is spent (so the same signed request cannot be replayed later); nothing else moves.
    assert len(after.pop("nonces")) == len(before.pop("nonces")) + 1
    assert after == before


def test_payment_refusal__malformed_json__is_validation_failed_and_writes_nothing(http, table_snapshot):
    before = table_snapshot()
    response = http.terminal(http.world.shop, "POST", "/v1/payments", b"{not json")
    assert response.status_code == 400 and response.json_body["error"]["code"] == "validation_failed"
    after = table_snapshot()
    after.pop("nonces"), before.pop("nonces")
    assert after == before


def test_payment_refusal__oversized_body__is_request_too_large(http, table_snapshot):
    before = table_snapshot()
    response = http.terminal(http.world.shop, "POST", "/v1/payments", b"{" + b" " * 70_000 + b"}")
    assert response.status_code == 413 and response.json_body["error"]["code"] == "request_too_large"
    assert table_snapshot() == before


def test_payment_refusal__deeply_nested_json__is_validation_failed(http):
    nested = {"card": {"certificate": "x"}}
    for _ in range(20):
        nested = {"a": nested}
    response = http.terminal(http.world.shop, "POST", "/v1/payments", dict(nested, transfer_id=str(uuid.uuid4())))
    assert response.status_code == 400 and response.json_body["error"]["code"] == "validation_failed"


# -- terminal request signatures: every refusal is 401 and writes nothing at all -----------------------


def _terminal_auth_cases():
    return {
        "bad signature": dict(headers={"X-Signature": base64.b64encode(b"\x01" * 64).decode()}),
        "signed another path": dict(sign_path="/v1/balance-inquiries"),
        "timestamp 301 s old": dict(timestamp=int(time.time()) - 301),
        "timestamp 301 s ahead": dict(timestamp=int(time.time()) + 301),
        "unknown terminal": dict(headers={"X-Terminal-Id": "t-nobody"}),
        "short nonce": dict(nonce="abc123"),
        "missing signature": dict(headers={"X-Signature": ""}),
        "stage-prefixed path signed": dict(sign_path="/dev/v1/payments"),
    }


@pytest.mark.parametrize("case", list(_terminal_auth_cases()))
def test_terminal_signature_refusal__401_and_nothing_written(http, table_snapshot, case):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    before = table_snapshot()
    response = http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 10), **_terminal_auth_cases()[case])
    assert response.status_code == 401, response.body
    assert response.json_body["error"]["code"] == "terminal_authentication_failed"
    assert table_snapshot() == before


def test_terminal_signature__reused_nonce__is_refused(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    nonce = uuid.uuid4().hex
    first = http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 10), nonce=nonce)
    replay = http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 10), nonce=nonce)
    assert first.status_code == 201
    assert replay.status_code == 401 and replay.json_body["error"]["code"] == "terminal_authentication_failed"
    assert world.store.get_wallet(mykey, world.home_code).balance == 990


def test_terminal_signature__disabled_terminal__is_refused(http):
    import dataclasses

    world = http.world
    terminal = world.store.get_terminal(world.shop.terminal_id)
    world.store.put_terminal(dataclasses.replace(terminal, active=False))
    response = http.terminal(world.shop, "POST", "/v1/balance-inquiries", {"card": {"certificate": "AA=="}})
    assert response.status_code == 401


def test_unexpected_failure__is_internal_error_without_stack_trace(http):
    from chalicelib.api import dependencies

    class BrokenStore:
        def __getattr__(self, name):
            raise RuntimeError("database on fire")

    dependencies.override(ledger_store=BrokenStore())
    response = http.terminal(http.world.shop, "POST", "/v1/payments", {"transfer_id": str(uuid.uuid4())})
    assert response.status_code == 500
    assert response.json_body["error"]["code"] == "internal_error"
    assert "Traceback" not in response.body.decode() and "fire" not in response.body.decode()


def test_expiry_schedule__lambda_posts_expire_transfers(http):
    from chalicelib.api import dependencies

    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 40, expires_on=time.strftime("%Y-%m-%d", time.gmtime(time.time() + 9 * 3600)))
    dependencies.override(clock=lambda: time.time() + 2 * 86400)
    result = http.client.lambda_.invoke("expire_points", http.client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=[]))
    assert result.payload["expire_transfers"] >= 1
    assert world.store.get_wallet(mykey, world.home_code).balance == 0
    assert [t.kind for t in world.store.transfers_of_mykey(mykey)][0] == "expire"
