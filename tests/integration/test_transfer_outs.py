"""Transfer-outs to shopping-district programmes on DynamoDB Local: hold, confirm, reject, expire,
duplicates, the confirm-versus-expiry race, statements and the ledger invariant with pending points."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import random
import secrets
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import errors
from chalicelib.auth.terminals import request_message
from chalicelib.services import ledger, ports, transfer_outs

pytestmark = pytest.mark.integration
GOOD_ACCOUNT = "4539578763621486"  # passes Luhn
MISTYPED_ACCOUNT = "4539578763621487"


def _key():
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, base64.b64encode(public).decode()


class TransferOutWorld:
    def __init__(self, http, sqs):
        self.http, self.sqs, self.world = http, sqs, http.world
        suffix = uuid.uuid4().hex[:8]
        self.operator_id, self.programme_id = f"op-{suffix}", f"kurokabe-card-{suffix}"
        self.key, public = _key()
        queue = f"op-{suffix}-requests"
        self.request_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        platform = http.sign_in("platform_operator", code="platform")
        assert http.staff(platform, "PUT", f"/v1/platform/operators/{self.operator_id}",
                          {"name": "長浜ポイント管理", "public_key": public, "request_queue": queue}).status_code == 200
        approver = http.sign_in("approver")
        response = http.staff(approver, "PUT", f"/v1/municipalities/{self.world.home_code}/transfer-programmes/{self.programme_id}",
                              {"operator_id": self.operator_id, "name": "黒壁商店街カード", "account_pattern": "[0-9]{16}",
                               "check_digit": "luhn", "hold_seconds": 600})
        assert response.status_code == 200, response.body

    def request(self, mykey, amount, account=GOOD_ACCOUNT, transfer_id=None, sign=True):
        transfer_id = transfer_id or str(uuid.uuid4())
        card = self.world.cards[mykey]
        body = {"transfer_id": transfer_id, "municipality_code": self.world.home_code, "amount": amount,
                "programme_id": self.programme_id, "destination_account": account,
                "card": {"certificate": card.certificate_base64}}
        if sign:
            signed_at = int(time.time())
            message = transfer_outs.transfer_out_message(transfer_id, self.world.shop.terminal_id, self.world.home_code,
                                                         amount, self.programme_id, account, signed_at)
            body["card"].update(signature=base64.b64encode(card.sign(message)).decode(), signed_at=signed_at)
        return self.http.terminal(self.world.shop, "POST", "/v1/transfer-outs", body)

    def operator(self, action, hold_id, body, key=None, operator_id=None):
        path = f"/v1/operator/holds/{hold_id}/{action}"
        raw = json.dumps(body).encode()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = (key or self.key).sign(request_message("POST", path, timestamp, nonce, raw, "POINTS-OPERATOR-V1"))
        headers = {"X-Operator-Id": operator_id or self.operator_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": base64.b64encode(signature).decode(), "Content-Type": "application/json"}
        return self.http.client.http.post(path, headers=headers, body=raw)

    def invariant_holds(self, code=None):
        code = code or self.world.home_code
        report = ledger.summary(self.world.store, code)
        wallets = sum(w.balance for w in self.world.store.wallets_of_municipality(code))
        assert report["outstanding"] == wallets
        assert (report["issued"] + report["converted_in"] - report["spent"] + report["refunded"] - report["expired"]
                - report["transferred_out"]) == wallets + report["pending_transfer_out"], report
        return report


@pytest.fixture
def transfers(http, sqs_client, moto_sqs):
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    return TransferOutWorld(http, sqs_client)


def _code(response):
    return response.json_body["error"]["code"]


def test_mistyped_destination__refused_before_anything_is_held(transfers, table_snapshot):
    mykey = transfers.world.add_card()
    transfers.world.grant(mykey, 1000)
    before = table_snapshot()
    response = transfers.request(mykey, 300, account=MISTYPED_ACCOUNT)
    assert response.status_code == 400 and _code(response) == "destination_account_invalid"
    after = table_snapshot()
    after.pop("nonces"), before.pop("nonces")
    assert after == before


def test_hold_then_confirm__posted_once_with_duplicates_and_echo_checked(transfers):
    world = transfers.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    response = transfers.request(mykey, 300)
    assert response.status_code == 201, response.body
    hold = response.json_body
    assert hold["status"] == "pending" and world.store.get_wallet(mykey, world.home_code).balance == 700
    sent = transfers.sqs.receive_message(QueueUrl=transfers.request_url).get("Messages", [])
    assert json.loads(sent[0]["Body"])["hold_id"] == hold["hold_id"]
    assert transfers.invariant_holds()["pending_transfer_out"] == 300

    mismatch = transfers.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 301})
    assert mismatch.status_code == 409 and _code(mismatch) == "confirmation_mismatch"
    confirmed = [transfers.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 300})
                 for _ in range(3)]
    assert [c.status_code for c in confirmed] == [200, 200, 200] and confirmed[0].json_body["status"] == "posted"
    assert len({c.json_body["finished_at"] for c in confirmed}) == 1
    posts = [t for t in world.store.transfers_of_mykey(mykey) if t.kind == "transfer_out"]
    assert len(posts) == 1 and posts[0].credit_account == f"operator:{transfers.operator_id}"
    report = transfers.invariant_holds()
    assert (report["transferred_out"], report["pending_transfer_out"]) == (300, 0)
    rejected = transfers.operator("rejection", hold["hold_id"], {"reason": "遅すぎ"})
    assert rejected.status_code == 409 and _code(rejected) == "hold_already_posted"


def test_unknown_hold_or_another_operators_hold__refused_the_same_way(transfers):
    world = transfers.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    hold = transfers.request(mykey, 100).json_body
    unknown = transfers.operator("confirmation", str(uuid.uuid4()), {"destination_account": GOOD_ACCOUNT, "amount": 100})
    assert unknown.status_code == 404 and _code(unknown) == "hold_not_found"
    other = TransferOutWorld(transfers.http, transfers.sqs)
    foreign = other.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 100})
    assert foreign.status_code == 404 and _code(foreign) == "hold_not_found"
    forged = transfers.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 100}, key=other.key)
    assert forged.status_code == 401 and _code(forged) == "operator_authentication_failed"


def test_reject__voids_and_returns_points_with_their_original_expiry(transfers):
    world = transfers.world
    mykey = world.add_card()
    world.grant(mykey, 200, expires_on="2027-01-31")
    world.grant(mykey, 800, expires_on="2027-09-30")
    before_lots = world.store.get_wallet(mykey, world.home_code).lots
    hold = transfers.request(mykey, 500).json_body
    rejected = [transfers.operator("rejection", hold["hold_id"], {"reason": "番号の持ち主が違う"}) for _ in range(2)]
    assert [r.json_body["status"] for r in rejected] == ["voided", "voided"]
    assert world.store.get_wallet(mykey, world.home_code).lots == before_lots
    late = transfers.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 500})
    assert late.status_code == 409 and _code(late) == "hold_already_voided"
    assert transfers.invariant_holds()["pending_transfer_out"] == 0


def test_deadline__job_voids_and_confirmation_after_it_is_refused(transfers):
    from chalicelib.api import dependencies

    world = transfers.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    hold = transfers.request(mykey, 400).json_body
    dependencies.override(clock=lambda: time.time() + 601)
    event = transfers.http.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    assert transfers.http.client.lambda_.invoke("void_expired_holds", event).payload["voided"] >= 1
    assert world.store.get_hold(hold["hold_id"])["state"] == "voided"
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000
    dependencies.override(clock=time.time)
    late = transfers.operator("confirmation", hold["hold_id"], {"destination_account": GOOD_ACCOUNT, "amount": 400})
    assert late.status_code == 409 and _code(late) == "hold_already_voided"


def test_confirmation_racing_the_deadline__exactly_one_outcome(transfers):
    world = transfers.world
    operator = world.store.get_operator(transfers.operator_id)
    mykey = world.add_card()
    world.grant(mykey, 10_000)
    holds = [transfers.request(mykey, 100).json_body for _ in range(12)]
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        futures = []
        for hold in holds:
            # Two machines with different clocks: the operator's call just before, the job just after the deadline.
            futures.append(pool.submit(transfer_outs.confirm, world.store, operator, hold["hold_id"], GOOD_ACCOUNT, 100,
                                       lambda deadline=hold["deadline"]: deadline - 0.5))
            futures.append(pool.submit(transfer_outs.void, world.store, world.store.get_hold(hold["hold_id"]), "deadline",
                                       lambda deadline=hold["deadline"]: deadline + 0.5))
        for future in futures:
            try:
                outcomes.append(future.result()["state"])
            except errors.HoldAlreadyVoided:
                outcomes.append("voided")
    for hold in holds:
        final = world.store.get_hold(hold["hold_id"])
        kinds = [t.kind for t in world.store.transfers_of_mykey(mykey, limit=500)
                 if t.related_transfer_id == hold["hold_id"]]
        assert sorted(kinds) in (["transfer_out"], ["transfer_out_void"]), kinds
        assert final["state"] == ("posted" if kinds == ["transfer_out"] else "voided")
    transfers.invariant_holds()


def test_seeded_random_sequence__invariant_with_pending_transfer_outs(transfers):
    world = transfers.world
    operator = world.store.get_operator(transfers.operator_id)
    rng = random.Random(6)
    residents = [world.add_card() for _ in range(5)]
    for mykey in residents:
        world.grant(mykey, 5000)
    pending = []
    seen_pending = []
    for step in range(150):
        roll = rng.random()
        try:
            if roll < 0.35:
                response = transfers.request(rng.choice(residents), rng.randint(1, 800))
                if response.status_code == 201:
                    pending.append(response.json_body)
            elif roll < 0.55 and pending:
                hold = pending.pop(rng.randrange(len(pending)))
                transfer_outs.confirm(world.store, operator, hold["hold_id"], GOOD_ACCOUNT, hold["amount"], time.time)
            elif roll < 0.7 and pending:
                hold = pending.pop(rng.randrange(len(pending)))
                transfer_outs.reject(world.store, operator, hold["hold_id"], "test", time.time)
            elif roll < 0.8 and pending:
                hold = pending.pop(rng.randrange(len(pending)))
                transfer_outs.void(world.store, world.store.get_hold(hold["hold_id"]), "deadline", time.time)
            elif roll < 0.9:
                world.pay(rng.choice(residents), rng.randint(1, 500))
            else:
                world.grant(rng.choice(residents), rng.randint(1, 1000))
        except errors.InsufficientBalance:
            pass
        if step % 10 == 0:
            seen_pending.append(transfers.invariant_holds()["pending_transfer_out"])
    report = transfers.invariant_holds()
    assert report["transferred_out"] > 0 and max(seen_pending) > 0
    assert all(w.balance >= 0 for w in world.store.wallets_of_municipality(world.home_code))


def test_operator_statement__confirmed_points_per_programme(transfers):
    import datetime as dt

    world = transfers.world
    operator = world.store.get_operator(transfers.operator_id)
    mykey = world.add_card()
    world.grant(mykey, 2000)
    for amount in (300, 200):
        hold = transfers.request(mykey, amount).json_body
        transfer_outs.confirm(world.store, operator, hold["hold_id"], GOOD_ACCOUNT, amount, time.time)
    transfers.request(mykey, 50)  # still pending: not on the statement
    platform = transfers.http.sign_in("platform_operator", code="platform")
    month = dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).strftime("%Y-%m")
    statement = transfers.http.staff(platform, "GET", f"/v1/platform/operators/{transfers.operator_id}/statements/{month}").json_body
    assert statement["lines"] == [{"municipality_code": world.home_code, "programme_id": transfers.programme_id,
                                   "transfers": 2, "points": 500}]
    assert statement["total_points"] == 500


def test_programme__another_municipality_cannot_take_it_over(transfers):
    other_approver = transfers.http.sign_in("approver", code=transfers.world.other_code)
    response = transfers.http.staff(
        other_approver, "PUT", f"/v1/municipalities/{transfers.world.other_code}/transfer-programmes/{transfers.programme_id}",
        {"operator_id": transfers.operator_id, "name": "乗っ取り", "account_pattern": ".*", "check_digit": "none"})
    assert response.status_code == 403 and _code(response) == "staff_forbidden"
    assert transfers.world.store.get_programme(transfers.programme_id)["municipality_code"] == transfers.world.home_code


def test_stopped_operator__nothing_is_held(transfers):
    world = transfers.world
    operator = world.store.get_operator(transfers.operator_id)
    world.store.put_operator({**operator, "active": False})
    mykey = world.add_card()
    world.grant(mykey, 1000)
    response = transfers.request(mykey, 100)
    assert response.status_code == 404 and _code(response) == "programme_not_found"
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


@pytest.mark.parametrize("pattern", ["(0+)+1", "(a|aa)*b", "[0-9]{4}|.*"])
def test_programme__pattern_that_could_backtrack_for_ever__is_refused_and_the_old_one_kept(transfers, pattern):
    approver = transfers.http.sign_in("approver")
    response = transfers.http.staff(
        approver, "PUT", f"/v1/municipalities/{transfers.world.home_code}/transfer-programmes/{transfers.programme_id}",
        {"operator_id": transfers.operator_id, "name": "黒壁商店街カード", "account_pattern": pattern, "check_digit": "none"})
    assert response.status_code == 400 and _code(response) == "validation_failed"
    assert response.json_body["error"]["field"] == "account_pattern"
    assert transfers.world.store.get_programme(transfers.programme_id)["account_pattern"] == "[0-9]{16}"
