"""Property-based fuzzing of every HTTP operation of docs/openapi.yaml, in process, on DynamoDB Local.

The operations come from the document itself (a route added to it is fuzzed without touching this file).
For each one Hypothesis sends requests made from the operation's schemas: valid-shaped bodies with
realistic values of a small world (its municipalities, cards, payments, staff, operators, challenges),
mutated bodies (a field missing or added, wrong types, huge and negative numbers, floats, NaN, nulls,
unicode, lone surrogates as JSON escapes, 12-digit Individual-Number-like strings, very long strings,
deep nesting), raw bodies that are not JSON, hostile path parameters ('../', unicode, very long,
empty), query strings and headers. Terminal, operator and partner requests are signed correctly most of
the time so that the body is reached (a partner's inquiries ask for its own decisions of the day, by day,
cursor or transaction id), and staff and resident routes get a valid session of the right municipality
most of the time; the rest of the time one credential is wrong.

Every response must satisfy `reliability.fuzz.response_problems`: status < 500, no stack trace or
exception class name in the body, and every refusal in the error shape of docs/CONTRACTS.md#errors with a code of the
`ErrorCode` enum that the document lists for that operation and status (the framework's own 415, and
its 403/404 for a path that no longer matches the route, excepted as documented). The figures of the
run go to `reliability/results/fuzz.json` (`http` part). `FUZZ_EXAMPLES` (default 10 per operation)
and `FUZZ_SEED` make longer or random runs: `python -m reliability.fuzz --examples 200`.

What the fuzzing found is kept in `FINDINGS`, each with its failing requests: a fixed finding's requests
must answer a documented refusal for ever; an open one's trigger is counted but not failed in the fuzz
tests, and its reproduction is a strict xfail, so that fixing it turns the run red until `open=False`.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import re
import secrets
import time
import urllib.parse
import uuid

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from reliability import fuzz
from tests.fakes import FakeSqs
from tests.world import STAFF_PASSWORD

pytestmark = pytest.mark.integration

OPERATIONS = fuzz.operations()
GOOD_ACCOUNT = "4539578763621486"  # passes Luhn
JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture(scope="module")
def tally():
    figures = fuzz.Tally()
    yield figures
    if figures.cases:
        fuzz.write_results("http", dict(figures.summary(), documented_operations=len(OPERATIONS),
                                        findings=figures.reproduced))


@functools.lru_cache(maxsize=1)
def _card_pool() -> tuple:
    """Cards issued once for the module (RSA key generation is the slow part), registered anew in each world."""
    from tests.world import issue_test_card

    return tuple(issue_test_card() for _ in range(4))


def _register(world, card, status: str = "active") -> str:
    """What `World.add_card` does, with a card from the pool instead of a newly generated one."""
    from chalicelib.services import onboarding
    from tests.world import random_mykey_id

    mykey = random_mykey_id(world.rng)
    verified = world.authority.verify_certificate(card.certificate_der, world.now)
    onboarding.register_card(world.store, verified.certificate_key, mykey, world.home_code, "2026-11-01T00:00:00Z")
    if status != "active":
        world.store.set_card_status(verified.certificate_key, status)
    world.cards[mykey], world.card_keys[mykey] = card, verified.certificate_key
    return mykey


class Context:
    """The world a fuzzed operation runs in; everything is built on first use, only if the operation needs it."""

    def __init__(self, http, operation: fuzz.Operation):
        from chalicelib.api import dependencies

        self.http, self.world, self.operation = http, http.world, operation
        self.sqs = FakeSqs()
        dependencies.override(sqs_client=self.sqs)

    # -- cards and money --------------------------------------------------------------------------------

    @functools.cached_property
    def mykey(self) -> str:
        mykey = _register(self.world, _card_pool()[0])
        self.world.grant(mykey, 50_000)
        return mykey

    @functools.cached_property
    def status_mykeys(self) -> dict[str, str]:
        return {status: _register(self.world, card, status)
                for card, status in zip(_card_pool()[1:], ("suspended", "revoked", "superseded"))}

    @functools.cached_property
    def unknown_card(self):
        from tests.world import issue_test_card

        return issue_test_card()

    def card_mykeys(self) -> list[str]:
        return [self.mykey, self.mykey, self.mykey, *self.status_mykeys.values()]

    def certificates(self):
        return st.one_of(
            st.sampled_from([self.world.cards[mykey].certificate_base64 for mykey in self.card_mykeys()]),
            st.just(self.unknown_card.certificate_base64),
            st.sampled_from(["", "AA==", base64.b64encode(b"\x30\x03\x02\x01\x01").decode(), "***", "QUJD"]),
        )

    @functools.cached_property
    def payment_id(self) -> str:
        return self.world.pay(self.mykey, 300).transfer_id

    # -- staff --------------------------------------------------------------------------------------------

    @functools.cache
    def token(self, role: str, code: str | None = None) -> str:
        """A session of that staff member; a made-up token once the fuzzing disabled the account."""
        from tests.world import STAFF_PASSWORD

        response = self.http.post("/v1/staff/sessions", {"staff_id": self.staff_id(role, code), "password": STAFF_PASSWORD})
        return response.json_body["token"] if response.status_code == 201 else f"disabled-{role}"

    @functools.cache
    def spent_nonce(self, signer: str) -> str:
        """A nonce this signer has already used, for replays that fail the same way every time."""
        nonce = "0" * 32
        if signer == "operator":
            operator_id, key = self.operator
            request = fuzz.Request("spend", "POST", f"/v1/operator/holds/{uuid.uuid4()}/rejection", body=b'{"reason":"x"}')
            headers = _signed_headers(key, "X-Operator-Id", operator_id, "POINTS-OPERATOR-V1", request, None, key, nonce)
        elif signer == "partner":
            partner_id, key = self.partner
            request = fuzz.Request("spend", "GET", "/v1/partner/statements/2026-11")
            headers = _signed_headers(key, "X-Partner-Id", partner_id, "POINTS-PARTNER-V1", request, None, key, nonce)
        else:
            keys = getattr(self.world, signer)
            request = fuzz.Request("spend", "GET", f"/v1/payments/{uuid.uuid4()}")
            headers = _signed_headers(keys.private_key, "X-Terminal-Id", keys.terminal_id, "POINTS-TERMINAL-V1", request,
                                      None, keys.private_key, nonce)
        self.http.client.http.request(request.method, request.path, headers=headers, body=request.body)
        return nonce

    def staff_id(self, role: str, code: str | None = None) -> str:
        return f"{role}-{code or self.world.home_code}-{self.world.staff_suffix}"

    def right_staff_token(self) -> str:
        if self.operation.path.startswith("/v1/platform/"):
            return self.token("platform_operator", "platform")
        return self.token("approver")

    # -- residents, challenges, the portal ----------------------------------------------------------------

    @functools.cached_property
    def resident_token(self) -> str:
        """The resident's session; a made-up token once the fuzzing suspended their MyKey ID."""
        answer = self.http.card_response(self.world.cards[self.mykey], "resident_sign_in")
        response = self.http.post("/v1/resident-sessions", answer)
        return response.json_body["token"] if response.status_code == 201 else "suspended-resident"

    @functools.cache
    def challenge_answers(self, purpose: str, card_name: str) -> list[dict]:
        card = self.unknown_card if card_name == "unknown" else self.world.cards[self.mykey]
        return [self.http.card_response(card, purpose) for _ in range(3)]

    @functools.cached_property
    def portal(self) -> dict:
        started = self.http.post("/v1/portal/sign-in-requests", {})
        assert started.status_code == 201, started.body
        return started.json_body

    @functools.cached_property
    def portal_answer(self) -> dict:
        from chalicelib.services.identity import challenge_message

        code = self.portal["code"]
        challenge = self.http.client.http.get(f"/v1/portal/sign-in-requests/{code}").json_body["challenge"]
        card = self.world.cards[self.mykey]
        signature = card.sign(challenge_message("portal_sign_in", code, challenge))
        return {"card": {"certificate": card.certificate_base64, "signature": base64.b64encode(signature).decode()}}

    # -- transfer-outs --------------------------------------------------------------------------------------

    @functools.cached_property
    def operator(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                serialization.PublicFormat.Raw)).decode()
        operator_id = f"op-{uuid.uuid4().hex[:8]}"
        response = self.http.staff(self.token("platform_operator", "platform"), "PUT", f"/v1/platform/operators/{operator_id}",
                                   {"name": "長浜ポイント管理", "public_key": public, "request_queue": f"{operator_id}-requests"})
        assert response.status_code == 200, response.body
        return operator_id, key

    # -- partners ---------------------------------------------------------------------------------------------

    def register_partner(self):
        """A partner onboarded by the platform operator: (partner_id, private key)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                serialization.PublicFormat.Raw)).decode()
        partner_id = f"fz{uuid.uuid4().hex[:10]}"
        response = self.http.staff(self.token("platform_operator", "platform"), "PUT", f"/v1/platform/partners/{partner_id}", {
            "name": "ファズ航空", "public_keys": [public], "result_queue": f"points-partner-results-{partner_id}",
            "agreement": {"municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
                          "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 500_000, "campaigns": []}})
        assert response.status_code == 200, response.body
        return partner_id, key

    @functools.cached_property
    def partner(self):
        return self.register_partner()

    @functools.cached_property
    def partner_decisions(self) -> dict:
        """Today's decisions for the partner to read back: two credits (home and reserve), a refusal, a refusal
        whose transaction id held an Individual Number (kept without it), and another partner's credit; with
        the transaction ids an inquiry may ask for (`txns`; the one holding an Individual Number, which an
        inquiry may not name, apart) and a real cursor into the day."""
        from chalicelib.api import dependencies
        from chalicelib.domain.time import japan_date
        from chalicelib.services import conversions, partner_reconciliation

        now = time.time()
        store = dependencies.get_ledger_store()

        def decide(signer, txn: str, mykey_id: str, municipality_code: str | None) -> dict:
            partner_id, key = signer
            body = json.dumps({"version": 1, "partner_id": partner_id, "partner_txn_id": txn, "mykey_id": mykey_id,
                               "municipality_code": municipality_code, "partner_points": 1000, "campaign_code": None,
                               "occurred_at": dt.datetime.fromtimestamp(now, JST).isoformat()}, ensure_ascii=False)
            signature = base64.b64encode(key.sign(body.encode())).decode()
            return conversions.process_message(store, dependencies.get_identity_store(), body, signature, lambda: now,
                                               dependencies.get_hash_secret())[0]

        suffix = uuid.uuid4().hex[:8]
        txns = {"home": f"fz-home-{suffix}", "reserve": f"fz-reserve-{suffix}", "refused": f"fz-refused-{suffix}",
                "individual_number": f"fz {fuzz.INDIVIDUAL_NUMBER}", "theirs": f"fz-theirs-{suffix}"}
        outcomes = [decide(self.partner, txns["home"], self.mykey, self.world.home_code),
                    decide(self.partner, txns["reserve"], self.mykey, None),
                    decide(self.partner, txns["refused"], "ZZZZ2345", None),
                    decide(self.partner, txns["individual_number"], self.mykey, None),
                    decide(self.register_partner(), txns["theirs"], self.mykey, self.world.home_code)]
        assert [outcome["status"] for outcome in outcomes] == ["credited", "credited", "rejected", "rejected", "credited"]
        day = japan_date(now).isoformat()
        first = partner_reconciliation.conversions_of_day(store, dependencies.get_hash_secret(), self.partner[0], day,
                                                          None, limit=1)
        assert first["cursor"], first
        return {"day": day, "cursor": first["cursor"], "individual_number_txn": txns.pop("individual_number"),
                "txns": list(txns.values())}

    @functools.cached_property
    def programme_id(self) -> str:
        programme_id = f"card-{uuid.uuid4().hex[:8]}"
        response = self.http.staff(self.token("approver"), "PUT",
                                   f"/v1/municipalities/{self.world.home_code}/transfer-programmes/{programme_id}",
                                   {"operator_id": self.operator[0], "name": "黒壁商店街カード", "account_pattern": "[0-9]{16}",
                                    "check_digit": "luhn", "hold_seconds": 600})
        assert response.status_code == 200, response.body
        return programme_id

    def transfer_out_body(self, keys, transfer_id: str, amount: int, mykey: str, code: str, account: str,
                          signed_at: int) -> dict:
        from chalicelib.services.transfer_outs import transfer_out_message

        card = self.world.cards[mykey]
        message = transfer_out_message(transfer_id, keys.terminal_id, code, amount, self.programme_id, account, signed_at)
        return {"transfer_id": transfer_id, "municipality_code": code, "amount": amount, "programme_id": self.programme_id,
                "destination_account": account,
                "card": {"certificate": card.certificate_base64, "signature": base64.b64encode(card.sign(message)).decode(),
                         "signed_at": signed_at}}

    @functools.cached_property
    def hold_id(self) -> str:
        body = self.transfer_out_body(self.world.shop, str(uuid.uuid4()), 300, self.mykey, self.world.home_code,
                                      GOOD_ACCOUNT, int(time.time()))
        response = self.http.terminal(self.world.shop, "POST", "/v1/transfer-outs", body)
        assert response.status_code == 201, response.body
        return response.json_body["hold_id"]

    # -- approvals and bulk grants ---------------------------------------------------------------------------

    @functools.cached_property
    def approval_id(self) -> str:
        code = self.world.home_code
        changed = self.http.staff(self.token("approver"), "PATCH", f"/v1/municipalities/{code}/programme",
                                  {"approval_threshold": 1000})
        assert changed.status_code == 200, changed.body
        grant_id = str(uuid.uuid4())
        response = self.http.staff(self.token("operator"), "POST", f"/v1/municipalities/{code}/grants",
                                   {"grant_id": grant_id, "mykey_id": self.mykey, "amount": 5000, "reason": "ファズ"})
        assert response.status_code == 202, response.body
        return grant_id

    @functools.cached_property
    def grant_csv(self) -> str:
        text = f"申請番号,マイキーID,ポイント,付与理由\r\nF-1,{self.mykey},100,ファズ\r\nF-2,{self.mykey},200,ファズ\r\n"
        return base64.b64encode(text.encode("utf-8")).decode()

    @functools.cached_property
    def batch_id(self) -> str:
        response = self.http.staff(self.token("operator"), "POST", f"/v1/municipalities/{self.world.home_code}/grant-batches",
                                   {"file_name": "fuzz.csv", "content_base64": self.grant_csv})
        assert response.status_code in (200, 201), response.body
        return response.json_body["batch_id"]

    # -- realistic values, by field name ---------------------------------------------------------------------

    def hints(self) -> "Hints":
        plain = st.from_regex(r"[a-z][a-z0-9-]{2,12}", fullmatch=True)
        public_keys = st.binary(min_size=32, max_size=32).map(lambda raw: base64.b64encode(raw).decode())
        codes = st.sampled_from([self.world.home_code, self.world.home_code, self.world.other_code, "131016", "252034"])
        uuids = fuzz.weighted((3, fuzz.fresh_uuids()), (1, st.uuids().map(str)))
        now = int(time.time())

        def mykeys():
            return st.sampled_from(self.card_mykeys())

        def feed_csv(header: str):
            serials = st.one_of(st.integers(1, 2**160).map(lambda n: format(n, "x")), fuzz.nasty_values().map(str))
            return st.lists(serials, max_size=3).map(lambda rows: header + "\n" + "\n".join(rows) + "\n")

        return Hints({
            "transfer_id": lambda: st.one_of(uuids, st.just(self.payment_id)),
            "refund_id": lambda: uuids, "grant_id": lambda: uuids, "allocation_id": lambda: uuids,
            "challenge_id": lambda: uuids,
            "municipality_code": lambda: codes, "home_municipality_code": lambda: codes,
            "target_municipality_code": lambda: codes,
            "municipalities": lambda: st.lists(st.one_of(codes, st.just("*")), min_size=1, max_size=3),
            "mykey_id": mykeys, "preferred_mykey_id": lambda: st.one_of(mykeys(), st.just("FUZZ2345")),
            "certificate": self.certificates,
            "signature": lambda: st.binary(min_size=0, max_size=256).map(lambda raw: base64.b64encode(raw).decode()),
            "signed_at": lambda: st.integers(now - 900, now + 400),
            "amount": lambda: st.sampled_from([1, 10, 299, 300, 301, 3000, 3001, 50_000, 100_000]),
            "programme_id": lambda: st.just(self.programme_id),
            "operator_id": lambda: st.just(self.operator[0]),
            "destination_account": lambda: st.sampled_from([GOOD_ACCOUNT, "4539578763621487", "0" * 16]),
            "local_id": lambda: plain,
            "staff_id": lambda: st.sampled_from([self.staff_id("viewer"), self.staff_id("approver"), "nobody-1"]),
            "password": lambda: st.just(STAFF_PASSWORD),
            "current_password": lambda: st.just("not the password"),
            "poll_secret": lambda: st.just(self.portal["poll_secret"]),
            "public_key": lambda: public_keys,
            "public_keys": lambda: st.lists(public_keys, min_size=1, max_size=3),
            "result_queue": lambda: st.sampled_from(["points-partner-results-fuzz-partner", "partner-results"]),
            "agreement": lambda: st.builds(
                lambda code, cap: {"municipalities": [code], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
                                   "daily_cap_per_resident": cap, "monthly_cap_per_resident": cap * 10, "campaigns": []},
                codes, st.sampled_from([1, 1000])),
            "content_base64": lambda: st.just(self.grant_csv) if self.operation.operation_id == "uploadGrantBatch" else st.nothing(),
            "content": lambda: (feed_csv("old_serial_number,new_serial_number")
                                if self.operation.operation_id == "importRenewalFeed" else feed_csv("serial_number")),
            "merchant_id": lambda: st.one_of(st.just(self.world.shop.merchant_id), plain),
            "terminal_id": lambda: st.one_of(st.just(self.world.shop.terminal_id), plain),
            "expires_on": lambda: st.dates().map(lambda day: day.isoformat()),
            "account_pattern": lambda: st.sampled_from(["[0-9]{16}", "[0-9]+", "(", "[", ".*", "\\d{4}-\\d{4}"]),
            # the partner's inquiries: its day (and the days around it), a real cursor, its transaction ids
            "date": lambda: st.sampled_from(self.partner_days()),
            "cursor": lambda: st.sampled_from([self.partner_decisions["cursor"],
                                               self.partner_decisions["cursor"][:-2] + "AA"]),  # tampered with
            "partner_txn_ids": lambda: st.lists(st.sampled_from(self.partner_txn_ids()), min_size=1, max_size=6),
        })

    def partner_txn_ids(self) -> list[str]:
        decisions = self.partner_decisions
        return [*decisions["txns"], *decisions["txns"], decisions["individual_number_txn"], "fz-never-sent"]

    def partner_days(self) -> list[str]:
        day = dt.date.fromisoformat(self.partner_decisions["day"])
        return [day.isoformat(), day.isoformat(), (day - dt.timedelta(days=1)).isoformat(), "2026-12-01"]

    def path_hint(self, name: str):
        world = self.world
        options = {
            "transfer_id": lambda: st.just(self.payment_id),
            "hold_id": lambda: st.just(self.hold_id),
            "approval_id": lambda: st.just(self.approval_id),
            "batch_id": lambda: st.just(self.batch_id),
            "merchant_id": lambda: st.sampled_from([world.shop.merchant_id, world.other_shop.merchant_id]),
            "terminal_id": lambda: st.sampled_from([world.shop.terminal_id, world.other_shop.terminal_id]),
            "staff_id": lambda: st.sampled_from([self.staff_id("viewer"), self.staff_id("viewer", world.other_code)]),
            "mykey_id": lambda: st.sampled_from(self.card_mykeys()),
            "facility_id": lambda: st.just(world.facility.merchant_id),
            "programme_id": lambda: st.one_of(st.just(self.programme_id), st.just(f"new-{uuid.uuid4().hex[:6]}")),
            "operator_id": lambda: st.just(self.operator[0]),
            "partner_id": lambda: st.just("fuzz-partner"),
            "month": lambda: st.sampled_from(["2026-11", "2026-01", "2025-12", *self.current_month()]),
        }
        if name == "code":
            if self.operation.path.startswith("/v1/portal/"):
                return st.just(self.portal["code"])
            return st.sampled_from([world.home_code, world.home_code, world.home_code, world.other_code, "131016"])
        return options[name]() if name in options else None

    def current_month(self) -> list[str]:
        """This Japan month, where the partner's statement has lines (only for the partner's own operations)."""
        if self.operation.security != "partner":
            return []
        return [self.partner_decisions["day"][:7]]

    # -- bodies that need a signature over their content ---------------------------------------------------

    def seeds(self, draw, keys) -> dict | None:
        """A fully valid body for operations whose validity needs a card signature over its content."""
        from terminal_client.signing import payment_message

        world, operation_id = self.world, self.operation.operation_id
        if operation_id == "createPayment":
            mykey = draw(st.sampled_from(self.card_mykeys()))
            transfer_id = draw(fuzz.weighted((4, fuzz.fresh_uuids()), (1, st.just(self.payment_id))))
            code = draw(st.sampled_from([world.home_code, world.home_code, world.other_code]))
            amount = draw(st.sampled_from([1, 10, 300, 3000, 3001, 5000, 49_000, 60_000]))
            body = {"transfer_id": transfer_id, "municipality_code": code, "amount": amount,
                    "card": {"certificate": world.cards[mykey].certificate_base64}}
            if amount > 3000 or draw(st.booleans()):
                signed_at = int(time.time()) - draw(st.sampled_from([0, 5, 599, 601, -299, -301]))
                signature = world.cards[mykey].sign(payment_message(transfer_id, keys.terminal_id, code, amount, signed_at))
                body["card"].update(signature=base64.b64encode(signature).decode(), signed_at=signed_at)
            return body
        if operation_id == "createTransferOut":
            return self.transfer_out_body(
                keys, draw(fuzz.fresh_uuids()), draw(st.sampled_from([1, 300, 3001, 60_000])),
                draw(st.sampled_from(self.card_mykeys())), draw(st.sampled_from([world.home_code, world.other_code])),
                draw(st.sampled_from([GOOD_ACCOUNT, "4539578763621487"])), int(time.time()) - draw(st.sampled_from([0, 700])))
        if operation_id == "confirmHold":
            return {"destination_account": draw(st.sampled_from([GOOD_ACCOUNT, "4539578763621487"])),
                    "amount": draw(st.sampled_from([300, 299]))}
        if operation_id == "createRegistration":
            answer = draw(st.sampled_from(self.challenge_answers("registration", draw(st.sampled_from(["unknown", "known"])))))
            return dict(answer, home_municipality_code=world.home_code)
        if operation_id == "residentSignIn":
            return draw(st.sampled_from(self.challenge_answers("resident_sign_in", "known")))
        if operation_id == "reinstateMykey":
            return draw(st.sampled_from(self.challenge_answers("reinstatement", "unknown")))
        if operation_id == "inquireConversions":
            decisions = self.partner_decisions
            if draw(st.booleans()):
                return {"partner_txn_ids": draw(st.lists(st.sampled_from(self.partner_txn_ids()), min_size=1, max_size=6))}
            # the first page, the next one, and the cursor given for another day
            return {"date": draw(st.sampled_from(self.partner_days())),
                    "cursor": draw(st.sampled_from([None, None, decisions["cursor"]]))}
        return None


class Hints(dict):
    """Realistic values by field name, each built only when a schema asks for it."""

    def __init__(self, builders: dict):
        super().__init__()
        self._builders = builders

    def __contains__(self, name) -> bool:
        return name in self._builders

    def __getitem__(self, name):
        if not dict.__contains__(self, name):
            dict.__setitem__(self, name, self._builders[name]())
        return dict.__getitem__(self, name)


# -- requests ----------------------------------------------------------------------------------------------

TERMINAL_FAULTS = (None,) * 60 + ("bad_signature", "no_signature", "stale", "future", "bad_nonce", "reused_nonce",
                                  "unknown_id", "long_id", "other_key", "wrong_path", "no_timestamp")
STAFF_CREDENTIALS = ("right",) * 50 + ("viewer", "operator", "other_municipality", "platform", "resident", "garbage",
                                       "none", "basic", "empty_bearer")
CONTENT_TYPES = ("application/json",) * 45 + (None, "application/json; charset=utf-8", "text/plain",
                                               "application/x-www-form-urlencoded", "APPLICATION/JSON")


def request_strategy(operation: fuzz.Operation, context: Context):
    hints = context.hints()
    bodies = {}
    if operation.body_schema is not None:
        schema_bodies = fuzz.from_schema(operation.body_schema, hints)
        for keys_name in ("shop", "facility", "other_shop"):
            valid = schema_bodies
            if operation.operation_id == "answerPortalSignInWithCard":
                valid = fuzz.weighted((2, st.builds(lambda: context.portal_answer)), (1, schema_bodies))
            elif operation.operation_id in SEEDED:
                keys = getattr(context.world, keys_name)
                seeded = st.composite(lambda inner_draw, keys=keys: context.seeds(inner_draw, keys))()
                valid = fuzz.weighted((2, seeded), (1, schema_bodies))
            bodies[keys_name] = fuzz.body_bytes(valid)

    @st.composite
    def build(draw):
        path = operation.path
        for name, schema in operation.path_parameters:
            value = str(draw(fuzz.path_values(schema, context.path_hint(name))))
            path = path.replace("{" + name + "}", fuzz.encode_path_value(value, draw(st.integers(0, 7)) == 0), 1)
        pairs = []
        for name, schema in operation.query_parameters:
            if draw(st.booleans()):
                value = draw(st.one_of(fuzz.from_schema(schema), fuzz.nasty_values()))
                pairs.append((name, value if isinstance(value, str) else json.dumps(value)))
        if draw(st.integers(0, 19)) == 0:
            pairs.append((draw(st.sampled_from(["format", "x", "limit", "__proto__", "code"])), draw(st.text(max_size=10))))
        query = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote, encoding="utf-8", errors="surrogatepass")

        if operation.security == "terminal":
            keys_name = draw(st.sampled_from(["shop", "shop", "shop", "facility", "other_shop"]))
            if operation.operation_id.startswith(("createFacilityLink", "lookUpFacilityLink", "removeFacilityLink")):
                keys_name = draw(st.sampled_from(["facility", "facility", "facility", "shop"]))
            auth = ("terminal", keys_name, draw(st.sampled_from(TERMINAL_FAULTS)))
        elif operation.security == "operator":
            auth = ("operator", draw(st.sampled_from(TERMINAL_FAULTS)))
        elif operation.security == "partner":
            auth = ("partner", draw(st.sampled_from(TERMINAL_FAULTS)))
        elif operation.security == "staff":
            auth = ("staff", draw(st.sampled_from(STAFF_CREDENTIALS)))
        elif operation.security == "optional_staff":
            auth = ("staff", draw(st.sampled_from(("none",) * 6 + ("right", "operator", "other_municipality", "garbage"))))
        elif operation.security == "resident":
            auth = ("resident", draw(st.sampled_from(("right",) * 25 + ("garbage", "none", "staff", "basic"))))
        else:
            auth = ("public", draw(st.sampled_from(("none",) * 10 + ("garbage",))))

        headers = {}
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        if content_type:
            headers["Content-Type"] = content_type
        if draw(st.integers(0, 9)) == 0:
            headers[draw(st.sampled_from(["X-Forwarded-For", "X-Amz-Date", "Accept", "X-Request-Id", "Origin"]))] = draw(
                st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40))

        if operation.body_schema is not None:
            body = draw(bodies[auth[1] if auth[0] == "terminal" else "shop"])
        else:
            body = draw(fuzz.weighted((6, st.just(b"")), (1, fuzz.raw_bodies(small=True))))
        return fuzz.Request(operation.operation_id, operation.method, path, query, headers, body, auth)

    return build()


SEEDED = {"createPayment", "createTransferOut", "confirmHold", "createRegistration", "residentSignIn", "reinstateMykey",
          "answerPortalSignInWithCard", "inquireConversions"}


def _signed_headers(private_key, id_header: str, signer_id: str, prefix: str, request: fuzz.Request, fault, other_key,
                    nonce: str | None = None):
    from chalicelib.auth.terminals import request_message

    timestamp = int(time.time()) + {"stale": -301 - secrets.randbelow(10_000), "future": 301 + secrets.randbelow(10_000)}.get(fault, 0)
    nonce = nonce or {"bad_nonce": "not-a-nonce"}.get(fault, secrets.token_hex(16))
    path = "/v1/health" if fault == "wrong_path" else request.path
    key = other_key if fault == "other_key" else private_key
    signature = key.sign(request_message(request.method, path, str(timestamp), nonce, request.body, prefix))
    headers = {id_header: signer_id, "X-Timestamp": str(timestamp), "X-Nonce": nonce,
               "X-Signature": base64.b64encode(signature).decode()}
    if fault == "bad_signature":
        headers["X-Signature"] = base64.b64encode(bytes(64)).decode()
    elif fault == "no_signature":
        del headers["X-Signature"]
    elif fault == "no_timestamp":
        del headers["X-Timestamp"]
    elif fault == "unknown_id":
        headers[id_header] = "t-nobody"
    elif fault == "long_id":
        headers[id_header] = "t" * 100
    return headers


def send(context: Context, request: fuzz.Request):
    world, auth = context.world, request.auth
    headers = dict(request.headers)
    if auth[0] == "terminal":
        keys = getattr(world, auth[1])
        other = world.other_shop if keys is not world.other_shop else world.shop
        nonce = context.spent_nonce(auth[1]) if auth[2] == "reused_nonce" else None
        headers.update(_signed_headers(keys.private_key, "X-Terminal-Id", keys.terminal_id, "POINTS-TERMINAL-V1",
                                       request, auth[2], other.private_key, nonce))
    elif auth[0] == "operator":
        operator_id, key = context.operator
        nonce = context.spent_nonce("operator") if auth[1] == "reused_nonce" else None
        headers.update(_signed_headers(key, "X-Operator-Id", operator_id, "POINTS-OPERATOR-V1", request, auth[1],
                                       world.shop.private_key, nonce))
    elif auth[0] == "partner":
        partner_id, key = context.partner
        nonce = context.spent_nonce("partner") if auth[1] == "reused_nonce" else None
        headers.update(_signed_headers(key, "X-Partner-Id", partner_id, "POINTS-PARTNER-V1", request, auth[1],
                                       world.shop.private_key, nonce))
    elif auth[0] in ("staff", "resident", "public"):
        credential = auth[1]
        token = {
            "right": lambda: context.resident_token if auth[0] == "resident" else context.right_staff_token(),
            "viewer": lambda: context.token("viewer"),
            "operator": lambda: context.token("operator"),
            "other_municipality": lambda: context.token("approver", world.other_code),
            "platform": lambda: context.token("platform_operator", "platform"),
            "staff": lambda: context.token("approver"),
            "resident": lambda: context.resident_token,
            "garbage": lambda: secrets.token_urlsafe(32),
        }.get(credential)
        if token is not None:
            headers["Authorization"] = f"Bearer {token()}"
        elif credential == "basic":
            headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
        elif credential == "empty_bearer":
            headers["Authorization"] = "Bearer "
    return context.http.client.http.request(request.method, request.url, headers=headers, body=request.body)


def _error_code(response) -> str | None:
    try:
        return json.loads(response.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _case_id(operation: fuzz.Operation) -> str:
    return f"{operation.operation_id} {operation.key}"


@pytest.mark.parametrize("operation", OPERATIONS, ids=_case_id)
def test_fuzz__operation__answers_only_documented_refusals_and_never_fails(http, tally, operation):
    context = Context(http, operation)

    @fuzz.apply_seed
    @fuzz.hypothesis_settings()
    @given(request_strategy(operation, context))
    def run(request):
        response = send(context, request)
        problems = fuzz.response_problems(operation, request, response.status_code, response.headers, response.body)
        defect = next((defect for defect in OPEN_FINDINGS if defect.matches(operation, request, problems)), None) \
            if problems else None
        tally.record(operation.key, response.status_code, _error_code(response), problems, known=defect and defect.name)
        if defect is not None:
            reject()  # counted above; reproduced and reported by test_fuzz_finding__answers_a_documented_refusal
        assert not problems, (f"{problems}\n  request: {request!r}\n  response: {response.status_code} "
                              f"{response.body[:600]!r}")

    run()


def test_fuzz__every_documented_operation__is_fuzzed(tally):
    """Runs after the parametrized tests: the operations fuzzed are exactly the document's."""
    documented = {operation.key for operation in fuzz.operations()}
    assert {operation.key for operation in OPERATIONS} == documented
    if len(tally.per_operation) < len(documented):
        pytest.skip("only some operations were selected in this run")
    assert set(tally.per_operation) == documented


# -- defects the fuzzing found: reproduced, reported and kept failing until their owner fixes them ----------


def _query_values(request: fuzz.Request, *names: str) -> list[str]:
    parsed = urllib.parse.parse_qs(request.query, keep_blank_values=True)
    return [value for name in names for value in parsed.get(name, [])]


def _unconvertible_digits(value: str) -> bool:
    """`str.isdigit()` says yes but `int()` raises: superscripts, or more than 4300 digits."""
    return value.isdigit() and not (value.isdecimal() and len(value) <= 4300)


def _calendar_edge(value: str) -> bool:
    try:
        day = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return False
    return day is not None and day.year in (1, 9999)


def _feed_content(request: fuzz.Request) -> str:
    try:
        content = json.loads(request.body).get("content")
    except (ValueError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""


class Finding:
    """A server error the fuzzing found: how to recognise its trigger, how to reproduce it, and whether it
    is still open. An open finding's trigger is counted but not failed in the fuzz tests, and its
    reproduction is a strict xfail; a fixed one's reproduction must answer a documented refusal for ever."""

    def __init__(self, name: str, description: str, operation_ids: tuple, matches, reproductions, open: bool):
        self.name, self.description, self.operation_ids, self.open = name, description, operation_ids, open
        self._matches, self.reproductions = matches, reproductions

    def matches(self, operation: fuzz.Operation, request: fuzz.Request, problems: list[str]) -> bool:
        """Whether this finding explains every problem of a response (a request, or the problems, matching)."""
        return (not self.operation_ids or operation.operation_id in self.operation_ids) and self._matches(request, problems)


def _staff_get(operation_id: str, query: str):
    return [(operation_id, "/v1/municipalities/{code}" + path, query, b"")
            for path in [next(o.path for o in OPERATIONS if o.operation_id == operation_id).split("{code}")[1]]]


FINDINGS = [
    Finding(
        "json_integer_literal_over_4300_digits",
        "a JSON body holding an integer literal of more than 4300 digits makes json.loads raise ValueError "
        "('Exceeds the limit (4300 digits) for integer string conversion'); chalicelib.api.http.json_object catches "
        "JSONDecodeError but not ValueError, so every operation that reads a JSON body answers 500 internal_error "
        "instead of 400 validation_failed",
        (),
        lambda request, problems: re.search(rb"(?:^|[:\[,\s-])[0-9]{4301,}", request.body) is not None,
        lambda: [(operation.operation_id, operation.path, "", b'{"a":' + b"9" * 5000 + b"}")
                 for operation in OPERATIONS if operation.body_schema is not None],
        open=False,  # fixed in e824510
    ),
    Finding(
        "query_integer_isdigit_then_int",
        "?days= (reports/expiring, chalicelib/api/report_routes.py) and ?limit= (audit-events, "
        "chalicelib/api/administration_routes.py) are checked with str.isdigit() and then int(): a superscript "
        "digit ('²', isdigit but not int-able) or more than 4300 digits raises ValueError: 500 instead of 400",
        ("getExpiringReport", "getMunicipalityAuditEvents"),
        lambda request, problems: any(_unconvertible_digits(value) for value in _query_values(request, "days", "limit")),
        lambda: [*_staff_get("getExpiringReport", "days=%C2%B2"), *_staff_get("getExpiringReport", "days=" + "9" * 5000),
                 *_staff_get("getMunicipalityAuditEvents", "limit=%C2%B2"),
                 *_staff_get("getMunicipalityAuditEvents", "limit=" + "9" * 5000)],
        open=False,  # fixed in e824510
    ),
    Finding(
        "report_dates_at_the_edges_of_the_calendar",
        "reports/summary and reports/daily accept ?from=/?to= dates that chalicelib.domain.time cannot "
        "shift (japan_day_start_utc('0001-01-01') raises ValueError 'year 0 is out of range', "
        "japan_day_end_utc('9999-12-31') and daily's default 'to - 29 days' for early year-1 dates raise "
        "OverflowError): 500 instead of 400 validation_failed",
        ("getSummaryReport", "getDailyReport"),
        lambda request, problems: any(_calendar_edge(value) for value in _query_values(request, "from", "to")),
        lambda: [*_staff_get("getSummaryReport", "from=0001-01-01"), *_staff_get("getSummaryReport", "to=9999-12-31"),
                 *_staff_get("getDailyReport", "to=0001-01-05"),
                 *_staff_get("getDailyReport", "from=9999-12-20&to=9999-12-31")],
        open=False,  # fixed in e824510
    ),
    Finding(
        "feed_csv_field_over_131072_characters",
        "the J-LIS feeds accept 5 MiB, but a CSV field longer than Python's csv.field_size_limit() "
        "(131072) makes csv.DictReader raise _csv.Error in chalicelib.services.identity._csv_rows, which nothing "
        "catches: 500 instead of 400 feed_invalid",
        ("importRevocationFeed", "importRenewalFeed"),
        lambda request, problems: len(_feed_content(request)) > 131072,
        lambda: [("importRevocationFeed", "/v1/platform/revocation-feeds", "",
                  json.dumps({"format": "csv", "content": "serial_number\n" + "a" * 140_000}).encode()),
                 ("importRenewalFeed", "/v1/platform/renewal-feeds", "",
                  json.dumps({"content": "old_serial_number,new_serial_number\n" + "a" * 140_000}).encode())],
        open=False,  # fixed in e824510
    ),
]


INDIVIDUAL_NUMBER_UNDOCUMENTED = "code 'individual_number_forbidden' not documented for "
FINDINGS.append(Finding(
    "individual_number_forbidden_not_documented",
    "since e4e3086 every JSON body is checked for an Individual Number in any field (chalicelib.api.http."
    "json_object), but docs/openapi.yaml does not list 400 individual_number_forbidden for 14 operations that read "
    "a body: createBalanceInquiry, lookUpFacilityLink, removeFacilityLink, confirmHold, rejectHold, "
    "changeStaffPassword, uploadGrantBatch, createChallenge, createPortalSignInRequest, answerPortalSignInWithCard, "
    "collectPortalSignInSession, residentSignIn, importRevocationFeed, importRenewalFeed (a documentation defect: "
    "clients cannot know the code)",
    (),
    lambda request, problems: all(problem.startswith(INDIVIDUAL_NUMBER_UNDOCUMENTED) for problem in problems),
    lambda: [(operation.operation_id, operation.path, "", json.dumps({"note": fuzz.INDIVIDUAL_NUMBER}).encode())
             for operation in OPERATIONS if operation.body_schema is not None],
    open=False,  # fixed: docs/openapi.yaml lists the code for every operation that reads a body
))
OPEN_FINDINGS = [finding for finding in FINDINGS if finding.open]


def _finding_params():
    for finding in FINDINGS:
        marks = [pytest.mark.xfail(strict=True, reason="defect: " + finding.description)] if finding.open else []
        yield pytest.param(finding, id=finding.name, marks=marks)


@pytest.mark.parametrize("finding", list(_finding_params()))
def test_fuzz_finding__answers_a_documented_refusal(http, tally, finding):
    """Every request that once made the app fail must now answer < 500 with a documented refusal. An open
    finding is a strict xfail: once fixed this passes, the mark fails the run, and `open` becomes False."""
    by_id = {operation.operation_id: operation for operation in OPERATIONS}
    failures = []
    for operation_id, path, query, body in finding.reproductions():
        operation = by_id[operation_id]
        context = Context(http, operation)
        for name, _ in operation.path_parameters:
            path = path.replace("{" + name + "}", {"code": http.world.home_code}.get(name, "x"))
        auth = {"terminal": ("terminal", "shop", None), "operator": ("operator", None), "partner": ("partner", None),
                "staff": ("staff", "right"), "resident": ("resident", "right")}.get(operation.security, ("public", "none"))
        request = fuzz.Request(operation_id, operation.method, path, query, {"Content-Type": "application/json"}, body, auth)
        response = send(context, request)
        problems = fuzz.response_problems(operation, request, response.status_code, response.headers, response.body)
        tally.record(operation.key, response.status_code, _error_code(response), problems,
                     known=finding.name if finding.open else None)
        if problems:
            failures.append(f"{request!r} -> {response.status_code} {_error_code(response)}: {problems}")
    tally.reproduced[finding.name] = {"description": finding.description, "open": finding.open,
                                      "failing_requests": len(failures)}
    assert failures == [], f"{len(failures)} requests fail:\n" + "\n".join(failures)
