"""The staff API on DynamoDB Local: programme settings, merchants and terminals, staff accounts, two-person
approval, bulk CSV grants through the real queue path, reports and the audit log."""
from __future__ import annotations

import base64
import csv
import io
import json
import time
import uuid

import pytest

from chalicelib.domain.time import japan_date
from terminal_client.signing import new_terminal_key
from tests.world import STAFF_PASSWORD, TerminalKeys

pytestmark = pytest.mark.integration


def _payment_body(world, mykey, amount):
    return {"transfer_id": str(uuid.uuid4()), "municipality_code": world.home_code, "amount": amount,
            "card": {"certificate": world.cards[mykey].certificate_base64}}


def _base(world) -> str:
    return f"/v1/municipalities/{world.home_code}"


def _audit_actions(http, token) -> list[str]:
    response = http.staff(token, "GET", f"{_base(http.world)}/audit-events")
    assert response.status_code == 200, response.body
    return [event["action"] for event in response.json_body["events"]]


def test_programme__approver_changes_settings_and_the_change_is_audited_with_before_and_after(http):
    approver = http.sign_in("approver")
    before = http.staff(approver, "GET", f"{_base(http.world)}/programme").json_body
    changed = http.staff(approver, "PATCH", f"{_base(http.world)}/programme", {"pin_free_limit": 2000, "approval_threshold": 20_000})
    assert changed.status_code == 200, changed.body
    assert (changed.json_body["pin_free_limit"], changed.json_body["approval_threshold"]) == (2000, 20_000)
    assert http.world.store.get_municipality(http.world.home_code).pin_free_limit == 2000
    events = http.staff(approver, "GET", f"{_base(http.world)}/audit-events").json_body["events"]
    change = next(event for event in events if event["action"] == "programme_changed")
    assert change["details"]["pin_free_limit"] == {"before": before["pin_free_limit"], "after": 2000}


def test_programme__operator_cannot_change_settings(http):
    response = http.staff(http.sign_in("operator"), "PATCH", f"{_base(http.world)}/programme", {"pin_free_limit": 0})
    assert response.status_code == 403 and response.json_body["error"]["code"] == "staff_forbidden"


def test_budget__shows_total_used_remaining_and_what_waits_for_approval(http):
    world = http.world
    approver = http.sign_in("approver")
    http.staff(approver, "PATCH", f"{_base(world)}/programme", {"approval_threshold": 5000})
    mykey = world.add_card()
    operator = http.sign_in("operator")
    for amount in (1000, 7000):
        http.staff(operator, "POST", f"{_base(world)}/grants",
                   {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": amount, "reason": "子育て支援"})
    budget = http.staff(operator, "GET", f"{_base(world)}/budget").json_body
    assert budget["budget_used"] == 1000 and budget["budget_remaining"] == budget["budget_total"] - 1000
    assert (budget["awaiting_approval_points"], budget["awaiting_approval_count"]) == (7000, 1)


def test_merchant_and_terminal__registered_by_staff_take_payments_until_disabled(http):
    world = http.world
    operator = http.sign_in("operator")
    merchant_id = f"shop-{uuid.uuid4().hex[:8]}"
    registered = http.staff(operator, "POST", f"{_base(world)}/merchants", {"merchant_id": merchant_id, "name": "曳山まつり商店", "kind": "shop"})
    assert registered.status_code == 201 and registered.json_body["accepted_municipalities"] == [world.home_code]
    again = http.staff(operator, "POST", f"{_base(world)}/merchants", {"merchant_id": merchant_id, "name": "曳山まつり商店", "kind": "shop"})
    assert again.status_code == 200
    private, public = new_terminal_key()
    terminal_id = f"term-{uuid.uuid4().hex[:8]}"
    response = http.staff(operator, "POST", f"{_base(world)}/merchants/{merchant_id}/terminals",
                          {"terminal_id": terminal_id, "public_key": public, "label": "レジ1"})
    assert response.status_code == 201, response.body
    keys = TerminalKeys(terminal_id, merchant_id, private, public)
    listed = http.staff(operator, "GET", f"{_base(world)}/merchants").json_body["merchants"]
    assert [t["terminal_id"] for m in listed if m["merchant_id"] == merchant_id for t in m["terminals"]] == [terminal_id]

    mykey = world.add_card()
    world.grant(mykey, 1000)
    paid = http.terminal(keys, "POST", "/v1/payments", _payment_body(world, mykey, 300))
    assert paid.status_code == 201, paid.body

    assert http.staff(operator, "POST", f"{_base(world)}/terminals/{terminal_id}/disable").status_code == 200
    refused = http.terminal(keys, "POST", "/v1/payments", _payment_body(world, mykey, 300))
    assert refused.status_code == 401 and refused.json_body["error"]["code"] == "terminal_authentication_failed"
    assert world.store.get_wallet(mykey, world.home_code).balance == 700
    assert {"merchant_registered", "terminal_registered", "terminal_disabled"} <= set(_audit_actions(http, operator))


def test_merchant__disabled__stops_every_terminal_of_it(http):
    world = http.world
    operator = http.sign_in("operator")
    mykey = world.add_card()
    world.grant(mykey, 1000)
    assert http.staff(operator, "POST", f"{_base(world)}/merchants/{world.shop.merchant_id}/disable").status_code == 200
    refused = http.terminal(world.shop, "POST", "/v1/payments", _payment_body(world, mykey, 100))
    assert refused.status_code == 401
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def test_merchant__of_another_municipality__is_not_found_and_ids_are_not_taken_over(http):
    world = http.world
    operator = http.sign_in("operator")
    foreign = world.other_shop.merchant_id
    assert http.staff(operator, "POST", f"{_base(world)}/merchants/{foreign}/disable").json_body["error"]["code"] == "merchant_not_found"
    taken = http.staff(operator, "POST", f"{_base(world)}/merchants", {"merchant_id": foreign, "name": "乗っ取り", "kind": "shop"})
    assert taken.status_code == 409 and taken.json_body["error"]["code"] == "merchant_id_taken"
    other_terminal = http.staff(operator, "POST", f"{_base(world)}/terminals/{world.other_shop.terminal_id}/disable")
    assert other_terminal.status_code == 404 and other_terminal.json_body["error"]["code"] == "terminal_not_found"
    assert world.store.get_merchant(foreign).active and world.store.get_terminal(world.other_shop.terminal_id).active


def test_staff__approver_creates_an_account_that_signs_in_and_disabling_it_ends_its_session(http):
    world = http.world
    approver = http.sign_in("approver")
    staff_id = f"clerk-{uuid.uuid4().hex[:8]}"
    created = http.staff(approver, "POST", f"{_base(world)}/staff", {"staff_id": staff_id, "role": "operator"})
    assert created.status_code == 201
    password = created.json_body["initial_password"]
    signed_in = http.post("/v1/staff/sessions", {"staff_id": staff_id, "password": password})
    assert signed_in.status_code == 201
    token = signed_in.json_body["token"]
    me = http.staff(token, "GET", "/v1/staff/sessions/current").json_body
    assert (me["staff_id"], me["role"], me["municipality"]["name"]) == (staff_id, "operator", "長浜市")
    listed = http.staff(approver, "GET", f"{_base(world)}/staff").json_body["staff"]
    assert any(entry["staff_id"] == staff_id and "password_hash" not in entry for entry in listed)

    assert http.staff(approver, "POST", f"{_base(world)}/staff/{staff_id}/disable").status_code == 200
    assert http.staff(token, "GET", f"{_base(world)}/budget").status_code == 401
    assert http.post("/v1/staff/sessions", {"staff_id": staff_id, "password": password}).status_code == 401


def test_approval__needs_a_second_approver_and_the_requester_cannot_approve(http):
    world = http.world
    approver = http.sign_in("approver")
    http.staff(approver, "PATCH", f"{_base(world)}/programme", {"approval_threshold": 5000})
    second_id = f"approver2-{uuid.uuid4().hex[:8]}"
    second_password = http.staff(approver, "POST", f"{_base(world)}/staff", {"staff_id": second_id, "role": "approver"}).json_body["initial_password"]
    second = http.post("/v1/staff/sessions", {"staff_id": second_id, "password": second_password}).json_body["token"]
    mykey = world.add_card()
    body = {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": 8000, "reason": "災害見舞い"}

    requested = http.staff(approver, "POST", f"{_base(world)}/grants", body)
    assert requested.status_code == 202 and requested.json_body["status"] == "awaiting_approval"
    assert world.store.get_wallet(mykey, world.home_code).balance == 0
    pending = http.staff(second, "GET", f"{_base(world)}/approvals?state=pending").json_body["approvals"]
    assert [a["grant_id"] for a in pending] == [body["grant_id"]]

    own = http.staff(approver, "POST", f"{_base(world)}/approvals/{body['grant_id']}/approve")
    assert own.status_code == 403 and own.json_body["error"]["code"] == "self_approval_forbidden"
    operator = http.staff(http.sign_in("operator"), "POST", f"{_base(world)}/approvals/{body['grant_id']}/approve")
    assert operator.status_code == 403 and operator.json_body["error"]["code"] == "staff_forbidden"

    approved = http.staff(second, "POST", f"{_base(world)}/approvals/{body['grant_id']}/approve")
    assert approved.status_code == 200, approved.body
    assert approved.json_body["grant"]["amount"] == 8000 and approved.json_body["approval"]["decided_by"] == second_id
    assert world.store.get_wallet(mykey, world.home_code).balance == 8000
    replay = http.staff(approver, "POST", f"{_base(world)}/grants", body)
    assert replay.status_code == 201 and replay.json_body["grant_id"] == body["grant_id"]
    assert world.store.get_wallet(mykey, world.home_code).balance == 8000
    assert {"grant_requested", "approval_granted"} <= set(_audit_actions(http, approver))


def test_reports__settlement_csv_for_excel_daily_chart_and_expiring_points(http):
    world = http.world
    mykey = world.add_card()
    # Today in Japan (the points' last usable day), whatever the machine's time zone.
    soon = japan_date(time.time()).isoformat()
    operator = http.sign_in("operator")
    http.staff(operator, "POST", f"{_base(world)}/grants",
               {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": 2000, "reason": "ボランティア", "expires_on": "2099-12-31"})
    payment = http.terminal(world.shop, "POST", "/v1/payments", _payment_body(world, mykey, 1200))
    assert payment.status_code == 201
    refund = http.terminal(world.shop, "POST", f"/v1/payments/{payment.json_body['transfer_id']}/refunds",
                           {"refund_id": str(uuid.uuid4()), "amount": 200})
    assert refund.status_code == 201, refund.body
    # Granted after the payment, which would otherwise have spent these soonest-expiring points first.
    http.staff(operator, "POST", f"{_base(world)}/grants",
               {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": 300, "reason": "清掃活動", "expires_on": soon})
    viewer = http.sign_in("viewer")
    month = payment.json_body["posted_at"][:7]  # the test runs within one Japanese month except at its edge

    settlement = http.staff(viewer, "GET", f"{_base(world)}/reports/settlements?format=csv")
    assert settlement.status_code == 200
    headers = {name.lower(): value for name, value in settlement.headers.items()}
    assert headers["content-type"].startswith("text/csv") and "attachment" in headers["content-disposition"]
    raw = settlement.body
    assert raw.startswith("\ufeff".encode()) and b"\r\n" in raw
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:2] == ["加盟店ID", "加盟店名"]
    line = next(row for row in rows if row[0] == world.shop.merchant_id)
    assert line[1] == "黒壁スクエア商店" and line[4:] == ["1", "1200", "1", "200", "1000"]
    assert rows[-1][0] == "合計" and rows[-1][-1] == "1000"
    as_json = http.staff(viewer, "GET", f"{_base(world)}/reports/settlements?month={month}").json_body
    assert as_json["total_settlement_amount"] in (1000, 0)

    daily = http.staff(viewer, "GET", f"{_base(world)}/reports/daily").json_body
    assert len(daily["days"]) == 30 and sum(day["issued"] for day in daily["days"]) == 2300
    assert sum(day["spent"] for day in daily["days"]) == 1200

    expiring = http.staff(viewer, "GET", f"{_base(world)}/reports/expiring?days=30").json_body
    assert expiring["total_points"] == 300 and expiring["by_date"] == [{"expires_on": soon, "points": 300, "wallets": 1}]
    assert http.staff(viewer, "GET", f"{_base(world)}/reports/expiring?days=0").status_code == 400
    assert http.staff(viewer, "GET", f"{_base(world)}/reports/settlements?month=2026-13").status_code == 400


@pytest.fixture
def grant_batch_queue(http, sqs_client):
    from chalicelib.api import dependencies as deps
    from tools.localcloud.queues import create_conversion_queues, create_grant_batch_queues
    from tools.localcloud.sqs_poller import SqsPoller

    queue_url, dead_letters = create_grant_batch_queues(sqs_client, visibility_timeout_seconds=2)
    create_conversion_queues(sqs_client)
    deps.reset_queue_urls()
    deps.override(sqs_client=sqs_client, grant_batch_queue=deps.SqsGrantBatchQueue())
    poller = SqsPoller(__import__("app").app, sqs_client, wait_seconds=0)
    yield poller
    deps.reset_queue_urls()


def _upload(http, token, text: str, encoding: str, file_name="付与.csv"):
    content = text.encode(encoding)
    return http.staff(token, "POST", f"{_base(http.world)}/grant-batches",
                      {"file_name": file_name, "content_base64": base64.b64encode(content).decode()})


def test_bulk_grant__excel_shift_jis_file__is_checked_queued_posted_by_the_poller_and_reported(http, grant_batch_queue):
    world = http.world
    residents = [world.add_card() for _ in range(3)]
    operator = http.sign_in("operator")
    bad = _upload(http, operator, "申請番号,マイキーID,ポイント,付与理由\r\n"
                  f"K-1,{residents[0]},100,健康診断\r\nK-2,ABCD0000,100,健康診断\r\n", "cp932")
    assert bad.status_code == 201 and bad.json_body["status"] == "invalid"
    assert [(e["row"], e["column"]) for e in bad.json_body["errors"]] == [(3, "マイキーID")]
    report = http.staff(operator, "GET", f"{_base(world)}/grant-batches/{bad.json_body['batch_id']}/report")
    assert "マイキーID" in report.body.decode("utf-8-sig").splitlines()[1]
    assert world.store.get_wallet(residents[0], world.home_code).balance == 0

    text = "申請番号,マイキーID,ポイント,付与理由,有効期限\r\n" + "".join(
        f"K-{n + 10},{mykey},{100 * (n + 1)},健康診断,2099/3/31\r\n" for n, mykey in enumerate(residents))
    uploaded = _upload(http, operator, text, "cp932")
    assert uploaded.status_code == 201 and uploaded.json_body["status"] == "queued", uploaded.body
    assert uploaded.json_body["encoding"] == "cp932" and uploaded.json_body["total_amount"] == 600
    assert _upload(http, operator, text, "cp932").status_code == 200  # the same file again: the same batch

    while grant_batch_queue.poll_once():
        pass
    batch = http.staff(operator, "GET", f"{_base(world)}/grant-batches/{uploaded.json_body['batch_id']}").json_body
    assert batch["status"] == "completed" and batch["progress"] == {"processed_rows": 3, "percent": 100}
    assert [world.store.get_wallet(m, world.home_code).balance for m in residents] == [100, 200, 300]
    report = http.staff(operator, "GET", f"{_base(world)}/grant-batches/{batch['batch_id']}/report").body.decode("utf-8-sig")
    assert [row[4] for row in csv.reader(io.StringIO(report))][1:] == ["付与しました"] * 3
    listed = http.staff(operator, "GET", f"{_base(world)}/grant-batches").json_body["batches"]
    assert {b["batch_id"] for b in listed} >= {batch["batch_id"], bad.json_body["batch_id"]}
    assert "grant_batch_uploaded" in _audit_actions(http, operator)


def test_bulk_grant__individual_number_written_inside_a_cell__is_reported_with_its_row_and_never_granted(http):
    world = http.world
    resident = world.add_card()
    operator = http.sign_in("operator")
    uploaded = _upload(http, operator, "申請番号,マイキーID,ポイント,付与理由\r\n"
                       f"K-1,{resident},100,個人番号 1234-5678-9018 の方への付与\r\n"
                       f"K-2,{resident},100,転入（１２３４５６７８９０１８）\r\n", "cp932")
    assert uploaded.status_code == 201 and uploaded.json_body["status"] == "invalid", uploaded.body
    assert [(e["row"], e["column"], e["code"]) for e in uploaded.json_body["errors"]] == [
        (2, "付与理由", "individual_number_forbidden"), (3, "付与理由", "individual_number_forbidden")]
    # The report says where; the number itself is kept nowhere, not even in the batch's record.
    stored = json.dumps(http.staff(operator, "GET", f"{_base(world)}/grant-batches/{uploaded.json_body['batch_id']}").json_body,
                        ensure_ascii=False)
    assert all(number not in stored for number in ("1234-5678-9018", "１２３４５６７８９０１８", "123456789018"))
    assert world.store.get_wallet(resident, world.home_code).balance == 0


def test_bulk_grant__oversized_or_garbled_upload__is_refused_with_a_clear_code(http):
    operator = http.sign_in("operator")
    garbled = http.staff(operator, "POST", f"{_base(http.world)}/grant-batches", {"file_name": "x.csv", "content_base64": "@@@"})
    assert garbled.status_code == 400 and garbled.json_body["error"]["field"] == "content_base64"
    utf16 = _upload(http, operator, "申請番号,マイキーID,ポイント,付与理由\r\n", "utf-16")
    assert utf16.status_code == 400 and utf16.json_body["error"]["code"] == "csv_encoding_unsupported"
    names = _upload(http, operator, "申請番号,氏名,マイキーID,ポイント,付与理由\r\n", "utf-8")
    assert names.status_code == 400 and names.json_body["error"]["code"] == "csv_header_invalid"


def test_staff_password__wrong_for_the_new_account__is_refused(http):
    response = http.post("/v1/staff/sessions", {"staff_id": f"viewer-{http.world.home_code}-{http.world.staff_suffix}",
                                                "password": STAFF_PASSWORD + "x"})
    assert response.status_code == 401 and json.loads(response.body)["error"]["code"] == "staff_authentication_failed"


def test_staff_password__changed_by_its_owner__old_one_stops_working(http):
    world = http.world
    approver = http.sign_in("approver")
    staff_id = f"clerk-{uuid.uuid4().hex[:8]}"
    first = http.staff(approver, "POST", f"{_base(world)}/staff", {"staff_id": staff_id, "role": "viewer"}).json_body["initial_password"]
    token = http.post("/v1/staff/sessions", {"staff_id": staff_id, "password": first}).json_body["token"]
    wrong = http.staff(token, "POST", "/v1/staff/password", {"current_password": "nope", "new_password": "a-new-password-1"})
    assert wrong.status_code == 401
    short = http.staff(token, "POST", "/v1/staff/password", {"current_password": first, "new_password": "short"})
    assert short.status_code == 400 and short.json_body["error"]["field"] == "new_password"
    changed = http.staff(token, "POST", "/v1/staff/password", {"current_password": first, "new_password": "a-new-password-1"})
    assert changed.status_code == 204
    assert http.post("/v1/staff/sessions", {"staff_id": staff_id, "password": first}).status_code == 401
    assert http.post("/v1/staff/sessions", {"staff_id": staff_id, "password": "a-new-password-1"}).status_code == 201
