"""Each Lambda function uses only the tables and actions `tools/function_access.py` declares for it.

The platform template builds every function's IAM role from that declaration, so a call the declaration
does not list would be refused by IAM in AWS. Here each function's real handler runs against DynamoDB
Local while `tests/dynamodb_calls.py` records every DynamoDB call it makes, reduced to what IAM checks
(table, action, index):

- the functions Lambda invokes with events (queue consumers, scheduled jobs, the stream consumer, the
  onboarding custom resource) get realistic events after their work has been set up, and must both stay
  inside their declaration and use every grant of it, reads and writes (a grant nobody uses is access
  to take away);
- the API function runs a broad set of the existing end-to-end scenarios (payments, refunds, balance
  inquiries, grants with approvals and bulk CSV uploads, staff sessions, reports, registration and
  identity, the residents' portal, transfer-outs, partners and operators, administration), and a
  partner's signed reads of its own conversions and statement; every call must be declared. The
  functions those scenarios invoke (`lambda_.invoke`) are checked the same way.
"""
from __future__ import annotations

import base64
import inspect
import json
import random
import time
import uuid

import pytest

from tests.dynamodb_calls import Call, DynamoCallRecorder
from tools import function_access
from tools.function_access import FUNCTION_TABLES

# Fixtures of the scenario modules reused below (pytest finds a fixture by its name in this module).
from tests.integration.test_conversions import conversion_queues, partner  # noqa: F401
from tests.integration.test_http_administration import grant_batch_queue  # noqa: F401
from tests.integration.test_transfer_outs import transfers  # noqa: F401

pytestmark = pytest.mark.integration


def undeclared(calls: set[Call]) -> list[Call]:
    """The recorded calls the declaration does not allow the calling function."""
    return sorted(call for call in calls if not function_access.allows(call.function, call.table, call.action, call.index))


def unused_grants(function: str, calls: set[Call]) -> list[tuple[str, str, str | None]]:
    """The (table, action, index) grants declared for `function` that no recorded call used."""
    made = {(call.table, call.action, call.index) for call in calls if call.function == function}
    declared = {(table, action, None) for table, table_access in FUNCTION_TABLES[function].items()
                for action in table_access.actions}
    declared |= {(table, action, index) for table, table_access in FUNCTION_TABLES[function].items()
                 for index, action in table_access.index_actions}
    return sorted(declared - made, key=repr)


@pytest.fixture
def recorder(table_prefix, monkeypatch):
    """Records the DynamoDB calls of every HTTP request (the API function), every `lambda_.invoke` (that
    function) and every stream batch the local delivery hands the projection (`project_transfers`)."""
    import chalice.test

    from tools.localcloud import streams

    recorder = DynamoCallRecorder(table_prefix)

    def attributed(function_of, original):
        def call(self, *arguments, **keywords):
            with recorder.running(function_of(arguments)):
                return original(self, *arguments, **keywords)
        return call

    monkeypatch.setattr(chalice.test.TestHTTPClient, "request",
                        attributed(lambda arguments: "api_handler", chalice.test.TestHTTPClient.request))
    monkeypatch.setattr(chalice.test.TestLambdaClient, "invoke",
                        attributed(lambda arguments: arguments[0], chalice.test.TestLambdaClient.invoke))
    # The delivery's own reads (DescribeTable, the stream) are what Lambda's event source mapping does.
    monkeypatch.setattr(streams.StreamDelivery, "deliver_pending",
                        attributed(lambda arguments: None, streams.StreamDelivery.deliver_pending))
    monkeypatch.setattr(streams.StreamDelivery, "_call_handler",
                        attributed(lambda arguments: "project_transfers", streams.StreamDelivery._call_handler))
    with recorder.installed():
        yield recorder


def _assert_declared_and_used(recorder: DynamoCallRecorder, function: str) -> None:
    calls = recorder.of(function)
    assert calls, f"{function} made no DynamoDB call: the scenario did not reach it"
    assert undeclared(recorder.calls) == [], "declare these in tools/function_access.py (or stop making them)"
    assert unused_grants(function, calls) == [], f"{function} is granted access it never used"


def _scheduled(http):
    return http.client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])


def _sqs_record(body: str, queue: str, attributes: dict | None = None) -> dict:
    return {"messageId": str(uuid.uuid4()), "receiptHandle": uuid.uuid4().hex, "body": body, "attributes": {},
            "messageAttributes": attributes or {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "awsRegion": "ap-northeast-1", "eventSourceARN": f"arn:aws:sqs:ap-northeast-1:123456789012:{queue}"}


# -- the check itself -----------------------------------------------------------------------------------


def test_check__a_call_outside_the_declaration__is_refused(table_prefix):
    recorder = DynamoCallRecorder(table_prefix)
    from chalicelib.storage.models import WalletModel

    # The projection reading a wallet: a table its declaration does not name.
    with recorder.installed(), recorder.running("project_transfers"), pytest.raises(WalletModel.DoesNotExist):
        WalletModel.get("nobody", "000000")
    assert undeclared(recorder.calls) == [Call("project_transfers", "wallets", "GetItem")]


def test_check__transactions_and_batches__are_checked_per_table_and_item_action():
    from tests.dynamodb_calls import calls_of

    calls = set(calls_of("api_handler", "TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": "p-transfers"}}, {"Update": {"TableName": "p-wallets"}},
        {"ConditionCheck": {"TableName": "p-cards"}}, {"Delete": {"TableName": "p-partners"}}]}, "p-"))
    calls |= set(calls_of("api_handler", "BatchWriteItem", {"RequestItems": {"p-transfer_index": []}}, "p-"))
    calls |= set(calls_of("api_handler", "Query", {"TableName": "p-wallets", "IndexName": "by_expiry"}, "p-"))
    assert undeclared(calls) == [Call("api_handler", "partners", "DeleteItem"),
                                 Call("api_handler", "transfer_index", "BatchWriteItem"),
                                 Call("api_handler", "wallets", "Query", "by_expiry")]


def test_check__a_declared_grant_never_used__is_reported():
    calls = {Call("project_transfers", "transfer_index", "BatchWriteItem")}
    assert unused_grants("project_transfers", calls) == []
    assert unused_grants("project_transfers", set()) == [("transfer_index", "BatchWriteItem", None)]
    expiry = {Call("expire_points", "wallets", "Query", "by_expiry"), Call("expire_points", "wallets", "GetItem"),
              Call("expire_points", "wallets", "UpdateItem")}
    assert unused_grants("expire_points", expiry) == [("transfers", "PutItem", None)]


# -- the functions Lambda invokes with events -----------------------------------------------------------


def test_expire_points__reads_and_writes_only_what_is_declared(http, recorder):
    from chalicelib.api import dependencies

    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 40, expires_on=time.strftime("%Y-%m-%d", time.gmtime(time.time() + 9 * 3600)))
    dependencies.override(clock=lambda: time.time() + 2 * 86400)
    assert http.client.lambda_.invoke("expire_points", _scheduled(http)).payload["expire_transfers"] >= 1
    assert world.store.get_wallet(mykey, world.home_code).balance == 0
    _assert_declared_and_used(recorder, "expire_points")


def test_void_expired_holds__reads_and_writes_only_what_is_declared(transfers, recorder):
    from chalicelib.api import dependencies

    world = transfers.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    hold = transfers.request(mykey, 400).json_body
    dependencies.override(clock=lambda: time.time() + 601)
    assert transfers.http.client.lambda_.invoke("void_expired_holds", _scheduled(transfers.http)).payload["voided"] >= 1
    assert world.store.get_hold(hold["hold_id"])["state"] == "voided"
    _assert_declared_and_used(recorder, "void_expired_holds")


def test_partner_conversions_and_reserve_job__read_and_write_only_what_is_declared(partner, recorder):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from chalicelib.api import dependencies
    from chalicelib.api.conversion_handlers import CONVERSION_QUEUE
    from chalicelib.services import ports
    from tests.world import random_mykey_id

    world = partner.http.world
    mykey = world.add_card()

    def record(message: dict, key=None) -> dict:
        body = json.dumps(message, ensure_ascii=False)
        signature = base64.b64encode((key or partner.key).sign(body.encode())).decode()
        return _sqs_record(body, CONVERSION_QUEUE, {"signature": {"stringValue": signature, "dataType": "String"}})

    batch = [
        record(partner.message(mykey, 1000, municipality_code=world.home_code)),  # credited at home
        record(partner.message(mykey, 2000)),  # credited to the reserve
        # refused: a forged signature (not kept), a MyKey ID nobody registered (kept, answered the same again)
        record(partner.message(mykey, 500, municipality_code=world.home_code), key=Ed25519PrivateKey.generate()),
        record(partner.message(random_mykey_id(random.Random(uuid.uuid4().int)), 500)),
    ]
    response = partner.http.client.lambda_.invoke("handle_partner_conversions", {"Records": batch})
    assert response.payload == {"batchItemFailures": []}
    assert sorted(result["status"] for result in partner.results()) == ["credited", "credited", "rejected", "rejected"]
    _assert_declared_and_used(recorder, "handle_partner_conversions")

    # On day 15 the reserve's points move to the resident's home municipality.
    dependencies.override(clock=lambda: time.time() + 15 * 86400)
    assert partner.http.client.lambda_.invoke("move_expired_reserves", _scheduled(partner.http)).payload["reserve_moves"] >= 1
    assert world.store.get_wallet(mykey, ports.RESERVE).balance == 0
    _assert_declared_and_used(recorder, "move_expired_reserves")


def test_grant_batches__read_and_write_only_what_is_declared(http, recorder):
    from chalicelib.api import dependencies
    from chalicelib.api.grant_batch_handlers import GRANT_BATCH_QUEUE
    from chalicelib.services.ledger import budget_counter_id

    world = http.world
    residents = [world.add_card() for _ in range(3)]
    operator = http.sign_in("operator")
    amounts = [100, 150, 1000]
    text = "申請番号,マイキーID,ポイント,付与理由,有効期限\r\n" + "".join(
        f"K-{n}-{uuid.uuid4().hex[:6]},{mykey},{amount},健康診断,2099/3/31\r\n"
        for n, (mykey, amount) in enumerate(zip(residents, amounts)))
    uploaded = http.staff(operator, "POST", f"/v1/municipalities/{world.home_code}/grant-batches",
                          {"file_name": "付与.csv", "content_base64": base64.b64encode(text.encode("cp932")).decode()})
    assert uploaded.status_code == 201 and uploaded.json_body["status"] == "queued", uploaded.body
    # Meanwhile the budget ran low: 100 left in each of the four shards. The 150-point row finds its shard
    # too small and gathers the remainders (counters read, then moved); the 1000-point row is refused.
    for shard in range(4):
        world.store.put_counter(budget_counter_id(world.home_code, shard), 100)
    queued = dependencies.get_grant_batch_queue().messages
    assert queued
    for code, batch_id, chunk_number in queued:
        body = json.dumps({"municipality_code": code, "batch_id": batch_id, "chunk_number": chunk_number})
        response = http.client.lambda_.invoke("handle_grant_batches", {"Records": [_sqs_record(body, GRANT_BATCH_QUEUE)]})
        assert response.payload == {"batchItemFailures": []}
    assert [world.store.get_wallet(mykey, world.home_code).balance for mykey in residents] == [100, 150, 0]
    _assert_declared_and_used(recorder, "handle_grant_batches")


def test_project_transfers__writes_only_the_transfer_lists(http, recorder, dynamodb_client, table_prefix):
    world = http.world
    mykey = world.add_card()
    transfer = world.grant(mykey, 300)
    image = dynamodb_client.get_item(TableName=f"{table_prefix}transfers", Key={"transfer_id": {"S": transfer.transfer_id}},
                                     ConsistentRead=True)["Item"]
    event = {"Records": [{
        "eventID": uuid.uuid4().hex, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "ap-northeast-1",
        "dynamodb": {"Keys": {"transfer_id": image["transfer_id"]}, "NewImage": image, "SequenceNumber": "1",
                     "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"},
        "eventSourceARN": f"arn:aws:dynamodb:ap-northeast-1:123456789012:table/{table_prefix}transfers/stream/x",
    }]}
    assert http.client.lambda_.invoke("project_transfers", event).payload == {"batchItemFailures": []}
    assert [t.transfer_id for t in world.store.transfers_of_mykey(mykey)] == [transfer.transfer_id]
    _assert_declared_and_used(recorder, "project_transfers")


def test_register_tenant__create_update_delete__read_and_write_only_what_is_declared(http, recorder):
    import http.server as http_server
    import threading

    from tests.unit.test_onboarding import _event, _ResponseCatcher
    from tests.world import random_municipality_code

    _ResponseCatcher.received = []
    server = http_server.HTTPServer(("127.0.0.1", 0), _ResponseCatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/presigned"
    try:
        code = random_municipality_code(random.Random(uuid.uuid4().int))
        parameters = {"MunicipalityCode": code, "FirstStaffId": f"admin-{uuid.uuid4().hex[:8]}"}
        invoke = lambda event: http.client.lambda_.invoke("register_tenant", event).payload  # noqa: E731
        assert invoke(_event("Create", url, **parameters)) == {"answered": "SUCCESS"}
        # A smaller budget: the cut comes out of the shard with the most left (read, then updated).
        assert invoke(_event("Update", url, **parameters, AnnualBudget="9999000")) == {"answered": "SUCCESS"}
        assert invoke({**_event("Delete", url, **parameters), "PhysicalResourceId": f"municipality-{code}"}) == {
            "answered": "SUCCESS"}
    finally:
        server.shutdown()
    assert [answer["Status"] for _, answer in _ResponseCatcher.received] == ["SUCCESS"] * 3
    assert http.world.store.get_municipality(code).budget_total == 9_999_000
    _assert_declared_and_used(recorder, "register_tenant")


# -- the API function -----------------------------------------------------------------------------------

# Existing end-to-end scenarios, run again with the recorder on: together they reach every route group,
# and every table, action and index declared for the API function is used by at least one of them or by
# `test_api_payment_in_a_warm_container__guards_the_remembered_card` below (measured when the declaration
# was written; only the check that nothing undeclared is called is asserted, as the scenarios are chosen
# for breadth, not to account for each grant).
API_SCENARIOS = {
    "test_http_payments": [
        "test_payment__posts_and_answers_the_fixed_fields",
        "test_payment__signed_above_pin_free_limit__posts",
        "test_get_payment__settles_the_outbox_and_hides_other_merchants_payments",
        "test_refund__partial_full_and_beyond",
        "test_balance_inquiry__lists_only_what_this_merchant_accepts",
        "test_terminal_signature__disabled_terminal__is_refused",
    ],
    "test_http_staff": [
        "test_sign_in__wrong_password__is_refused_without_saying_which_part",
        "test_grant__operator__posts_with_programme_expiry_and_shows_in_summary_and_history",
        "test_grant__beyond_budget__is_budget_exceeded",
        "test_session__ends_on_sign_out",
        "test_summary__period_filter_uses_japanese_days",
    ],
    "test_http_administration": [
        "test_programme__approver_changes_settings_and_the_change_is_audited_with_before_and_after",
        "test_budget__shows_total_used_remaining_and_what_waits_for_approval",
        "test_merchant_and_terminal__registered_by_staff_take_payments_until_disabled",
        "test_merchant__disabled__stops_every_terminal_of_it",
        "test_staff__approver_creates_an_account_that_signs_in_and_disabling_it_ends_its_session",
        "test_approval__needs_a_second_approver_and_the_requester_cannot_approve",
        "test_reports__settlement_csv_for_excel_daily_chart_and_expiring_points",
        "test_bulk_grant__excel_shift_jis_file__is_checked_queued_posted_by_the_poller_and_reported",
        "test_staff_password__changed_by_its_owner__old_one_stops_working",
    ],
    "test_http_identity": [
        "test_registration__issues_random_mykey_id_and_returns_it_again",
        "test_counter_registration__staff_action_audited_with_staff_and_terminal",
        "test_facility_link__link_look_up_and_unlink_at_the_facility",
        "test_resident__lists_and_removes_own_links",
        "test_resident_suspension__card_refused_everywhere_and_audited",
        "test_call_centre_suspension__one_call_stops_the_card",
        "test_reinstatement_on_a_new_card__keeps_mykey_balance_and_links",
        "test_revocation_feed_csv__registered_card_revoked_and_unregistered_serial_never_registers",
        "test_renewal_feed__new_certificate_keeps_mykey_balance_and_links_old_stops",
        "test_counter_staff__sign_in_grant_and_sign_out_are_audited_with_the_terminal",
    ],
    "test_portal_api": [
        "test_sign_in__code_then_card_then_the_browser_collects_its_session_once",
        "test_resident_api__balances_with_expiry_history_and_home_municipality",
    ],
    "test_transfer_outs": [
        "test_hold_then_confirm__posted_once_with_duplicates_and_echo_checked",
        "test_reject__voids_and_returns_points_with_their_original_expiry",
        "test_deadline__job_voids_and_confirmation_after_it_is_refused",
        "test_operator_statement__confirmed_points_per_programme",
    ],
    "test_conversions": [
        "test_reserve__fourteen_days_then_home_municipality_and_resident_allocation",
        "test_statement__points_per_municipality_and_yen_owed_json_and_csv",
        "test_chalice_test_client__sqs_handler_with_distinct_message_ids",
    ],
}


@pytest.mark.parametrize("module_name, scenario_name", [
    (module_name, scenario_name) for module_name, names in API_SCENARIOS.items() for scenario_name in names])
def test_api_scenario__every_dynamodb_call_is_declared(module_name, scenario_name, request, recorder):
    import importlib

    scenario = getattr(importlib.import_module(f"tests.integration.{module_name}"), scenario_name)
    scenario(**{name: request.getfixturevalue(name) for name in inspect.signature(scenario).parameters})
    assert recorder.of("api_handler"), "the scenario made no request"
    assert undeclared(recorder.calls) == [], "declare these in tools/function_access.py (or stop making them)"


def test_api_partner_reads__day_inquiry_by_id_inquiry_and_statement__use_the_declared_grants(partner, recorder):
    """A partner's signed reads (docs/CONTRACTS.md#partner-reconciliation): its day, with a credit and refusals
    on it, its transactions by id, and its statement. They are the API function's only use of its grants on
    `conversion_rejections` (GetItem, Query by_partner) and of GetItem on `partners`."""
    from chalicelib.api import dependencies
    from chalicelib.auth.terminals import request_message
    from chalicelib.domain.time import japan_date
    from chalicelib.services import conversions

    world = partner.http.world
    mykey = world.add_card()
    now = time.time()

    def decide(message: dict) -> dict:
        """The consumer's decision, made by the harness: only the partner's HTTP reads are recorded here."""
        body = json.dumps(message, ensure_ascii=False)
        signature = base64.b64encode(partner.key.sign(body.encode())).decode()
        return conversions.process_message(dependencies.get_ledger_store(), dependencies.get_identity_store(), body,
                                           signature, lambda: now, dependencies.get_hash_secret())[0]

    # Hyphenated UUIDs: 32 bare hex digits hold an Individual Number once in about 800, and would be refused.
    credit = partner.message(mykey, 1000, municipality_code=world.home_code, txn=f"fa-{uuid.uuid4()}")
    refusal = partner.message("ZZZZ2345", 500, txn=f"fa-{uuid.uuid4()}")  # a MyKey ID nobody registered: refused, kept
    invalid = partner.message(mykey, 500, txn="order-1234-5678-9018")  # kept without its transaction id
    assert [decide(message)["status"] for message in (credit, refusal, invalid)] == ["credited", "rejected", "rejected"]

    def signed(method: str, path: str, body: dict | None = None):
        raw = b"" if body is None else json.dumps(body).encode()
        timestamp, nonce = str(int(time.time())), uuid.uuid4().hex
        signature = partner.key.sign(request_message(method, path.split("?")[0], timestamp, nonce, raw, "POINTS-PARTNER-V1"))
        headers = {"X-Partner-Id": partner.partner_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                   "X-Signature": base64.b64encode(signature).decode(), "Content-Type": "application/json"}
        response = partner.http.client.http.request(method, path, headers=headers, body=raw)
        assert response.status_code == 200, response.body
        return response

    day = japan_date(now).isoformat()
    by_day = signed("POST", "/v1/partner/conversion-inquiries", {"date": day, "cursor": None}).json_body["conversions"]
    # credits first; the two refusals were decided at the same moment, in either order
    assert [(line["partner_txn_id"], line["status"]) for line in by_day[:1]] == [(credit["partner_txn_id"], "credited")]
    assert sorted(str(line["partner_txn_id"]) for line in by_day[1:]) == sorted([refusal["partner_txn_id"], "None"])
    by_id = signed("POST", "/v1/partner/conversion-inquiries",
                   {"partner_txn_ids": [credit["partner_txn_id"], refusal["partner_txn_id"], "never-sent"]})
    assert [line["status"] for line in by_id.json_body["conversions"]] == ["credited", "rejected", "unknown"]
    assert signed("GET", f"/v1/partner/statements/{day[:7]}").json_body["total_points"] == 500  # 1000 at 1:2
    assert signed("GET", f"/v1/partner/statements/{day[:7]}?format=csv").body.startswith("\ufeff".encode())

    made = recorder.of("api_handler")
    assert {Call("api_handler", "partners", "GetItem"), Call("api_handler", "nonces", "PutItem"),
            Call("api_handler", "conversion_rejections", "GetItem"),
            Call("api_handler", "conversion_rejections", "Query", "by_partner"),
            Call("api_handler", "transfers", "Query", "by_partner")} <= made, sorted(made)
    assert undeclared(recorder.calls) == [], "declare these in tools/function_access.py (or stop making them)"


def test_api_payment_in_a_warm_container__guards_the_remembered_card(http, recorder):
    """A container that remembers a card (production's container cache) posts its next payment with a
    condition check on the card inside the transaction: `ConditionCheckItem` on cards."""
    from chalicelib.api import dependencies
    from chalicelib.storage.dynamo import DynamoLedgerStore
    from tests.conftest import REGION
    from tests.integration.test_http_payments import _payment

    world = http.world
    dependencies.override(ledger_store=DynamoLedgerStore(REGION, cache_seconds=60))
    mykey = world.add_card()
    world.grant(mykey, 1000)
    for amount in (100, 200):
        response = http.terminal(world.shop, "POST", "/v1/payments", _payment(world, mykey, amount))
        assert response.status_code == 201, response.body
    assert Call("api_handler", "cards", "ConditionCheckItem") in recorder.calls
    assert undeclared(recorder.calls) == []
