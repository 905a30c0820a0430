"""Partner conversions end to end: signed messages on the SQS endpoint (moto server), the local poller
calling the Chalice SQS handler as Lambda would, DynamoDB Local, results on the partner's queue."""
from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.api.conversion_handlers import CONVERSION_QUEUE
from chalicelib.services import conversions, ports
from tools import dead_letters
from tools.localcloud.queues import create_conversion_queues, create_grant_batch_queues
from tools.localcloud.sqs_poller import SqsPoller

pytestmark = pytest.mark.integration
JST = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture(scope="module")
def conversion_queues(sqs_client):
    # Retried records come back after 1 s and move to the dead letters after 3 receives.
    # The poller serves every SQS handler of the app, so the grant-batch queue must exist too.
    create_grant_batch_queues(sqs_client)
    return create_conversion_queues(sqs_client, visibility_timeout_seconds=1, max_receive_count=3)


def _empty(sqs, url: str) -> None:
    # Not PurgeQueue: SQS allows one purge a minute per queue.
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


class Partner:
    def __init__(self, http, sqs, queues, agreement: dict | None = None):
        self.http, self.sqs = http, sqs
        self.queue_url, self.dead_letter_url = queues
        for url in queues:
            _empty(sqs, url)
        self.partner_id = f"p{uuid.uuid4().hex[:10]}"
        self.key = Ed25519PrivateKey.generate()
        self.result_queue = f"points-partner-results-{self.partner_id}"
        self.result_url = sqs.create_queue(QueueName=self.result_queue)["QueueUrl"]
        public = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.agreement = agreement or {
            "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
            "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 500_000, "campaigns": [],
        }
        operator = http.sign_in("platform_operator", code="platform")
        response = http.staff(operator, "PUT", f"/v1/platform/partners/{self.partner_id}", {
            "name": "テスト航空", "public_key": base64.b64encode(public).decode(), "result_queue": self.result_queue,
            "agreement": self.agreement})
        assert response.status_code == 200, response.body
        self.poller = SqsPoller(__import__("app").app, sqs, queue_urls={CONVERSION_QUEUE: self.queue_url}, wait_seconds=0)

    def message(self, mykey_id, partner_points=1000, municipality_code=None, txn=None, campaign_code=None, occurred_at=None):
        return {"version": 1, "partner_id": self.partner_id, "partner_txn_id": txn or uuid.uuid4().hex,
                "mykey_id": mykey_id, "municipality_code": municipality_code, "partner_points": partner_points,
                "campaign_code": campaign_code,
                "occurred_at": (occurred_at or dt.datetime.now(JST)).isoformat()}

    def send(self, message: dict | str, key=None, signature: str | None = None):
        body = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
        signature = signature or base64.b64encode((key or self.key).sign(body.encode())).decode()
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body,
                              MessageAttributes={"signature": {"DataType": "String", "StringValue": signature}})
        return body

    def drain(self, rounds: int = 20) -> int:
        processed = 0
        for _ in range(rounds):
            count = self.poller.poll_once()
            processed += count
            if count == 0:
                break
        return processed

    def results(self) -> list[dict]:
        found = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.result_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.result_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def partner(http, sqs_client, conversion_queues):
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    return Partner(http, sqs_client, conversion_queues)


def test_same_message_five_times_across_batches__credited_once(partner):
    world = partner.http.world
    mykey = world.add_card()
    message = partner.message(mykey, 1000, municipality_code=world.home_code)
    for _ in range(5):
        partner.send(message)
        assert partner.drain() == 1
    results = partner.results()
    assert [(r["status"], r["points"], r["municipality_code"]) for r in results] == [("credited", 500, world.home_code)] * 5
    assert set(results[0]) == {"partner_txn_id", "status", "reason", "municipality_code", "points"}
    assert world.store.get_wallet(mykey, world.home_code).balance == 500
    transfer = world.store.get_transfer(conversions.conversion_transfer_id(partner.partner_id, message["partner_txn_id"]))
    assert transfer.debit_account == f"partner:{partner.partner_id}" and transfer.partner_points == 1000


def test_batch_of_ten_with_one_bad_record__nine_credited_one_reported(partner):
    world = partner.http.world
    mykey = world.add_card()
    for index in range(10):
        message = partner.message(mykey, 200, municipality_code=world.home_code, txn=f"t{index}")
        if index == 4:
            partner.send(message, signature=base64.b64encode(b"\0" * 64).decode())
        else:
            partner.send(message)
    assert partner.drain() == 10
    results = {r["partner_txn_id"]: r for r in partner.results()}
    assert len(results) == 10
    assert results["t4"]["status"] == "rejected" and results["t4"]["reason"] == "signature_invalid"
    assert sum(r["status"] == "credited" for r in results.values()) == 9
    assert world.store.get_wallet(mykey, world.home_code).balance == 900


@pytest.mark.parametrize(
    "body_or_change,reason",
    [
        ("{not json", None),
        ({"partner_id": "nobody"}, None),
        ({"mykey_id": "ZZZZ2345"}, "unknown_mykey_id"),
        ({"suspended": True}, "mykey_suspended"),
        ({"partner_points": "1000"}, "malformed_message"),
        ({"municipality_code": "131016"}, "municipality_unknown"),
    ],
)
def test_bad_messages__rejected_with_a_reason_never_crash_the_batch(partner, body_or_change, reason):
    world = partner.http.world
    mykey = world.add_card()
    if isinstance(body_or_change, dict) and body_or_change.get("suspended"):
        world.store.put_mykey(ports.Mykey(mykey, "suspended", world.home_code, "2026-01-01T00:00:00Z"))
        body_or_change = {}
    message = body_or_change if isinstance(body_or_change, str) else {**partner.message(mykey, 1000), **body_or_change}
    partner.send(message)
    partner.send(partner.message(world.add_card(), 100, municipality_code=world.home_code, txn="good"))
    assert partner.drain() == 2
    results = {r["partner_txn_id"]: r for r in partner.results()}
    assert results["good"]["status"] == "credited"
    if reason is None:  # no registered partner can be named: nothing to report to, nothing credited
        assert len(results) == 1
    else:
        [refused] = [r for key, r in results.items() if key != "good"]
        assert refused["status"] == "rejected" and refused["reason"] == reason


def test_rejection_is_final__a_redelivery_gets_the_same_answer(partner):
    world = partner.http.world
    mykey = world.add_card()
    message = partner.message("ZZZZ2345", 1000)
    partner.send(message)
    partner.drain()
    world.add_card()
    partner.send(message)
    partner.drain()
    assert [r["reason"] for r in partner.results()] == ["unknown_mykey_id", "unknown_mykey_id"]


def test_campaign_rate__only_inside_its_window(http, sqs_client, conversion_queues):
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    world = http.world
    now = dt.datetime.now(JST)
    partner = Partner(http, sqs_client, conversion_queues, agreement={
        "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 1, "rounding": "floor",
        "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 500_000,
        "campaigns": [{"campaign_code": "winter", "rate_numerator": 3, "rate_denominator": 2,
                       "starts_at": (now - dt.timedelta(days=1)).isoformat(), "ends_at": (now + dt.timedelta(hours=1)).isoformat(),
                       "target_municipality_code": world.home_code}],
    })
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, campaign_code="winter", txn="inside"))
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, campaign_code="winter", txn="before",
                                 occurred_at=now - dt.timedelta(days=2)))
    partner.drain()
    results = {r["partner_txn_id"]: r for r in partner.results()}
    assert (results["inside"]["points"], results["inside"]["municipality_code"]) == (1500, world.home_code)
    assert results["before"]["points"] == 1000


def test_caps__hold_under_concurrent_deliveries(http, sqs_client, conversion_queues):
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    world = http.world
    partner = Partner(http, sqs_client, conversion_queues, agreement={
        "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 1, "rounding": "floor",
        "daily_cap_per_resident": 1000, "monthly_cap_per_resident": 1500, "campaigns": []})
    mykey = world.add_card()
    stored = world.store.get_partner(partner.partner_id)
    assert stored["agreement"]["daily_cap_per_resident"] == 1000
    bodies = []
    for index in range(20):
        body = json.dumps(partner.message(mykey, 100, municipality_code=world.home_code, txn=f"c{index}"))
        bodies.append((body, base64.b64encode(partner.key.sign(body.encode())).decode()))

    def deliver(item):
        return conversions.process_message(dependencies.get_ledger_store(), dependencies.get_identity_store(), item[0],
                                           item[1], time.time, dependencies.get_hash_secret())[0]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deliver, bodies))
    assert sum(r["status"] == "credited" for r in results) == 10
    assert {r["reason"] for r in results if r["status"] == "rejected"} == {"daily_cap_exceeded"}
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def test_result_queue_gone__record_retried_alone_then_dead_letter_then_redriven(partner):
    world = partner.http.world
    mykey = world.add_card()
    partner.sqs.delete_queue(QueueUrl=partner.result_url)
    from chalicelib.api import dependencies

    dependencies.reset_queue_urls()
    partner.send(partner.message(mykey, 400, municipality_code=world.home_code, txn="poison"))
    deadline = time.time() + 30
    while time.time() < deadline and not dead_letters.list_messages(partner.sqs, partner.dead_letter_url):
        partner.poller.poll_once()
        time.sleep(0.5)
    [dead] = dead_letters.list_messages(partner.sqs, partner.dead_letter_url)
    assert dead["partner_txn_id"] == "poison" and dead["partner_id"] == partner.partner_id
    shown = dead_letters.show(partner.sqs, partner.dead_letter_url, dead["message_id"])
    assert "signature" in shown["message_attributes"]
    # Credited on the first try (the transaction committed); only the result could not be sent.
    assert world.store.get_wallet(mykey, world.home_code).balance == 200
    partner.result_url = partner.sqs.create_queue(QueueName=partner.result_queue)["QueueUrl"]
    dependencies.reset_queue_urls()
    assert dead_letters.redrive(partner.sqs, partner.dead_letter_url, partner.queue_url, [dead["message_id"]]) == [dead["message_id"]]
    time.sleep(1.2)
    partner.drain()
    assert [(r["partner_txn_id"], r["status"], r["points"]) for r in partner.results()] == [("poison", "credited", 200)]
    assert world.store.get_wallet(mykey, world.home_code).balance == 200  # still credited once
    assert dead_letters.list_messages(partner.sqs, partner.dead_letter_url) == []


def test_reserve__fourteen_days_then_home_municipality_and_resident_allocation(partner):
    from chalicelib.api import dependencies

    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 2000, txn="to-reserve"))
    partner.drain()
    [result] = partner.results()
    assert (result["status"], result["municipality_code"], result["points"]) == ("credited", None, 1000)
    card = world.cards[mykey]
    session = partner.http.post("/v1/resident-sessions", partner.http.card_response(card, "resident_sign_in")).json_body["token"]
    reserve = partner.http.staff(session, "GET", "/v1/residents/me/reserve").json_body
    deadline = (dt.datetime.now(JST).date() + dt.timedelta(days=14)).isoformat()
    assert reserve == {"balance": 1000, "lots": [{"points": 1000, "last_day": deadline}]}
    allocated = partner.http.staff(session, "POST", "/v1/residents/me/reserve/allocations",
                                   {"allocation_id": str(uuid.uuid4()), "municipality_code": world.other_code, "amount": 300})
    assert allocated.status_code == 201, allocated.body
    assert world.store.get_wallet(mykey, world.other_code).balance == 300
    too_much = partner.http.staff(session, "POST", "/v1/residents/me/reserve/allocations",
                                  {"allocation_id": str(uuid.uuid4()), "municipality_code": world.other_code, "amount": 701})
    assert too_much.json_body["error"]["code"] == "insufficient_balance"
    # Day 14 is still the reserve's; on day 15 the job moves the rest home.
    scheduled = partner.http.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event",
                                                             detail={}, resources=[])
    dependencies.override(clock=lambda: time.time() + 14 * 86400)
    partner.http.client.lambda_.invoke("move_expired_reserves", scheduled)
    assert world.store.get_wallet(mykey, ports.RESERVE).balance == 700
    dependencies.override(clock=lambda: time.time() + 15 * 86400)
    assert partner.http.client.lambda_.invoke("move_expired_reserves", scheduled).payload["reserve_moves"] >= 1
    assert world.store.get_wallet(mykey, ports.RESERVE).balance == 0
    assert world.store.get_wallet(mykey, world.home_code).balance == 700
    history = [t.kind for t in world.store.transfers_of_mykey(mykey)]
    assert history.count("reserve_allocation") == 2 and history.count("conversion") == 1


def test_statement__points_per_municipality_and_yen_owed_json_and_csv(partner):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code))
    partner.send(partner.message(mykey, 3000, municipality_code=world.home_code))
    partner.send(partner.message(mykey, 500))
    partner.drain()
    operator = partner.http.sign_in("platform_operator", code="platform")
    month = dt.datetime.now(JST).strftime("%Y-%m")
    path = f"/v1/platform/partners/{partner.partner_id}/statements/{month}"
    statement = partner.http.staff(operator, "GET", path).json_body
    assert statement["lines"] == [
        {"municipality_code": world.home_code, "conversions": 2, "partner_points": 4000, "points": 2000, "yen_owed": 2000},
        {"municipality_code": "reserve", "conversions": 1, "partner_points": 500, "points": 250, "yen_owed": 250},
    ]
    assert statement["total_yen_owed"] == 2250
    assert (statement["total_conversions"], statement["total_partner_points"]) == (3, 4500)
    csv_response = partner.http.staff(operator, "GET", path + "?format=csv")
    text = csv_response.body.decode("utf-8")
    assert text.startswith("\ufeff自治体コード") and f"{world.home_code},2,4000,2000,2000\r\n" in text
    assert "合計 total,3,4500,2250,2250" in text


def test_chalice_test_client__sqs_handler_with_distinct_message_ids(partner):
    world = partner.http.world
    mykey = world.add_card()
    records = []
    for index in range(3):
        body = json.dumps(partner.message(mykey, 100, municipality_code=world.home_code, txn=f"d{index}"))
        signature = base64.b64encode(partner.key.sign(body.encode())).decode()
        records.append({"messageId": str(uuid.uuid4()), "receiptHandle": f"r{index}", "body": body, "attributes": {},
                        "messageAttributes": {"signature": {"stringValue": signature, "dataType": "String"}},
                        "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "ap-northeast-1",
                        "eventSourceARN": f"arn:aws:sqs:ap-northeast-1:123456789012:{CONVERSION_QUEUE}"})
    response = partner.http.client.lambda_.invoke("handle_partner_conversions", {"Records": records})
    assert response.payload == {"batchItemFailures": []}
    assert sorted(r["partner_txn_id"] for r in partner.results()) == ["d0", "d1", "d2"]
    assert world.store.get_wallet(mykey, world.home_code).balance == 150


def test_transient_failure__only_that_record_is_reported_for_retry(http, sqs_client, conversion_queues):
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    world = http.world
    healthy = Partner(http, sqs_client, conversion_queues)
    broken = Partner(http, sqs_client, conversion_queues)
    sqs_client.delete_queue(QueueUrl=broken.result_url)
    dependencies.reset_queue_urls()
    records = []
    for partner in (healthy, broken, healthy):
        body = json.dumps(partner.message(world.add_card(), 100, municipality_code=world.home_code))
        signature = base64.b64encode(partner.key.sign(body.encode())).decode()
        records.append({"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": body, "attributes": {},
                        "messageAttributes": {"signature": {"stringValue": signature, "dataType": "String"}},
                        "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "ap-northeast-1",
                        "eventSourceARN": f"arn:aws:sqs:ap-northeast-1:123456789012:{CONVERSION_QUEUE}"})
    response = http.client.lambda_.invoke("handle_partner_conversions", {"Records": records})
    assert response.payload == {"batchItemFailures": [{"itemIdentifier": records[1]["messageId"]}]}
    assert len(healthy.results()) == 2


@pytest.mark.parametrize("agreement_change,field", [
    ({"campaigns": None}, "agreement.campaigns"), ({"campaigns": ["x"]}, "agreement.campaigns"),
    ({"municipalitys": ["252034"]}, "agreement.municipalitys"), ({"rounding": "banker"}, "agreement.rounding"),
])
def test_partner_onboarding__bad_agreement__is_refused_with_its_field(http, agreement_change, field):
    operator = http.sign_in("platform_operator", code="platform")
    agreement = {"municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "daily_cap_per_resident": 10,
                 "monthly_cap_per_resident": 100, **agreement_change}
    response = http.staff(operator, "PUT", "/v1/platform/partners/p-bad", {
        "name": "x", "public_key": base64.b64encode(bytes(32)).decode(), "result_queue": "points-q", "agreement": agreement})
    assert response.status_code == 400 and response.json_body["error"]["field"] == field


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "2026-1", "2026-13"])
def test_statement__bad_month__is_validation_failed(http, month):
    operator = http.sign_in("platform_operator", code="platform")
    response = http.staff(operator, "GET", f"/v1/platform/partners/p-x/statements/{month}")
    assert response.status_code == 400 and response.json_body["error"]["code"] == "validation_failed"


def test_reserve_allocation__same_id_other_resident_or_body__is_conflict(partner):
    world = partner.http.world
    first, second = world.add_card(), world.add_card()
    for mykey in (first, second):
        partner.send(partner.message(mykey, 200))
    partner.drain()
    allocation_id = str(uuid.uuid4())
    conversions.allocate_reserve(world.store, first, world.home_code, 100, allocation_id, time.time)
    from chalicelib import errors as domain_errors

    with pytest.raises(domain_errors.TransferIdConflict):
        conversions.allocate_reserve(world.store, second, world.home_code, 100, allocation_id, time.time)
    with pytest.raises(domain_errors.TransferIdConflict):
        conversions.allocate_reserve(world.store, first, world.other_code, 100, allocation_id, time.time)
    assert world.store.get_wallet(second, ports.RESERVE).balance == 100
