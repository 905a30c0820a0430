"""Partner conversions as an integrator meets them (docs/PARTNERS.md): the same transaction id with another
message is a conflict, refusals keep no Individual Number in any table or log line, caps count by the day
of the platform's decision, two keys verify during a key change, and a message from no registered partner
is counted for the operator's alarm. Signed messages on the SQS endpoint (moto server), the local poller
calling the Chalice SQS handler as Lambda would, DynamoDB Local."""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib.domain.identifiers import individual_number_check_digit
from chalicelib.services import conversions
from tests.integration.test_conversions import JST, Partner, conversion_queues, partner  # noqa: F401 - fixtures
from tests.world import HASH_SECRET

pytestmark = pytest.mark.integration

# A valid Individual Number (its last digit is the check digit), for the log-line test.
INDIVIDUAL_NUMBER = "123456789018"


def _random_individual_number() -> str:
    """One no other test writes, so that a scan of every table finds only what this test left."""
    first_eleven = f"{secrets.randbelow(10 ** 11):011d}"
    return first_eleven + str(individual_number_check_digit(first_eleven))


def _written_forms(number: str) -> tuple[str, ...]:
    """How people write it: plain, in groups with a hyphen or a space, in full-width digits."""
    groups = (number[:4], number[4:8], number[8:])
    return (number, "-".join(groups), " ".join(groups), number.translate(str.maketrans("0123456789", "０１２３４５６７８９")))


def _only(results: list[dict], txn: str) -> list[dict]:
    return [result for result in results if result["partner_txn_id"] == txn]


def test_same_txn_id_other_amount__conflict_credits_nothing_and_the_original_replays(partner):
    world = partner.http.world
    mykey = world.add_card()
    original = partner.message(mykey, 400, municipality_code=world.home_code, txn="order-1")
    partner.send(original)
    partner.drain()
    partner.send({**original, "partner_points": 4000})
    partner.drain()
    partner.send(original)
    partner.drain()
    results = _only(partner.results(), "order-1")
    assert [(r["status"], r["reason"], r["points"]) for r in results] == [
        ("credited", None, 200), ("rejected", "partner_txn_conflict", 0), ("credited", None, 200)]
    assert results[1]["municipality_code"] is None
    assert world.store.get_wallet(mykey, world.home_code).balance == 200


def test_same_txn_id_twice_in_one_batch__the_second_is_a_conflict(partner):
    world = partner.http.world
    mykey = world.add_card()
    first = partner.message(mykey, 1000, municipality_code=world.home_code, txn="batch-1")
    partner.send(first)
    partner.send({**first, "municipality_code": None})
    assert partner.drain() == 2
    results = _only(partner.results(), "batch-1")
    assert sorted((r["status"], r["reason"]) for r in results) == [("credited", None), ("rejected", "partner_txn_conflict")]
    assert world.store.get_wallet(mykey, world.home_code).balance == 500
    assert conversions.reserve_summary(world.store, mykey)["balance"] == 0


def test_key_order_and_spacing__are_the_same_message_not_a_conflict(partner):
    world = partner.http.world
    mykey = world.add_card()
    message = partner.message(mykey, 1000, municipality_code=world.home_code, txn="order-2")
    partner.send(json.dumps(message))
    partner.send(json.dumps(dict(reversed(list(message.items()))), indent=2))
    partner.drain()
    assert [r["status"] for r in _only(partner.results(), "order-2")] == ["credited", "credited"]


def test_refused_then_other_body__conflict_and_the_refusal_stands(partner):
    world = partner.http.world
    refused = partner.message("ZZZZ2345", 1000, txn="order-3")
    partner.send(refused)
    partner.drain()
    partner.send({**refused, "mykey_id": world.add_card()})
    partner.drain()
    partner.send(refused)
    partner.drain()
    assert [r["reason"] for r in _only(partner.results(), "order-3")] == [
        "unknown_mykey_id", "partner_txn_conflict", "unknown_mykey_id"]


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def _digits_only(text: str) -> str:
    return re.sub(r"\D", "", text.translate(str.maketrans("０１２３４５６７８９", "0123456789")))


def test_individual_numbers_in_every_field__refused_and_no_table_or_log_keeps_one(partner, table_snapshot, capsys):
    world = partner.http.world
    mykey = world.add_card()
    number = _random_individual_number()
    hostile = []
    for written in _written_forms(number):
        hostile.append(partner.message(mykey, 100, txn=written))
        hostile.append(partner.message(mykey, 100, txn=f"order {written}"))
        hostile.append(partner.message(written, 100))
        hostile.append(partner.message(mykey, 100, campaign_code=written))
        hostile.append({**partner.message(mykey, 100), "municipality_code": written})
    for message in hostile:
        partner.send(message)
        partner.drain()
    results = partner.results()
    assert len(results) == len(hostile)
    assert {r["reason"] for r in results} == {"individual_number_forbidden"}
    assert all(r["status"] == "rejected" and r["points"] == 0 for r in results)
    # A redelivery of a refused id still gets the recorded answer: the refusal is kept, by its keyed hash.
    partner.send(hostile[0])
    partner.drain()
    assert partner.results()[0]["reason"] == "individual_number_forbidden"
    tables = table_snapshot()
    rejections = [item for item in tables["conversion_rejections"] if item.get("partner_id", {}).get("S") == partner.partner_id]
    assert len(rejections) == len(hostile)
    for table, items in tables.items():
        for item in items:
            for text in _strings(item):
                assert number not in _digits_only(text), (table, item)
    logged = capsys.readouterr()
    for written in _written_forms(number):
        assert written not in logged.out + logged.err


def test_consumer_log_line__names_partner_and_transaction_and_counts_by_status(partner, caplog, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 100, municipality_code=world.home_code, txn="support-me"))
    partner.send(partner.message(mykey, 100, txn=INDIVIDUAL_NUMBER))
    partner.drain()
    from chalicelib.observability import get_logger

    formatter = get_logger().registered_formatter
    lines = [json.loads(formatter.format(record)) for record in caplog.records if record.getMessage() == "partner conversion"]
    found = {line.get("partner_txn_id"): line for line in lines if line["partner_id"] == partner.partner_id}
    assert found["support-me"]["status"] == "credited"
    [hidden] = [line for line in lines if line["partner_id"] == partner.partner_id and "partner_txn_id" not in line]
    assert hidden["partner_txn_key"] == conversions.partner_txn_key(HASH_SECRET, partner.partner_id, INDIVIDUAL_NUMBER)
    assert hidden["reason"] == "individual_number_forbidden"
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{") and "_aws" in line]
    statuses = [metric["status"] for metric in metrics if "PartnerConversions" in metric]
    assert statuses.count("credited") >= 1 and statuses.count("rejected") >= 1


def test_unknown_or_inactive_partner__counted_for_the_operators_alarm(partner, capsys):
    world = partner.http.world
    partner.send({**partner.message(world.add_card(), 100), "partner_id": "nobody-registered"})
    partner.drain()
    operator = partner.http.sign_in("platform_operator", code="platform")
    public = partner.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    response = partner.http.staff(operator, "PUT", f"/v1/platform/partners/{partner.partner_id}", {
        "name": "テスト航空", "public_key": base64.b64encode(public).decode(), "result_queue": partner.result_queue,
        "agreement": partner.agreement, "active": False})
    assert response.status_code == 200, response.body
    partner.send(partner.message(world.add_card(), 100))
    partner.drain()
    assert partner.results() == []
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{") and "_aws" in line]
    assert sum(1 for metric in metrics if metric.get("PartnerMessagesUnattributed") == [1.0]) == 2


def test_caps__count_by_the_day_of_the_decision_not_occurred_at(http, sqs_client, conversion_queues):  # noqa: F811
    from chalicelib.api import dependencies

    dependencies.override(sqs_client=sqs_client)
    capped = Partner(http, sqs_client, conversion_queues, agreement={
        "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 1, "rounding": "floor",
        "daily_cap_per_resident": 1000, "monthly_cap_per_resident": 100_000, "campaigns": []})
    world = http.world
    mykey = world.add_card()
    two_days_ago = dt.datetime.now(JST) - dt.timedelta(days=2)
    capped.send(capped.message(mykey, 1000, municipality_code=world.home_code, txn="late", occurred_at=two_days_ago))
    capped.send(capped.message(mykey, 1, municipality_code=world.home_code, txn="today"))
    capped.drain()
    results = {r["partner_txn_id"]: r for r in capped.results()}
    assert results["late"]["status"] == "credited"
    assert results["today"]["reason"] == "daily_cap_exceeded"


def test_two_keys_during_a_change__either_verifies_then_only_the_new_one(partner):
    world = partner.http.world
    operator = partner.http.sign_in("platform_operator", code="platform")
    new_key = Ed25519PrivateKey.generate()

    def register(*keys):
        encoded = [base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                  serialization.PublicFormat.Raw)).decode() for key in keys]
        response = partner.http.staff(operator, "PUT", f"/v1/platform/partners/{partner.partner_id}", {
            "name": "テスト航空", "public_keys": encoded, "result_queue": partner.result_queue, "agreement": partner.agreement})
        assert response.status_code == 200, response.body

    register(partner.key, new_key)
    mykey = world.add_card()
    partner.send(partner.message(mykey, 100, municipality_code=world.home_code, txn="old-key"))
    partner.send(partner.message(mykey, 100, municipality_code=world.home_code, txn="new-key"), key=new_key)
    partner.drain()
    register(new_key)
    partner.send(partner.message(mykey, 100, municipality_code=world.home_code, txn="old-key-after"))
    partner.drain()
    results = {r["partner_txn_id"]: (r["status"], r["reason"]) for r in partner.results()}
    assert results == {"old-key": ("credited", None), "new-key": ("credited", None),
                       "old-key-after": ("rejected", "signature_invalid")}


def test_fingerprint__any_value_differs_is_another_message():
    message = {"version": 1, "partner_id": "p", "partner_txn_id": str(uuid.uuid4()), "partner_points": 1}
    assert conversions.message_fingerprint(message) == conversions.message_fingerprint(dict(reversed(list(message.items()))))
    assert conversions.message_fingerprint(message) != conversions.message_fingerprint({**message, "partner_points": 2})
