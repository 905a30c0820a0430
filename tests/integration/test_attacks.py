"""The attack suite (issue 10, item 3), on DynamoDB Local through the Chalice app in process.

Each attack must be refused with its documented code and write nothing: every table is compared item by
item before and after (`table_snapshot`). The only writes a refusal may leave are the request's nonce,
spent once a terminal's, operator's or partner's signature checks out (so the same signed request can
never be replayed), a staff or resident session's last-activity time, and — for a partner message
refused after its signature verified — the recorded refusal that answers its redeliveries the same way.

Kinds: terminal request signatures (forged, missing, replayed nonce, expired or future timestamp, made
for another path, method or body, another terminal's key); partner request signatures (the same, plus
another partner's key, a signature made for another scheme, an inactive partner) and a partner reading
another partner's conversions; a merchant paying in a municipality it does not accept; staff of one
municipality on another's data (a few routes here: every route is swept by
tests/integration/test_tenant_isolation.py); revoked, suspended and superseded cards; card signatures
forged, made for another amount, transfer, terminal or card, or too old; PIN lockout in the terminal
client with the virtual JPKI card; partners without agreement or signing with another partner's key; an
Individual Number in every identifier and free-text field of every request body and path; oversized
bodies and deeply nested JSON. The figures go to `reliability/results/attacks.json`.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import time
import uuid

import pytest

from reliability import attacks, fuzz
from tests.integration.test_fuzz_http import GOOD_ACCOUNT, Context, send
from tests.world import HASH_SECRET

pytestmark = pytest.mark.integration
INDIVIDUAL_NUMBER = "123456789018"  # 12 digits with a valid My Number check digit (docs/CONTRACTS.md#individual-number)
# The same number as people also write it: a whole identifier value in groups is refused too (issue 15).
GROUPED_INDIVIDUAL_NUMBER = "1234-5678-9018"
JST = dt.timezone(dt.timedelta(hours=9))
TERMINAL = {"nonces": 1}
STAFF = {"staff_sessions": "touch"}
OPERATIONS = {operation.operation_id: operation for operation in fuzz.operations()}


@pytest.fixture(scope="module")
def attack_log():
    log = attacks.AttackLog()
    yield log
    if log.tried:
        attacks.write_results(log)


def refused(log, snapshot, kind: str, name: str, call, status: int, code: str, allow: dict | None = None):
    """Make the attack's request; it must answer `status` `code`, and write nothing beyond `allow`."""
    before = snapshot()
    response = call()
    after = snapshot()
    try:
        answered = json.loads(response.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        answered = None
    changes = attacks.writes(before, after, allow)
    accepted = response.status_code != status or answered != code or bool(changes)
    log.record(kind, name, accepted, f"{response.status_code} {answered} {changes} {response.body[:200]!r}")
    assert (response.status_code, answered) == (status, code), response.body
    assert changes == [], f"written: {changes}"
    return response


def _payment(world, mykey, amount=10, code=None, keys=None, transfer_id=None, sign=False, signed_at=None, signer=None,
             message_overrides=None):
    from terminal_client.signing import payment_message

    keys = keys or world.shop
    code = code or world.home_code
    transfer_id = transfer_id or str(uuid.uuid4())
    card = world.cards[mykey]
    body = {"transfer_id": transfer_id, "municipality_code": code, "amount": amount,
            "card": {"certificate": card.certificate_base64}}
    if sign:
        signed_at = int(time.time()) if signed_at is None else signed_at
        fields = {"transfer_id": transfer_id, "terminal_id": keys.terminal_id, "municipality_code": code,
                  "amount": amount, "signed_at": signed_at, **(message_overrides or {})}
        message = payment_message(fields["transfer_id"], fields["terminal_id"], fields["municipality_code"],
                                  fields["amount"], fields["signed_at"])
        body["card"]["signature"] = base64.b64encode((signer or card).sign(message)).decode()
        body["card"]["signed_at"] = signed_at
    return body


@pytest.fixture
def payer(http):
    """A resident with points in both municipalities; shop accepts only the home one."""
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 20_000)
    world.grant(mykey, 5_000, code=world.other_code)
    return mykey


# -- terminal request signatures --------------------------------------------------------------------------


def _terminal_signature_attacks(world):
    """Each attack's request options, made when the request is sent (timestamps are relative to that moment)."""
    now = lambda: int(time.time())  # noqa: E731
    return {
        "forged signature": lambda: dict(headers={"X-Signature": base64.b64encode(secrets.token_bytes(64)).decode()}),
        "missing signature": lambda: dict(headers={"X-Signature": ""}),
        "expired timestamp (more than 300 s old)": lambda: dict(timestamp=now() - 302),
        "expired timestamp (one hour old)": lambda: dict(timestamp=now() - 3600),
        "timestamp more than 300 s ahead": lambda: dict(timestamp=now() + 302),
        "signed for another path": lambda: dict(sign_path="/v1/balance-inquiries"),
        "stage-prefixed path signed": lambda: dict(sign_path="/dev/v1/payments"),
        "cross-terminal: A's key with B's id": lambda: dict(headers={"X-Terminal-Id": world.facility.terminal_id}),
        "unknown terminal id": lambda: dict(headers={"X-Terminal-Id": "t-nobody"}),
        "malformed nonce": lambda: dict(nonce="zz" * 16),
    }


def test_terminal_signature_attacks__refused_and_nothing_written(http, payer, table_snapshot, attack_log):
    world = http.world
    for attack, options in _terminal_signature_attacks(world).items():
        refused(attack_log, table_snapshot, "terminal_signature", attack,
                lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, payer), **options()),
                401, "terminal_authentication_failed")
    assert world.store.get_wallet(payer, world.home_code).balance == 20_000


def test_terminal_signature_attack__signed_for_another_method_or_body(http, payer, table_snapshot, attack_log):
    from terminal_client.signing import request_headers

    world = http.world
    body = _payment(world, payer, 10)
    raw = json.dumps(body).encode()
    other = json.dumps(dict(body, amount=9000)).encode()

    def with_headers(method_signed: str, body_signed: bytes, body_sent: bytes):
        headers = request_headers(world.shop.private_key, world.shop.terminal_id, method_signed, "/v1/payments", body_signed)
        headers["Content-Type"] = "application/json"
        return lambda: http.client.http.request("POST", "/v1/payments", headers=headers, body=body_sent)

    refused(attack_log, table_snapshot, "terminal_signature", "signed for another method (GET)",
            with_headers("GET", raw, raw), 401, "terminal_authentication_failed")
    refused(attack_log, table_snapshot, "terminal_signature", "signed for another body (amount 10, sent 9000)",
            with_headers("POST", raw, other), 401, "terminal_authentication_failed")
    refused(attack_log, table_snapshot, "terminal_signature", "signed for an empty body",
            with_headers("POST", b"", raw), 401, "terminal_authentication_failed")


def test_terminal_signature_attack__replayed_nonce_and_replayed_request(http, payer, table_snapshot, attack_log):
    from terminal_client.signing import request_headers

    world = http.world
    first_body = json.dumps(_payment(world, payer, 10)).encode()
    headers = request_headers(world.shop.private_key, world.shop.terminal_id, "POST", "/v1/payments", first_body)
    headers["Content-Type"] = "application/json"
    assert http.client.http.request("POST", "/v1/payments", headers=headers, body=first_body).status_code == 201
    # The captured request again, byte for byte; then the same nonce on a freshly signed new payment.
    refused(attack_log, table_snapshot, "terminal_signature", "replayed request (same headers and body)",
            lambda: http.client.http.request("POST", "/v1/payments", headers=headers, body=first_body),
            401, "terminal_authentication_failed")
    refused(attack_log, table_snapshot, "terminal_signature", "reused nonce on a new signed payment",
            lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, payer, 10), nonce=headers["X-Nonce"]),
            401, "terminal_authentication_failed")
    refused(attack_log, table_snapshot, "terminal_signature", "reused nonce in upper case",
            lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, payer, 10),
                                  nonce=headers["X-Nonce"].upper()),
            401, "terminal_authentication_failed")
    assert world.store.get_wallet(payer, world.home_code).balance == 19_990


def test_terminal_signature_attack__disabled_terminal(http, payer, table_snapshot, attack_log):
    approver = http.sign_in("operator")
    disabled = http.staff(approver, "POST", f"/v1/municipalities/{http.world.home_code}/terminals/"
                                            f"{http.world.shop.terminal_id}/disable")
    assert disabled.status_code == 200, disabled.body
    refused(attack_log, table_snapshot, "terminal_signature", "disabled terminal's key",
            lambda: http.terminal(http.world.shop, "POST", "/v1/payments", _payment(http.world, payer)),
            401, "terminal_authentication_failed")


def test_operator_signature_attack__another_operators_key(http, table_snapshot, attack_log):
    from chalicelib.auth.terminals import request_message

    context = Context(http, OPERATIONS["confirmHold"])
    hold_id = context.hold_id
    _, key = context.operator
    other = Context(http, OPERATIONS["confirmHold"])
    other_id, _ = other.operator  # a second registered operator
    path = f"/v1/operator/holds/{hold_id}/confirmation"
    raw = json.dumps({"destination_account": GOOD_ACCOUNT, "amount": 300}).encode()

    def call():
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = key.sign(request_message("POST", path, timestamp, nonce, raw, "POINTS-OPERATOR-V1"))
        headers = {"X-Operator-Id": other_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": base64.b64encode(signature).decode(), "Content-Type": "application/json"}
        return http.client.http.post(path, headers=headers, body=raw)

    refused(attack_log, table_snapshot, "operator_signature", "operator A's key with operator B's id", call,
            401, "operator_authentication_failed")


# -- merchants, municipalities, staff ----------------------------------------------------------------------


def test_merchant_not_accepting_municipality__refused(http, payer, table_snapshot, attack_log):
    world = http.world
    refused(attack_log, table_snapshot, "merchant_municipality", "shop pays in a municipality it does not accept",
            lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, payer, 10, code=world.other_code)),
            403, "merchant_not_accepting_municipality", TERMINAL)
    refused(attack_log, table_snapshot, "merchant_municipality", "... signed by the card, above the PIN-free limit",
            lambda: http.terminal(world.shop, "POST", "/v1/payments",
                                  _payment(world, payer, 4000, code=world.other_code, sign=True)),
            403, "merchant_not_accepting_municipality", TERMINAL)
    assert world.store.get_wallet(payer, world.other_code).balance == 5_000


def test_staff_of_another_municipality__refused_on_a_few_routes(http, payer, table_snapshot, attack_log):
    """A sample; test_tenant_isolation.py sweeps every route under /v1/municipalities/{code}."""
    world = http.world
    intruder = http.sign_in("approver", code=world.other_code)
    home = f"/v1/municipalities/{world.home_code}"
    attempts = {
        "grant points": ("POST", f"{home}/grants", {"grant_id": str(uuid.uuid4()), "mykey_id": payer, "amount": 100,
                                                    "reason": "越境"}),
        "read the summary": ("GET", f"{home}/reports/summary", None),
        "read a resident's history": ("GET", f"{home}/residents/{payer}/history", None),
        "raise the PIN-free limit": ("PATCH", f"{home}/programme", {"pin_free_limit": 100_000}),
        "register a merchant": ("POST", f"{home}/merchants", {"merchant_id": "intruder-1", "name": "侵入", "kind": "shop"}),
        "disable a terminal": ("POST", f"{home}/terminals/{world.shop.terminal_id}/disable", None),
        "add a staff account": ("POST", f"{home}/staff", {"staff_id": "intruder-2", "role": "approver"}),
    }
    for name, (method, path, body) in attempts.items():
        refused(attack_log, table_snapshot, "tenant_isolation", name,
                lambda: http.staff(intruder, method, path, body), 403, "staff_forbidden")
    municipal = http.sign_in("approver")
    refused(attack_log, table_snapshot, "tenant_isolation", "municipal approver onboards a partner",
            lambda: http.staff(municipal, "PUT", "/v1/platform/partners/intruder", {
                "name": "x", "public_key": base64.b64encode(bytes(32)).decode(), "result_queue": "q",
                "agreement": {"rate_numerator": 1, "rate_denominator": 1, "daily_cap_per_resident": 1,
                              "monthly_cap_per_resident": 1}}),
            403, "staff_forbidden", STAFF)  # platform routes count the refused call as the session's activity
    viewer = http.sign_in("viewer")
    refused(attack_log, table_snapshot, "tenant_isolation", "viewer grants points",
            lambda: http.staff(viewer, "POST", f"{home}/grants", {
                "grant_id": str(uuid.uuid4()), "mykey_id": payer, "amount": 100, "reason": "権限外"}),
            403, "staff_forbidden")


# -- cards ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status,code", [("revoked", "card_revoked"), ("suspended", "card_suspended"),
                                         ("superseded", "card_superseded")])
def test_stopped_card__refused_everywhere_it_is_presented(http, table_snapshot, attack_log, status, code):
    world = http.world
    mykey = world.add_card(status=status)
    world.grant(mykey, 10_000)
    certificate = {"card": {"certificate": world.cards[mykey].certificate_base64}}
    refused(attack_log, table_snapshot, "stopped_card", f"{status} card pays",
            lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 10)), 403, code, TERMINAL)
    refused(attack_log, table_snapshot, "stopped_card", f"{status} card pays with its PIN",
            lambda: http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, 5000, sign=True)),
            403, code, TERMINAL)
    refused(attack_log, table_snapshot, "stopped_card", f"{status} card asks its balance",
            lambda: http.terminal(world.shop, "POST", "/v1/balance-inquiries", certificate), 403, code, TERMINAL)
    refused(attack_log, table_snapshot, "stopped_card", f"{status} card links a facility",
            lambda: http.terminal(world.facility, "POST", "/v1/facility-links", dict(certificate, local_id="L-1")),
            403, code, TERMINAL)
    answer = http.card_response(world.cards[mykey], "resident_sign_in")
    refused(attack_log, table_snapshot, "stopped_card", f"{status} card signs in as a resident",
            lambda: http.post("/v1/resident-sessions", answer), 403, code, {"challenges": -1})  # the challenge is spent
    assert world.store.get_wallet(mykey, world.home_code).balance == 10_000


def _card_signature_attacks(world, payer):
    from tests.world import issue_test_card

    now = int(time.time())
    return {
        "forged signature (random bytes)": (lambda: dict(_payment(world, payer, 5000, sign=True), card=dict(
            _payment(world, payer, 5000, sign=True)["card"], signature=base64.b64encode(secrets.token_bytes(256)).decode())),
            "card_signature_invalid"),
        "signed for another amount": (lambda: _payment(world, payer, 5000, sign=True, message_overrides={"amount": 4000}),
                                      "card_signature_invalid"),
        "signed for another transfer": (lambda: _payment(world, payer, 5000, sign=True, message_overrides={
            "transfer_id": str(uuid.uuid4())}), "card_signature_invalid"),
        "signed for another terminal": (lambda: _payment(world, payer, 5000, sign=True, message_overrides={
            "terminal_id": world.facility.terminal_id}), "card_signature_invalid"),
        "signed for another municipality": (lambda: _payment(world, payer, 5000, sign=True, message_overrides={
            "municipality_code": world.other_code}), "card_signature_invalid"),
        "signed by another card": (lambda: _payment(world, payer, 5000, sign=True, signer=issue_test_card()),
                                   "card_signature_invalid"),
        "signature without signed_at": (lambda: {**(body := _payment(world, payer, 5000, sign=True)), "card": {
            key: value for key, value in body["card"].items() if key != "signed_at"}}, "card_signature_invalid"),
        "signed at another time than claimed": (lambda: _payment(world, payer, 5000, sign=True, message_overrides={
            "signed_at": now - 60}), "card_signature_invalid"),
        "old signature (601 s)": (lambda: _payment(world, payer, 5000, sign=True, signed_at=now - 601),
                                  "card_signature_expired"),
        "old signature (one day)": (lambda: _payment(world, payer, 5000, sign=True, signed_at=now - 86400),
                                    "card_signature_expired"),
        "no signature above the PIN-free limit": (lambda: _payment(world, payer, 5000), "card_signature_required"),
    }


def test_card_signature_attacks__refused_and_nothing_written(http, payer, table_snapshot, attack_log):
    world = http.world
    for attack, (build, code) in _card_signature_attacks(world, payer).items():
        body = build()
        refused(attack_log, table_snapshot, "card_signature", attack,
                lambda: http.terminal(world.shop, "POST", "/v1/payments", body), 401, code, TERMINAL)
    assert world.store.get_wallet(payer, world.home_code).balance == 20_000


def test_pin_lockout__three_wrong_pins_block_the_card_and_nothing_reaches_the_server(http, payer, table_snapshot,
                                                                                      attack_log, tmp_path):
    from cryptography.hazmat.primitives import serialization

    from terminal_client.jpki import JpkiCard, PinBlocked
    from terminal_client.outbox import Outbox
    from terminal_client.terminal import Terminal, TerminalConfig
    from tests.world import shared_ca
    from tools.virtual_jpki_card import JpkiCardModel

    world = http.world
    dev_card = world.cards[payer]
    model = JpkiCardModel(dev_card.private_key, dev_card.certificate_der,
                          shared_ca().certificate.public_bytes(serialization.Encoding.DER), "1234")

    class DirectReader:
        def transmit(self, command: bytes):
            response = model.process(command)
            return response[:-2], int.from_bytes(response[-2:], "big")

    class InProcessApi:
        """The terminal's API client, delivering to the app in process; it counts what reaches the server."""

        def __init__(self):
            self.requests = []

        def call(self, method, path, body=None, headers=None, signed=True):
            self.requests.append((method, path, body))
            response = http.terminal(world.shop, method, path, body)
            return response.status_code, response.json_body

        def call_with_retries(self, method, path, body):
            return self.call(method, path, body)

    @contextlib.contextmanager
    def open_card():
        yield JpkiCard(DirectReader())

    def terminal(api, pins):
        answers = iter(pins)
        config = TerminalConfig(world.shop.terminal_id, world.shop.private_key_base64, world.home_code,
                                {world.home_code: 3000})
        return Terminal(config, api, Outbox(tmp_path / "outbox.json"), open_card, lambda tries: next(answers))

    for name, pins in (("three wrong PINs", ("0000", "1111", "2222")), ("the right PIN after the lockout", ("1234",))):
        api = InProcessApi()
        before = table_snapshot()
        with pytest.raises(PinBlocked) as blocked:
            terminal(api, pins).pay(5000)
        changes = attacks.writes(before, table_snapshot())
        accepted = bool(api.requests) or bool(changes) or blocked.value is None
        attack_log.record("pin_lockout", name, accepted, f"requests={api.requests} changes={changes}")
        assert api.requests == [] and changes == []
    assert model.tries_left == 0
    assert Outbox(tmp_path / "outbox.json").entries() == {}
    # Control: the same terminal, API and a card with its PIN unblocked pay as usual.
    model.tries_left = 3
    api = InProcessApi()
    receipt = terminal(api, ("1234",)).pay(5000)
    assert receipt["status"] == "posted" and len(api.requests) == 1


# -- partners ---------------------------------------------------------------------------------------------------


class PartnerSetup:
    def __init__(self, http):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from chalicelib.api import dependencies

        self.http, self.world = http, http.world
        operator = http.sign_in("platform_operator", code="platform")
        self.ids, self.keys = {}, {}
        agreements = {"home_only": [self.world.home_code], "other_only": [self.world.other_code]}
        for name, municipalities in agreements.items():
            key = Ed25519PrivateKey.generate()
            public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)).decode()
            partner_id = f"atk{name.replace('_', '')}{uuid.uuid4().hex[:6]}"
            response = http.staff(operator, "PUT", f"/v1/platform/partners/{partner_id}", {
                "name": "攻撃テスト", "public_key": public, "result_queue": f"points-partner-results-{partner_id}",
                "agreement": {"municipalities": municipalities, "rate_numerator": 1, "rate_denominator": 1,
                              "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 500_000}})
            assert response.status_code == 200, response.body
            self.ids[name], self.keys[name] = partner_id, key
        self.mykey = self.world.add_card()
        self.store, self.identity = dependencies.get_ledger_store(), dependencies.get_identity_store()

    def message(self, partner: str, municipality_code: str) -> str:
        # A UUID with its hyphens: 32 bare hex digits hold an Individual Number (refused) once in about 800.
        return json.dumps({"version": 1, "partner_id": self.ids[partner], "partner_txn_id": f"atk-{uuid.uuid4()}",
                           "mykey_id": self.mykey, "municipality_code": municipality_code, "partner_points": 1000,
                           "campaign_code": None, "occurred_at": dt.datetime.now(JST).isoformat()})

    def deliver(self, body: str, key) -> dict:
        from chalicelib.services import conversions

        signature = base64.b64encode(key.sign(body.encode())).decode()
        return conversions.process_message(self.store, self.identity, body, signature, time.time, lambda: HASH_SECRET)[0]


def test_partner_attacks__no_agreement_or_another_partners_key__rejected_and_nothing_credited(http, table_snapshot,
                                                                                              attack_log):
    setup = PartnerSetup(http)
    world = http.world
    attempts = [
        ("partner without agreement for the municipality", setup.message("other_only", world.home_code),
         setup.keys["other_only"], "municipality_not_in_agreement", {"conversion_rejections": 1}),
        ("partner signing with another partner's key", setup.message("home_only", world.home_code),
         setup.keys["other_only"], "signature_invalid", {}),
        ("unknown partner", setup.message("home_only", world.home_code).replace(setup.ids["home_only"], "atk-nobody"),
         setup.keys["home_only"], "unknown_partner", {}),
    ]
    for name, body, key, reason, allow in attempts:
        before = table_snapshot()
        result = setup.deliver(body, key)
        changes = attacks.writes(before, table_snapshot(), allow)
        accepted = result["status"] != "rejected" or result["reason"] != reason or bool(changes)
        attack_log.record("partner", name, accepted, f"{result} {changes}")
        assert (result["status"], result["reason"], result["points"]) == ("rejected", reason, 0), result
        assert changes == [], changes
    for code in (world.home_code, world.other_code, "reserve"):
        assert world.store.get_wallet(setup.mykey, code).balance == 0
    # Control: the agreed partner with its own key is credited.
    assert setup.deliver(setup.message("home_only", world.home_code), setup.keys["home_only"])["status"] == "credited"


INQUIRIES = "/v1/partner/conversion-inquiries"


def _partner_headers(signer, method: str, path: str, body: bytes, *, key=None, partner_id=None, sign_method=None,
                     sign_path=None, sign_body=None, timestamp=None, nonce=None, prefix="POINTS-PARTNER-V1",
                     signature=None) -> dict:
    """A partner's signature headers (docs/CONTRACTS.md#partner-signature), with any part of them made wrong."""
    from chalicelib.auth.terminals import request_message

    own_id, own_key = signer
    timestamp, nonce = str(int(time.time()) if timestamp is None else timestamp), nonce or secrets.token_hex(16)
    made = (key or own_key).sign(request_message(sign_method or method, sign_path or path, timestamp, nonce,
                                                 body if sign_body is None else sign_body, prefix))
    return {"X-Partner-Id": partner_id or own_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
            "X-Signature": base64.b64encode(made).decode() if signature is None else signature,
            "Content-Type": "application/json"}


def _partner_signature_attacks(signer, other, month_path: str, body: bytes):
    """Each attack on the inquiry route: (headers options, the body sent), made when the request is sent."""
    now = lambda: int(time.time())  # noqa: E731
    return {
        "forged signature": lambda: dict(signature=base64.b64encode(secrets.token_bytes(64)).decode()),
        "missing signature": lambda: dict(signature=""),
        "expired timestamp (more than 300 s old)": lambda: dict(timestamp=now() - 302),
        "expired timestamp (one hour old)": lambda: dict(timestamp=now() - 3600),
        "timestamp more than 300 s ahead": lambda: dict(timestamp=now() + 302),
        "signed for another path (the statement)": lambda: dict(sign_path=month_path),
        "stage-prefixed path signed": lambda: dict(sign_path="/api" + INQUIRIES),
        "signed for another method (GET)": lambda: dict(sign_method="GET"),
        "signed for another body": lambda: dict(sign_body=json.dumps({"partner_txn_ids": ["other"]}).encode()),
        "signed for an empty body": lambda: dict(sign_body=b""),
        "signed as a point-management company (POINTS-OPERATOR-V1)": lambda: dict(prefix="POINTS-OPERATOR-V1"),
        "signed as a terminal (POINTS-TERMINAL-V1)": lambda: dict(prefix="POINTS-TERMINAL-V1"),
        "cross-partner: B's key with A's id": lambda: dict(key=other[1]),
        "unknown partner id": lambda: dict(partner_id="p-nobody"),
        "partner id over 64 characters": lambda: dict(partner_id="p" * 65),
        "malformed nonce": lambda: dict(nonce="zz" * 16),
    }


def test_partner_signature_attacks__refused_and_nothing_written(http, table_snapshot, attack_log):
    context = Context(http, OPERATIONS["inquireConversions"])
    signer, other = context.partner, context.register_partner()
    decisions = context.partner_decisions  # this partner's credits and refusals of today, that an attack would read
    body = json.dumps({"partner_txn_ids": decisions["txns"]}).encode()
    month_path = f"/v1/partner/statements/{decisions['day'][:7]}"
    for attack, options in _partner_signature_attacks(signer, other, month_path, body).items():
        refused(attack_log, table_snapshot, "partner_signature", attack,
                lambda: http.client.http.post(INQUIRIES, headers=_partner_headers(signer, "POST", INQUIRIES, body, **options()),
                                              body=body), 401, "partner_authentication_failed")
    refused(attack_log, table_snapshot, "partner_signature", "statement: B's key with A's id",
            lambda: http.client.http.get(month_path, headers=_partner_headers(signer, "GET", month_path, b"", key=other[1])),
            401, "partner_authentication_failed")
    # Control: the same request, signed as it should be, is answered.
    answered = http.client.http.post(INQUIRIES, headers=_partner_headers(signer, "POST", INQUIRIES, body), body=body)
    assert answered.status_code == 200, answered.body


def test_partner_signature_attack__replayed_request_and_nonce(http, table_snapshot, attack_log):
    context = Context(http, OPERATIONS["inquireConversions"])
    signer = context.partner
    body = json.dumps({"date": context.partner_decisions["day"], "cursor": None}).encode()
    headers = _partner_headers(signer, "POST", INQUIRIES, body)
    assert http.client.http.post(INQUIRIES, headers=headers, body=body).status_code == 200
    refused(attack_log, table_snapshot, "partner_signature", "replayed request (same headers and body)",
            lambda: http.client.http.post(INQUIRIES, headers=headers, body=body), 401, "partner_authentication_failed")
    other_body = json.dumps({"partner_txn_ids": context.partner_decisions["txns"]}).encode()
    for name, nonce in (("reused nonce on a new signed inquiry", headers["X-Nonce"]),
                        ("reused nonce in upper case", headers["X-Nonce"].upper())):
        refused(attack_log, table_snapshot, "partner_signature", name,
                lambda: http.client.http.post(INQUIRIES, headers=_partner_headers(signer, "POST", INQUIRIES, other_body,
                                                                                  nonce=nonce), body=other_body),
                401, "partner_authentication_failed")
    month_path = f"/v1/partner/statements/{context.partner_decisions['day'][:7]}"
    statement = _partner_headers(signer, "GET", month_path, b"")
    assert http.client.http.get(month_path, headers=statement).status_code == 200
    refused(attack_log, table_snapshot, "partner_signature", "statement: replayed request",
            lambda: http.client.http.get(month_path, headers=statement), 401, "partner_authentication_failed")


def test_partner_signature_attack__inactive_partner(http, table_snapshot, attack_log):
    context = Context(http, OPERATIONS["inquireConversions"])
    partner_id, _ = signer = context.partner
    day = context.partner_decisions["day"]
    stored = dict(http.world.store.get_partner(partner_id), active=False)
    http.world.store.put_partner(stored)
    body = json.dumps({"date": day, "cursor": None}).encode()
    refused(attack_log, table_snapshot, "partner_signature", "inactive partner's key: inquiry",
            lambda: http.client.http.post(INQUIRIES, headers=_partner_headers(signer, "POST", INQUIRIES, body), body=body),
            401, "partner_authentication_failed")
    month_path = f"/v1/partner/statements/{day[:7]}"
    refused(attack_log, table_snapshot, "partner_signature", "inactive partner's key: statement",
            lambda: http.client.http.get(month_path, headers=_partner_headers(signer, "GET", month_path, b"")),
            401, "partner_authentication_failed")


def test_partner_reads_another_partners_conversions__unknown_or_refused_and_only_the_nonce_written(
        http, table_snapshot, attack_log):
    """Partner B, signing as itself, asks for A's transactions and pages A's day with A's cursor."""
    context = Context(http, OPERATIONS["inquireConversions"])
    decisions = context.partner_decisions  # partner A's
    intruder = context.register_partner()
    body = json.dumps({"partner_txn_ids": decisions["txns"]}).encode()
    before = table_snapshot()
    response = http.client.http.post(INQUIRIES, headers=_partner_headers(intruder, "POST", INQUIRIES, body), body=body)
    changes = attacks.writes(before, table_snapshot(), TERMINAL)
    statuses = [line["status"] for line in response.json_body["conversions"]] if response.status_code == 200 else []
    accepted = response.status_code != 200 or set(statuses) != {"unknown"} or bool(changes)
    attack_log.record("partner_isolation", "partner B asks for A's transaction ids", accepted,
                      f"{response.status_code} {statuses} {changes}")
    assert response.status_code == 200, response.body
    assert response.json_body["partner_id"] == intruder[0] and statuses == ["unknown"] * len(decisions["txns"])
    assert changes == [], changes
    cursor_body = json.dumps({"date": decisions["day"], "cursor": decisions["cursor"]}).encode()
    refused(attack_log, table_snapshot, "partner_isolation", "partner B pages A's day with A's cursor",
            lambda: http.client.http.post(INQUIRIES, headers=_partner_headers(intruder, "POST", INQUIRIES, cursor_body),
                                          body=cursor_body), 400, "validation_failed", TERMINAL)


# -- the Individual Number, in every identifier and free-text field ------------------------------------------

# Secrets and binary payloads are never stored as text (hashed, verified, or parsed): not identifier fields.
NOT_TEXT_FIELDS = {"password", "current_password", "new_password", "poll_secret", "signature", "certificate",
                   "public_key", "content_base64", "content"}


def _valid_bodies(context: Context) -> dict:
    """For each operation with a body: (path values, terminal or session, a body that passes validation)."""
    from tests.world import STAFF_PASSWORD

    world = context.world
    mykey = context.mykey
    card = {"certificate": world.cards[mykey].certificate_base64}
    public_key = base64.b64encode(secrets.token_bytes(32)).decode()
    fresh = lambda: uuid.uuid4().hex[:8]  # noqa: E731
    return {
        "createPayment": lambda: ({}, {"transfer_id": str(uuid.uuid4()), "municipality_code": world.home_code,
                                       "amount": 10, "card": dict(card)}),
        "createRefund": lambda: ({"transfer_id": context.payment_id}, {"refund_id": str(uuid.uuid4()), "amount": 1}),
        "createBalanceInquiry": lambda: ({}, {"card": dict(card)}),
        "createFacilityLink": lambda: ({}, {"card": dict(card), "local_id": f"L-{fresh()}"}),
        "lookUpFacilityLink": lambda: ({}, {"card": dict(card)}),
        "removeFacilityLink": lambda: ({}, {"card": dict(card)}),
        "createTransferOut": lambda: ({}, context.transfer_out_body(world.shop, str(uuid.uuid4()), 10, mykey,
                                                                    world.home_code, GOOD_ACCOUNT, int(time.time()))),
        "confirmHold": lambda: ({"hold_id": context.hold_id}, {"destination_account": GOOD_ACCOUNT, "amount": 300}),
        "rejectHold": lambda: ({"hold_id": context.hold_id}, {"reason": "口座が見つかりません"}),
        "signIn": lambda: ({}, {"staff_id": context.staff_id("viewer"), "password": STAFF_PASSWORD,
                                "counter_terminal_id": "counter-1"}),
        "changeStaffPassword": lambda: ({}, {"current_password": STAFF_PASSWORD, "new_password": "another long password"}),
        "createGrant": lambda: ({"code": world.home_code}, {"grant_id": str(uuid.uuid4()), "mykey_id": mykey,
                                                            "amount": 10, "reason": "ボランティア", "expires_on": None}),
        "rejectRequest": lambda: ({"code": world.home_code, "approval_id": context.approval_id}, {"note": "重複"}),
        "uploadGrantBatch": lambda: ({"code": world.home_code}, {"file_name": "grants.csv",
                                                                 "content_base64": context.grant_csv}),
        "changeProgramme": lambda: ({"code": world.home_code}, {"point_name": "ながはまポイント",
                                                                "expiry_rule": {"kind": "fiscal_year_end"}}),
        "registerMerchant": lambda: ({"code": world.home_code}, {"merchant_id": f"m-{fresh()}", "name": "新しい商店",
                                                                 "kind": "shop"}),
        "registerTerminal": lambda: ({"code": world.home_code, "merchant_id": world.shop.merchant_id},
                                     {"terminal_id": f"t-{fresh()}", "public_key": public_key, "label": "レジ2"}),
        "createStaffAccount": lambda: ({"code": world.home_code}, {"staff_id": f"s-{fresh()}", "role": "viewer"}),
        "putTransferProgramme": lambda: ({"code": world.home_code, "programme_id": f"p-{fresh()}"},
                                         {"operator_id": context.operator[0], "name": "商店街カード",
                                          "account_pattern": "[0-9]{16}", "check_digit": "luhn"}),
        "createChallenge": lambda: ({}, {"purpose": "registration"}),
        "createRegistration": lambda: ({}, dict(context.http.card_response(context.unknown_card, "registration"),
                                                home_municipality_code=world.home_code, preferred_mykey_id=None)),
        "createPortalSignInRequest": lambda: ({}, {}),
        "answerPortalSignInWithCard": lambda: ({"code": context.portal["code"]}, context.portal_answer),
        "collectPortalSignInSession": lambda: ({"code": context.portal["code"]}, {"poll_secret": context.portal["poll_secret"]}),
        "residentSignIn": lambda: ({}, context.http.card_response(world.cards[mykey], "resident_sign_in")),
        "createReserveAllocation": lambda: ({}, {"allocation_id": str(uuid.uuid4()), "municipality_code": world.home_code,
                                                 "amount": 1}),
        "setResidentHomeMunicipality": lambda: ({}, {"municipality_code": world.other_code}),
        "suspendMykey": lambda: ({"mykey_id": mykey}, {"reason": "紛失の届出"}),
        "reinstateMykey": lambda: ({"mykey_id": mykey}, context.http.card_response(context.unknown_card, "reinstatement")),
        "importRevocationFeed": lambda: ({}, {"format": "csv", "content": "serial_number\n1f\n"}),
        "importRenewalFeed": lambda: ({}, {"content": "old_serial_number,new_serial_number\n1f,20\n",
                                           "new_issuer_sha256": None}),
        "putPartner": lambda: ({"partner_id": f"p-{fresh()}"}, {
            "name": "航空会社", "public_key": public_key, "result_queue": "points-partner-results",
            "agreement": {"municipalities": [world.home_code], "rate_numerator": 1, "rate_denominator": 1,
                          "rounding": "floor", "daily_cap_per_resident": 10, "monthly_cap_per_resident": 100,
                          "campaigns": [{"campaign_code": "winter", "rate_numerator": 2, "rate_denominator": 1,
                                         "starts_at": "2026-12-01T00:00:00+09:00", "ends_at": "2027-01-01T00:00:00+09:00",
                                         "target_municipality_code": world.home_code}]}}),
        "putOperator": lambda: ({"operator_id": f"o-{fresh()}"}, {"name": "ポイント管理会社", "public_key": public_key,
                                                                  "request_queue": "operator-requests"}),
        # by day; by transaction ids in FIELD_BODIES
        "inquireConversions": lambda: ({}, {"date": "2026-12-01", "cursor": None}),
    }


def _string_fields(schema: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths (as key tuples, '0' for a list item) of every string field a body schema declares."""
    schema = fuzz._merged(schema)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return [path for name, child in schema.get("properties", {}).items() for path in _string_fields(child, prefix + (name,))]
    if kind == "array":
        return _string_fields(schema.get("items", {}), prefix + ("0",))
    if "oneOf" in schema:
        return _string_fields(schema["oneOf"][0], prefix)
    if kind == "string":
        return [prefix]
    return []


def _put(body, path: tuple, value):
    """A copy of `body` with `value` at `path` (creating what is missing)."""
    body = json.loads(json.dumps(body))
    target = body
    for step, following in zip(path, path[1:]):
        key = int(step) if isinstance(target, list) else step
        if isinstance(target, list):
            target = target[key]
        else:
            target = target.setdefault(key, [{}] if following == "0" else {})
    last = path[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


def _credentials(operation):
    return {"terminal": ("terminal", "facility" if "FacilityLink" in operation.operation_id else "shop", None),
            "operator": ("operator", None), "partner": ("partner", None), "staff": ("staff", "right"),
            "resident": ("resident", "right"), "optional_staff": ("public", "none")}.get(operation.security, ("public", "none"))


def _allowance(operation) -> dict:
    # A signed request spends its nonce once the signature checks out, reads included (a partner's).
    return {"terminal": TERMINAL, "operator": TERMINAL, "partner": TERMINAL, "staff": STAFF,
            "resident": {"resident_sessions": "touch"}}.get(operation.security, {})


BODY_OPERATIONS = [operation for operation in fuzz.operations() if operation.body_schema is not None]

# Fields an Individual Number cannot be stored through, refused by another documented check that comes first.
OTHER_REFUSALS = {
    "challenge_id": ("challenge_invalid", "a challenge id is a UUID the platform issued"),
    "new_issuer_sha256": ("feed_invalid", "a CA fingerprint, looked up in the trust store"),
    ("confirmHold", "destination_account"): ("confirmation_mismatch", "compared with the hold's account, never stored"),
}
# The valid example for a field that excludes the example's own (an inquiry is by `date` or by `partner_txn_ids`,
# never both): with it, the field under attack is the only thing wrong with the request.
FIELD_BODIES = {("inquireConversions", "partner_txn_ids"): {"partner_txn_ids": ["fz-0001", "fz-0002"]}}


def _valid_example(valid: dict, operation, field_path: tuple = ()) -> tuple[dict, dict | None]:
    """(path values, body) of a valid request, for an attack on `field_path` of the body (or on none)."""
    if operation.body_schema is None:
        return {}, None
    path_values, body = valid[operation.operation_id]()
    return path_values, FIELD_BODIES.get((operation.operation_id, field_path[0] if field_path else None), body)
# Operations that accept and store an Individual Number: the defects, kept failing (strict xfail) for their
# owner. Empty since e4e3086, which checks every field of every JSON body; before it, this suite found
# putOperator.name, putPartner.name and .result_queue, putTransferProgramme.name and .account_pattern,
# rejectHold.reason and uploadGrantBatch.file_name accepted and stored.
INDIVIDUAL_NUMBER_DEFECTS: dict[str, str] = {}


def _expected_refusal(operation, field_path: tuple) -> str | None:
    """The documented code other than individual_number_forbidden that may refuse this field, if any."""
    schema = operation.body_schema
    for step in field_path:
        schema = fuzz._merged(schema)
        schema = schema.get("items", {}) if step == "0" else fuzz._merged(
            schema.get("oneOf", [schema])[0]).get("properties", {}).get(step, {})
    schema = fuzz._merged(schema)
    if "enum" in schema or schema.get("format") == "date-time":
        return "validation_failed"  # an enumerated word or a timestamp: nothing else is accepted
    other = OTHER_REFUSALS.get((operation.operation_id, field_path[-1])) or OTHER_REFUSALS.get(field_path[-1])
    return other[0] if other else None


IN_OPERATIONS = [operation for operation in fuzz.operations()
                 if operation.body_schema is not None or operation.path_parameters or operation.query_parameters]


def _in_params():
    for operation in IN_OPERATIONS:
        marks = []
        if operation.operation_id in INDIVIDUAL_NUMBER_DEFECTS:
            marks = [pytest.mark.xfail(strict=True, reason="defect: an Individual Number is accepted and stored: "
                                                           + INDIVIDUAL_NUMBER_DEFECTS[operation.operation_id])]
        yield pytest.param(operation, id=operation.operation_id, marks=marks)


@pytest.mark.parametrize("operation", list(_in_params()))
def test_individual_number__in_every_string_field_and_path_parameter__refused_and_nothing_written(
        http, table_snapshot, attack_log, operation):
    """Each string field of the body (secrets and binary payloads aside) and each path parameter in turn
    holds 123456789018; the rest of the request is valid, so nothing else refuses it first."""
    context = Context(http, operation)
    world = http.world
    valid = _valid_bodies(context)
    assert set(valid) == {operation.operation_id for operation in BODY_OPERATIONS}, "a new body: add its valid example"
    _warm_up(context, operation)  # credentials first, so that the snapshots compare the attacks alone
    realistic = {"code": context.portal["code"] if operation.path.startswith("/v1/portal/") else world.home_code,
                 "transfer_id": str(uuid.uuid4()), "hold_id": str(uuid.uuid4()), "approval_id": str(uuid.uuid4()),
                 "batch_id": str(uuid.uuid4()), "merchant_id": world.shop.merchant_id, "terminal_id": world.shop.terminal_id,
                 "staff_id": context.staff_id("viewer"), "mykey_id": context.mykey, "facility_id": world.facility.merchant_id,
                 "programme_id": "p-1", "operator_id": "o-1", "partner_id": "p-1", "month": "2026-11"}

    def request(path_values: dict, body, query: str = "") -> fuzz.Request:
        path = operation.path
        for name, _ in operation.path_parameters:
            path = path.replace("{" + name + "}", path_values.get(name) or realistic[name])
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        return fuzz.Request(operation.operation_id, operation.method, path, query, {"Content-Type": "application/json"},
                            raw, _credentials(operation))

    attempts = []
    for number in (INDIVIDUAL_NUMBER, GROUPED_INDIVIDUAL_NUMBER):
        form = "" if number == INDIVIDUAL_NUMBER else " (grouped)"
        if operation.body_schema is not None:
            for field_path in _string_fields(operation.body_schema):
                if field_path[-1] in NOT_TEXT_FIELDS:
                    continue
                path_values, body = _valid_example(valid, operation, field_path)
                attempts.append((f"{operation.operation_id}: {'.'.join(field_path)}{form}",
                                 request(path_values, _put(body, field_path, number)),
                                 _expected_refusal(operation, field_path)))
        # Path parameters and query values are refused before anything else, authentication included: no alternative.
        for parameter, _ in operation.path_parameters:
            path_values, body = _valid_example(valid, operation)
            attempts.append((f"{operation.operation_id}: path {{{parameter}}}{form}",
                             request(dict(path_values, **{parameter: number}), body), None))
        for parameter, _ in operation.query_parameters:
            path_values, body = _valid_example(valid, operation)
            attempts.append((f"{operation.operation_id}: query {parameter}{form}",
                             request(path_values, body, f"{parameter}={number}"), None))
    _attempt_individual_numbers(attack_log, table_snapshot, context, operation, attempts)


# An Individual Number written inside the text, in each form people write it (issue 15, item 7).
IN_TEXT_FORMS = {
    "in text": "個人番号 123456789018 の方",
    "spaces": "番号 1234 5678 9018 の件",
    "hyphens": "番号 1234-5678-9018 の件",
    "full-width digits": "番号１２３４５６７８９０１８の件",
    "full-width digits, hyphen and space mixed": "番号 1234－５６７８　９０１８",
    "dots": "1234.5678.9018 の件",
    "ー typed for hyphens": "1234ー5678ー9018 の件",
}


def _free_text_paths(operation) -> list[tuple]:
    from chalicelib.api.http import FREE_TEXT_FIELDS

    return [path for path in _string_fields(operation.body_schema) if path[-1] in FREE_TEXT_FIELDS]


FREE_TEXT_OPERATIONS = [operation for operation in BODY_OPERATIONS if _free_text_paths(operation)]


def test_individual_number_in_text__attack_below__covers_every_declared_free_text_field():
    from chalicelib.api.http import FREE_TEXT_FIELDS

    covered = {path[-1] for operation in FREE_TEXT_OPERATIONS for path in _free_text_paths(operation)}
    assert covered == FREE_TEXT_FIELDS
    assert len(FREE_TEXT_OPERATIONS) >= 11  # grant, approval note, upload, programme, merchant, terminal, ...


@pytest.mark.parametrize("operation", FREE_TEXT_OPERATIONS, ids=lambda operation: operation.operation_id)
def test_individual_number__written_inside_every_free_text_field__refused_and_nothing_written(
        http, table_snapshot, attack_log, operation):
    """Each free-text field of the body in turn holds the number inside a sentence, in every form; the rest
    of the request is valid. Every attempt must be refused with individual_number_forbidden."""
    context = Context(http, operation)
    valid = _valid_bodies(context)
    _warm_up(context, operation)
    attempts = []
    for field_path in _free_text_paths(operation):
        for form, text in IN_TEXT_FORMS.items():
            path_values, body = _valid_example(valid, operation, field_path)
            path = operation.path
            for name, _ in operation.path_parameters:
                path = path.replace("{" + name + "}", path_values[name])
            raw = json.dumps(_put(body, field_path, text), ensure_ascii=False).encode()
            attempts.append((f"{operation.operation_id}: {'.'.join(field_path)} ({form})",
                             fuzz.Request(operation.operation_id, operation.method, path, "",
                                          {"Content-Type": "application/json"}, raw, _credentials(operation)), None))
    _attempt_individual_numbers(attack_log, table_snapshot, context, operation, attempts)


def _warm_up(context, operation) -> None:
    {"staff": context.right_staff_token, "resident": lambda: context.resident_token,
     "operator": lambda: context.operator, "partner": lambda: context.partner}.get(operation.security, lambda: None)()


def _attempt_individual_numbers(log, snapshot, context, operation, attempts):
    """Send every attempt, then compare every table once: nothing but nonces and session activity may change.
    Should something be written, it is laid to the attempts that were answered with success."""
    before = snapshot()
    answers = []
    for name, request, alternative in attempts:
        response = send(context, request)
        code = json.loads(response.body).get("error", {}).get("code") if response.body[:1] == b"{" else None
        answers.append((name, response.status_code, code, alternative))
    allowance = {table: (rule * len(attempts) if isinstance(rule, int) else rule)
                 for table, rule in _allowance(operation).items()}
    changes = attacks.writes(before, snapshot(), allowance)
    succeeded = [status < 400 for _, status, _, _ in answers]
    failures = []
    for (name, status, code, alternative), success in zip(answers, succeeded):
        refused_otherwise = code == alternative and status >= 400
        wrote = bool(changes) and (success or not any(succeeded))
        accepted = wrote or (code != "individual_number_forbidden" and not refused_otherwise)
        log.record("individual_number", name, accepted, f"{status} {code} {changes if wrote else ''}",
                   refused_otherwise=refused_otherwise and not wrote)
        if accepted:
            failures.append(f"{name} -> {status} {code}")
    assert failures == [] and changes == [], "\n".join(failures) + f"\nwritten: {changes}"


# -- sizes and shapes -------------------------------------------------------------------------------------------


def test_oversized_bodies_and_deep_nesting__refused_and_nothing_written(http, payer, table_snapshot, attack_log):
    world = http.world
    staff = http.sign_in("approver")
    platform = http.sign_in("platform_operator", "platform")
    oversized = b'{"transfer_id":"' + b"a" * 70_000 + b'"}'
    nested: object = {"card": {"certificate": world.cards[payer].certificate_base64}}
    for _ in range(30):
        nested = {"a": nested}
    deep = json.dumps(dict(nested, transfer_id=str(uuid.uuid4()))).encode()
    deep_list = b'{"reason":' + b"[" * 5000 + b"]" * 5000 + b"}"
    grants = f"/v1/municipalities/{world.home_code}/grants"
    cases = [
        ("payment body over 64 KiB", lambda: http.terminal(world.shop, "POST", "/v1/payments", oversized),
         413, "request_too_large", {}),
        ("grant body over 64 KiB", lambda: http.staff(staff, "POST", grants, {"reason": "x" * 70_000}),
         413, "request_too_large", STAFF),
        ("challenge body over 64 KiB", lambda: http.post("/v1/challenges", {"purpose": "a" * 70_000}),
         413, "request_too_large", {}),
        ("revocation feed over 5 MiB", lambda: http.staff(platform, "POST",
                                                          "/v1/platform/revocation-feeds",
                                                          {"format": "csv", "content": "1\n" * (2_700_000)}),
         413, "request_too_large", {"staff_sessions": "touch"}),
        ("payment nested 30 deep", lambda: http.terminal(world.shop, "POST", "/v1/payments", deep),
         400, "validation_failed", TERMINAL),
        ("grant with a 5000-deep list", lambda: http.client.http.post(grants, headers={
            "Authorization": f"Bearer {staff}", "Content-Type": "application/json"}, body=deep_list),
         400, "validation_failed", STAFF),
        ("registration nested 30 deep", lambda: http.post("/v1/registrations", nested), 400, "validation_failed", {}),
    ]
    for name, call, status, code, allow in cases:
        refused(attack_log, table_snapshot, "size_and_shape", name, call, status, code, allow)
