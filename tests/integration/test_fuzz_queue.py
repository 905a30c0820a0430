"""Property-based fuzzing of every queue message the platform consumes, on DynamoDB Local.

* Partner conversions (docs/CONTRACTS.md#partner-conversions): `conversions.process_message` directly, the SQS record handler
  `convert_record` (message attributes as Lambda delivers them), and whole batches through the Lambda
  handler `handle_partner_conversions`. Bodies: valid messages, mutated ones (wrong version, wrong types,
  fields missing or added, huge numbers, floats, nulls, unicode, lone surrogates as JSON escapes,
  Individual-Number-like ids, deep nesting), text that is not JSON; signatures: right, absent, empty,
  garbage, over another body, or made with another partner's key; partners: the one named, another one,
  an inactive one, none.
* Bulk-grant chunks: `post_chunk_record` with odd message bodies.

The contract (the modules' docstrings): a record raises only for transient trouble; every refusal is a
result. So for every input the consumer must return, never raise (a raise retries the record and ends
in the dead-letter queue; a raise from every record fails the whole batch), and nothing may be credited
or granted for a message that is not valid and signed by the partner it names — checked on every wallet
the message could reach. The figures go to `reliability/results/fuzz.json` (`queue` part). Defects the
fuzzing found are kept in `QUEUE_DEFECTS` with their failing examples (strict xfail while open).
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid

import pytest
from hypothesis import given, reject
from hypothesis import strategies as st

from reliability import fuzz
from tests.fakes import FakeSqs
from tests.world import HASH_SECRET

pytestmark = pytest.mark.integration
JST = dt.timezone(dt.timedelta(hours=9))
AGREEMENT = {"municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
             "daily_cap_per_resident": 10_000_000, "monthly_cap_per_resident": 100_000_000, "campaigns": []}
CONSUMERS = ("process_message", "convert_record", "handle_partner_conversions", "post_chunk_record")


@pytest.fixture(scope="module")
def tally():
    figures = fuzz.QueueTally()
    yield figures
    if figures.cases:
        fuzz.write_results("queue", figures.summary())


class Partners:
    """Three registered partners (two active, one inactive) and a world with residents."""

    def __init__(self, http):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from chalicelib.api import dependencies

        self.http, self.world = http, http.world
        self.sqs = FakeSqs()
        dependencies.override(sqs_client=self.sqs)
        operator = http.sign_in("platform_operator", code="platform")
        self.ids, self.keys = {}, {}
        for name, active in (("own", True), ("other", True), ("inactive", False)):
            key = Ed25519PrivateKey.generate()
            public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                    serialization.PublicFormat.Raw)).decode()
            partner_id = f"fz{name}{uuid.uuid4().hex[:8]}"
            response = http.staff(operator, "PUT", f"/v1/platform/partners/{partner_id}", {
                "name": f"ファズ{name}", "public_key": public, "result_queue": f"points-partner-results-{partner_id}",
                "agreement": AGREEMENT, "active": active})
            assert response.status_code == 200, response.body
            self.ids[name], self.keys[name] = partner_id, key
        self.mykeys = [self.world.add_card()]
        suspended = self.world.add_card()
        from chalicelib.services import ports

        self.world.store.put_mykey(ports.Mykey(suspended, "suspended", self.world.home_code, "2026-01-01T00:00:00Z"))
        self.mykeys.append(suspended)

    def store(self):
        from chalicelib.api import dependencies

        return dependencies.get_ledger_store(), dependencies.get_identity_store()

    def balances(self) -> dict:
        """Every wallet a message could credit: each resident's, in each municipality and the reserve."""
        from chalicelib.services import ports

        return {(mykey, code): self.world.store.get_wallet(mykey, code).balance
                for mykey in self.mykeys for code in (self.world.home_code, self.world.other_code, ports.RESERVE)}


# -- messages ----------------------------------------------------------------------------------------------


def message_strategy(partners: Partners):
    world = partners.world
    now = dt.datetime.now(JST)
    return st.fixed_dictionaries({
        "version": fuzz.weighted((9, st.just(1)), (1, st.sampled_from([0, 2, "1", 1.0, True, None]))),
        "partner_id": fuzz.weighted((8, st.just(partners.ids["own"])),
                                    (1, st.sampled_from([partners.ids["other"], partners.ids["inactive"]])),
                                    (1, st.sampled_from(["nobody", "", "jal"]))),
        "partner_txn_id": fuzz.weighted((8, fuzz.fresh_uuids().map(lambda value: value.replace("-", ""))),
                                        (2, st.text(min_size=1, max_size=20))),
        "mykey_id": fuzz.weighted((8, st.sampled_from([partners.mykeys[0]] * 3 + [partners.mykeys[1]])),
                                  (1, st.sampled_from([partners.mykeys[0].lower(), "ZZZZ2345"])),
                                  (1, st.text(max_size=10))),
        "municipality_code": st.sampled_from([world.home_code, world.home_code, world.other_code, None, "131016"]),
        "partner_points": fuzz.weighted((8, st.integers(1, 20_000)), (1, st.sampled_from([0, -5, 1, 2, 100_000_000])),
                                        (1, st.sampled_from([3_000_000, 100_000_001]))),
        "campaign_code": fuzz.weighted((9, st.none()), (1, st.sampled_from(["winter", ""]))),
        "occurred_at": fuzz.weighted(
            (8, st.integers(-3 * 86400, 600).map(lambda seconds: (now + dt.timedelta(seconds=seconds)).isoformat())),
            (1, st.sampled_from([(now - dt.timedelta(days=31)).isoformat(), (now + dt.timedelta(days=2)).isoformat(),
                                 now.replace(tzinfo=None).isoformat(), "2026-11-27", "0001-01-01T00:00:00+09:00"])),
            (1, st.text(max_size=12))),
    })


RAW_MESSAGES = ("", " ", "{", "null", "[]", "1", '"text"', "{not json", "[" * 5000, '{"a":' * 5000,
                '{"partner_id":"x","a":' + "9" * 5000 + "}", '{"partner_id": "\\ud800"}', "NaN", "\ufeff{}")


@st.composite
def case_strategy(draw, partners: Partners):
    valid = message_strategy(partners)
    shape = draw(st.sampled_from(["valid"] * 5 + ["mutated"] * 4 + ["raw"]))
    if shape == "raw":
        body = draw(st.one_of(st.sampled_from(RAW_MESSAGES), st.text(max_size=40)))
    else:
        message = draw(valid if shape == "valid" else fuzz.mutated(valid))
        body = fuzz.encode_json(message, draw(st.booleans())).decode("utf-8")
    signer = draw(st.sampled_from(["own"] * 14 + ["other_partner", "none", "empty", "garbage", "other_body",
                                                  "whitespace"]))
    return body, signer


def signature_for(partners: Partners, body: str, signer: str) -> str | None:
    """The `signature` attribute a sender would attach: usually the named partner's own, else a fault."""
    named = _named_partner(partners, body)
    key = partners.keys[named] if named else partners.keys["own"]
    if signer == "other_partner":
        key = partners.keys["other" if named != "other" else "own"]
    data = body.encode("utf-8")
    if signer == "none":
        return None
    if signer == "empty":
        return ""
    if signer == "garbage":
        return "not base64 at all!"
    if signer == "other_body":
        data = data + b" "
    signature = base64.b64encode(key.sign(data)).decode()
    if signer == "whitespace":
        signature = signature + "\n"
    return signature


def _named_partner(partners: Partners, body: str) -> str | None:
    try:
        partner_id = json.loads(body).get("partner_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return next((name for name, value in partners.ids.items() if value == partner_id), None)


def acceptable(partners: Partners, body: str, signer: str) -> int | None:
    """The points a message may be credited with (an independent reading of docs/CONTRACTS.md#conversion-rules), or None: only a
    well-formed message signed by the active partner it names over its exact bytes may credit anything."""
    if signer not in ("own", "whitespace") or _named_partner(partners, body) not in ("own", "other"):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != {"version", "partner_id", "partner_txn_id", "mykey_id",
                                                   "municipality_code", "partner_points", "campaign_code", "occurred_at"}:
        return None
    points = data["partner_points"]
    if type(data["version"]) is not int or data["version"] != 1 or isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= 2_000_000:
        return None
    if not isinstance(data["partner_txn_id"], str) or not 1 <= len(data["partner_txn_id"]) <= 128:
        return None
    if not isinstance(data["mykey_id"], str) or data["mykey_id"].strip().upper() != partners.mykeys[0]:
        return None
    if data["municipality_code"] not in (partners.world.home_code, partners.world.other_code, None) or data["campaign_code"]:
        return None
    return points // 2


def check_result(result: dict, queue) -> list[str]:
    problems = []
    if set(result) != {"partner_txn_id", "status", "reason", "municipality_code", "points"}:
        problems.append(f"result fields {sorted(result)}")
    if result.get("status") not in ("credited", "rejected"):
        problems.append(f"status {result.get('status')!r}")
    if result.get("status") == "rejected" and (result.get("points") != 0 or not isinstance(result.get("reason"), str)):
        problems.append("a rejection must say why and credit 0 points")
    return problems


def record_for(body: str, signature: str | None, attribute: str = "string") -> dict:
    """One SQS record as Lambda delivers it (Powertools' SQSRecord reads this shape)."""
    attributes = {}
    if attribute == "string" and signature is not None:
        attributes["signature"] = {"stringValue": signature, "stringListValues": [], "binaryListValues": [],
                                   "dataType": "String"}
    elif attribute == "binary" and signature is not None:
        attributes["signature"] = {"binaryValue": base64.b64encode(signature.encode()).decode(), "stringListValues": [],
                                   "binaryListValues": [], "dataType": "Binary"}
    elif attribute == "other_name" and signature is not None:
        attributes["Signature"] = {"stringValue": signature, "stringListValues": [], "binaryListValues": [],
                                   "dataType": "String"}
    return {"messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": body, "attributes": {},
            "messageAttributes": attributes, "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": "ap-northeast-1",
            "eventSourceARN": "arn:aws:sqs:ap-northeast-1:123456789012:points-partner-conversions"}


# -- defects the fuzzing found -------------------------------------------------------------------------------


def _lone_surrogate_in_txn(body: str, signer: str, attribute: str) -> bool:
    try:
        txn = json.loads(body).get("partner_txn_id")
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(txn, str) and re.search("[\ud800-\udfff]", txn) is not None


def _binary_signature(body: str, signer: str, attribute: str) -> bool:
    return attribute == "binary" and signer != "none"


def _version_not_the_integer_1(body: str, signer: str, attribute: str) -> bool:
    try:
        version = json.loads(body).get("version")
    except (ValueError, AttributeError, RecursionError):
        return False
    return version == 1 and type(version) is not int


class QueueDefect:
    """A queue-consumer defect the fuzzing found: its trigger, and its failing example kept for the owner.
    While `open`, its trigger is counted but not failed in the fuzz tests and its reproduction (which raises
    while the defect stands) is a strict xfail; once fixed, set `open=False` and it guards the fix."""

    def __init__(self, name: str, reason: str, matches, reproduce, open: bool = True):
        self.name, self.reason, self.matches, self.reproduce, self.open = name, reason, matches, reproduce, open


def _reproduce_surrogate(partners: Partners):
    body = json.dumps({"version": 1, "partner_id": partners.ids["own"], "partner_txn_id": "\ud800",
                       "mykey_id": partners.mykeys[0], "municipality_code": partners.world.home_code,
                       "partner_points": 100, "campaign_code": None, "occurred_at": dt.datetime.now(JST).isoformat()})
    ledger_store, identity_store = partners.store()
    from chalicelib.services import conversions

    return conversions.process_message(ledger_store, identity_store, body, signature_for(partners, body, "own"), time.time,
                                       lambda: HASH_SECRET)


def _reproduce_version_true(partners: Partners):
    from chalicelib.services import conversions

    body = json.dumps({"version": True, "partner_id": partners.ids["own"], "partner_txn_id": uuid.uuid4().hex,
                       "mykey_id": partners.mykeys[0], "municipality_code": partners.world.home_code,
                       "partner_points": 100, "campaign_code": None, "occurred_at": dt.datetime.now(JST).isoformat()})
    ledger_store, identity_store = partners.store()
    result, _ = conversions.process_message(ledger_store, identity_store, body, signature_for(partners, body, "own"),
                                            time.time, lambda: HASH_SECRET)
    assert result["status"] == "rejected" and result["reason"] == "malformed_message", result
    return result


def _reproduce_binary(partners: Partners):
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.api.conversion_handlers import convert_record

    body = json.dumps({"version": 1, "partner_id": partners.ids["own"], "partner_txn_id": uuid.uuid4().hex,
                       "mykey_id": partners.mykeys[0], "municipality_code": partners.world.home_code,
                       "partner_points": 100, "campaign_code": None, "occurred_at": dt.datetime.now(JST).isoformat()})
    return convert_record(SQSRecord(record_for(body, signature_for(partners, body, "own"), "binary")))


# All four were fixed in bf795c8; each reproduction now guards its fix.
QUEUE_DEFECTS = [
    QueueDefect(
        "conversion_txn_id_with_lone_surrogate",
        "defect: a signed partner message whose partner_txn_id is a lone surrogate written as a JSON escape "
        "(\"\\ud800\") makes conversions.process_message raise UnicodeEncodeError (uuid.uuid5 in "
        "conversion_transfer_id encodes the id as UTF-8) instead of rejecting it as malformed_message: the record "
        "is retried until it lands in the dead-letter queue",
        _lone_surrogate_in_txn, _reproduce_surrogate, open=False),
    QueueDefect(
        "conversion_signature_as_binary_attribute",
        "defect: a message whose `signature` attribute has DataType Binary (Lambda delivers binaryValue and no "
        "stringValue) makes convert_record raise KeyError('stringValue') (Powertools' string_value indexes the "
        "dict) instead of rejecting it (signature_missing or signature_invalid): retried until the dead-letter "
        "queue",
        _binary_signature, _reproduce_binary, open=False),
    QueueDefect(
        "conversion_version_true_or_1_0_credited",
        "defect: partner messages (docs/CONTRACTS.md#partner-conversions) carry \"version\": 1, but parse_message compares data[\"version\"] != 1, so a "
        "signed message with \"version\": true or 1.0 (a wrong version) is credited instead of rejected as "
        "malformed_message",
        _version_not_the_integer_1, _reproduce_version_true, open=False),
]


def _known(body: str, signer: str, attribute: str = "string"):
    return next((defect for defect in QUEUE_DEFECTS if defect.open and defect.matches(body, signer, attribute)), None)


# -- the tests -------------------------------------------------------------------------------------------------


@pytest.fixture
def partners(http):
    return Partners(http)


def test_fuzz__process_message__never_raises_and_credits_only_valid_signed_messages(partners, tally):
    from chalicelib.services import conversions

    ledger_store, identity_store = partners.store()

    @fuzz.apply_seed
    @fuzz.hypothesis_settings(max_examples=fuzz.examples_per_operation() * 5)
    @given(case_strategy(partners))
    def run(case):
        body, signer = case
        before = partners.balances()
        try:
            result, queue = conversions.process_message(ledger_store, identity_store, body,
                                                        signature_for(partners, body, signer), time.time,
                                                        lambda: HASH_SECRET)
        except Exception as error:  # noqa: BLE001 - a raise is the finding
            defect = _known(body, signer)
            tally.record("process_message", "raised", crash=True, known=defect and defect.name)
            if defect:
                reject()
            raise AssertionError(f"process_message raised {error!r} for body={body[:300]!r} signer={signer}") from error
        changed = {wallet: partners.balances()[wallet] - amount for wallet, amount in before.items()
                   if partners.balances()[wallet] != amount}
        allowed = acceptable(partners, body, signer)
        problems = check_result(result, queue)
        if result["status"] == "credited" and changed:
            if allowed is None:
                problems.append(f"credited an invalid or unsigned message: {changed}")
            elif sum(changed.values()) != result["points"] or result["points"] != allowed:
                problems.append(f"credited {result['points']} ({changed}), expected {allowed}")
        if result["status"] == "rejected" and changed:
            problems.append(f"rejected but wallets changed: {changed}")
        defect = _known(body, signer) if problems else None
        tally.record("process_message", f"{result['status']} {result['reason']}",
                     invalid_credit=bool(changed and allowed is None and not defect), known=defect and defect.name)
        if defect:
            reject()
        assert not problems, f"{problems} body={body[:300]!r} signer={signer} result={result}"

    run()


ATTRIBUTES = ("string",) * 8 + ("none", "other_name", "binary")


def test_fuzz__convert_record__returns_a_result_for_every_record(partners, tally):
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.api.conversion_handlers import convert_record

    @fuzz.apply_seed
    @fuzz.hypothesis_settings(max_examples=fuzz.examples_per_operation() * 3)
    @given(case_strategy(partners), st.sampled_from(ATTRIBUTES))
    def run(case, attribute):
        body, signer = case
        before = partners.balances()
        record = SQSRecord(record_for(body, signature_for(partners, body, signer), attribute))
        try:
            result = convert_record(record)
        except Exception as error:  # noqa: BLE001
            defect = _known(body, signer, attribute)
            tally.record("convert_record", "raised", crash=True, known=defect and defect.name)
            if defect:
                reject()
            raise AssertionError(f"convert_record raised {error!r} for body={body[:300]!r} signer={signer} "
                                 f"attribute={attribute}") from error
        changed = partners.balances() != before
        invalid_credit = changed and (attribute != "string" or acceptable(partners, body, signer) is None)
        defect = _known(body, signer, attribute) if invalid_credit else None
        tally.record("convert_record", f"{result['status']} {result['reason']}", invalid_credit=invalid_credit and not defect,
                     known=defect and defect.name)
        if defect:
            reject()
        assert check_result(result, None) == [] and not invalid_credit, (body[:300], signer, attribute, result)

    run()


def test_fuzz__conversion_batches__no_record_fails_and_no_batch_is_poisoned(partners, tally):
    """Whole batches through the Lambda handler: with healthy storage no record may be reported failed."""

    @fuzz.apply_seed
    @fuzz.hypothesis_settings(max_examples=max(3, fuzz.examples_per_operation() // 2))
    @given(st.lists(st.tuples(case_strategy(partners), st.sampled_from(("string",) * 6 + ("none", "other_name"))),
                    min_size=1, max_size=10))
    def run(cases):
        records = [record_for(body, signature_for(partners, body, signer), attribute)
                   for (body, signer), attribute in cases]
        if any(_known(body, signer, attribute) for (body, signer), attribute in cases):
            tally.record("handle_partner_conversions", "skipped_known_defect", known="batch")
            reject()
        response = partners.http.client.lambda_.invoke("handle_partner_conversions", {"Records": records})
        failures = (response.payload or {}).get("batchItemFailures") if isinstance(response.payload, dict) else None
        tally.record("handle_partner_conversions", "ok" if failures == [] else "records_failed",
                     crash=failures != [], cases=len(records))
        assert failures == [], (failures, [case for case in cases])

    run()


# -- bulk-grant chunks --------------------------------------------------------------------------------------------


class Batch:
    """A queued bulk-grant upload whose chunk messages the fuzzing names, rightly or wrongly."""

    def __init__(self, http):
        from chalicelib.api import dependencies

        self.http, self.world = http, http.world
        self.mykey = self.world.add_card()
        token = http.sign_in("operator")
        csv = f"申請番号,マイキーID,ポイント,付与理由\r\nQ-1,{self.mykey},100,ファズ\r\nQ-2,{self.mykey},200,ファズ\r\n"
        response = http.staff(token, "POST", f"/v1/municipalities/{self.world.home_code}/grant-batches",
                              {"file_name": "queue-fuzz.csv", "content_base64": base64.b64encode(csv.encode()).decode()})
        assert response.status_code == 201, response.body
        self.batch_id = response.json_body["batch_id"]
        self.queue = dependencies.get_grant_batch_queue()
        assert self.queue.messages, "the upload queued its chunks"

    def balance(self) -> int:
        return self.world.store.get_wallet(self.mykey, self.world.home_code).balance


def chunk_message_strategy(batch: Batch):
    valid = st.fixed_dictionaries({
        "municipality_code": fuzz.weighted((8, st.just(batch.world.home_code)), (2, st.just(batch.world.other_code))),
        "batch_id": fuzz.weighted((8, st.just(batch.batch_id)), (2, st.uuids().map(str))),
        "chunk_number": fuzz.weighted((8, st.just(0)), (2, st.sampled_from([1, -1, 10**6, 10**20]))),
    })
    return fuzz.weighted(
        (2, st.builds(fuzz.encode_json, valid, st.booleans())),
        (6, st.builds(fuzz.encode_json, fuzz.mutated(valid), st.booleans())),
        (2, st.one_of(st.sampled_from([raw.decode("utf-8", "replace") for raw in fuzz.RAW_BODIES]),
                      st.sampled_from(['{"municipality_code":"%s","batch_id":"%s","chunk_number":%s}' % (
                          batch.world.home_code, batch.batch_id, number) for number in ("1e400", "-1e400", "NaN",
                                                                                         "Infinity", "0.5", "true")]))),
    ).map(lambda raw: raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _unreadable_but_not_skipped(body: str) -> bool:
    """The grant-batch message shapes post_chunk_record lets through to a raise (see GRANT_BATCH_DEFECT)."""
    try:
        message = json.loads(body)
        number, keys = message.get("chunk_number"), (message.get("municipality_code"), message.get("batch_id"))
    except (ValueError, AttributeError, RecursionError):
        return False
    if isinstance(number, float) and number in (float("inf"), float("-inf")):
        return True
    return any(isinstance(key, str) and (key == "" or len(key.encode("utf-8", "surrogatepass")) > 1024) for key in keys)


GRANT_BATCH_BODIES = ('{"municipality_code":"%(code)s","batch_id":"%(batch)s","chunk_number":1e400}',
                      '{"municipality_code":"%(code)s","batch_id":"","chunk_number":0}',
                      '{"municipality_code":"","batch_id":"%(batch)s","chunk_number":0}')
GRANT_BATCH_DEFECT = (
    "defect: post_chunk_record checks a grant-batch message's field types but not their values: chunk_number "
    "1e400 (or the non-standard Infinity) raises OverflowError from int(inf), outside its except clause; an empty "
    "batch_id or municipality_code reaches DynamoDB as an empty key (ValidationException, raised as pynamodb "
    "GetError). Each is retried until the dead-letter queue instead of skipped as unreadable")


def test_fuzz__post_chunk_record__odd_messages_return_and_grant_nothing(http, tally):
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.api.grant_batch_handlers import post_chunk_record

    batch = Batch(http)
    posted = {"done": False}

    @fuzz.apply_seed
    @fuzz.hypothesis_settings(max_examples=fuzz.examples_per_operation() * 4)
    @given(chunk_message_strategy(batch))
    def run(body):
        before = batch.balance()
        try:
            outcome = post_chunk_record(SQSRecord(record_for(body, None, "none")))
        except Exception as error:  # noqa: BLE001
            known = GRANT_BATCH_FINDING.open and _unreadable_but_not_skipped(body)
            tally.record("post_chunk_record", "raised", crash=True, known="grant_batch_message_values" if known else None)
            if known:
                reject()
            raise AssertionError(f"post_chunk_record raised {error!r} for body={body[:300]!r}") from error
        granted = batch.balance() - before
        valid = _is_the_real_chunk(batch, body)
        tally.record("post_chunk_record", ",".join(sorted(str(key) for key in outcome)), invalid_credit=bool(granted and not valid))
        assert isinstance(outcome, dict)
        if granted:
            assert valid and not posted["done"] and granted == 300, (body, outcome, granted)
            posted["done"] = True

    run()


def _is_the_real_chunk(batch: Batch, body: str) -> bool:
    try:
        message = json.loads(body)
        return (message.get("municipality_code") == batch.world.home_code and message.get("batch_id") == batch.batch_id
                and int(message.get("chunk_number")) == 0)
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
        return False


def _reproduce_grant_batch(partners: Partners):
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from chalicelib.api.grant_batch_handlers import post_chunk_record

    batch = Batch(partners.http)
    raised = []
    for template in GRANT_BATCH_BODIES:
        body = template % {"code": batch.world.home_code, "batch": batch.batch_id}
        try:
            post_chunk_record(SQSRecord(record_for(body, None, "none")))
        except Exception as error:  # noqa: BLE001
            raised.append(f"{body} -> {error!r}"[:300])
    assert raised == [], raised


GRANT_BATCH_FINDING = QueueDefect("grant_batch_message_values", GRANT_BATCH_DEFECT,
                                  lambda body, signer, attribute: False,  # matched by _unreadable_but_not_skipped
                                  _reproduce_grant_batch, open=False)
QUEUE_DEFECTS.append(GRANT_BATCH_FINDING)


def _defect_params():
    for defect in QUEUE_DEFECTS:
        marks = [pytest.mark.xfail(strict=True, reason=defect.reason)] if defect.open else []
        yield pytest.param(defect, id=defect.name, marks=marks)


@pytest.mark.parametrize("defect", list(_defect_params()))
def test_queue_finding__handled_without_raising(partners, tally, defect):
    """The failing example of each defect the fuzzing found, kept for its owner (strict xfail while open)."""
    try:
        defect.reproduce(partners)
    except Exception:
        tally.record("reproduction", "raised", crash=True, known=defect.name if defect.open else None)
        tally.reproduced[defect.name] = {"reason": defect.reason, "open": defect.open, "raises": True}
        raise
    tally.reproduced[defect.name] = {"reason": defect.reason, "open": defect.open, "raises": False}


def test_fuzz__every_consumer__was_fuzzed(tally):
    """Runs last: every consumer got messages, and none credited or granted anything for an invalid one."""
    if not set(CONSUMERS) <= set(tally.per_consumer):
        pytest.skip("only some consumers were selected in this run")
    assert tally.invalid_credits == 0
