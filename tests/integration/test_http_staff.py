"""Staff sign-in, roles, municipality scope, grants and reports through the Chalice app."""
from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.integration


def _grant_body(mykey, amount=1000, **extra):
    return {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": amount, "reason": "健康診断受診", **extra}


def test_sign_in__wrong_password__is_refused_without_saying_which_part(http):
    response = http.client.http.post(
        "/v1/staff/sessions", headers={"Content-Type": "application/json"},
        body=json.dumps({"staff_id": f"operator-{http.world.home_code}-{http.world.staff_suffix}", "password": "nope"}).encode(),
    )
    unknown = http.client.http.post(
        "/v1/staff/sessions", headers={"Content-Type": "application/json"},
        body=json.dumps({"staff_id": "nobody", "password": "nope"}).encode(),
    )
    assert response.status_code == unknown.status_code == 401
    assert response.json_body["error"]["message"] == unknown.json_body["error"]["message"]


def test_grant__operator__posts_with_programme_expiry_and_shows_in_summary_and_history(http):
    world = http.world
    mykey = world.add_card()
    token = http.sign_in("operator")
    response = http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants", _grant_body(mykey.lower(), 1500))
    assert response.status_code == 201, response.body
    assert response.json_body["mykey_id"] == mykey and response.json_body["balance_after"] == 1500
    assert response.json_body["expires_on"].endswith("-03-31")
    report = http.staff(http.sign_in("viewer"), "GET", f"/v1/municipalities/{world.home_code}/reports/summary")
    assert report.status_code == 200
    assert (report.json_body["issued"], report.json_body["outstanding"]) == (1500, 1500)
    history = http.staff(token, "GET", f"/v1/municipalities/{world.home_code}/residents/{mykey}/history")
    assert [entry["amount"] for entry in history.json_body["transfers"]] == [1500]


def test_grant__same_grant_id_twice__posts_once(http):
    world = http.world
    mykey = world.add_card()
    token = http.sign_in("approver")
    body = _grant_body(mykey)
    path = f"/v1/municipalities/{world.home_code}/grants"
    first, again = http.staff(token, "POST", path, body), http.staff(token, "POST", path, body)
    assert first.status_code == again.status_code == 201 and first.json_body == again.json_body
    conflict = http.staff(token, "POST", path, dict(body, amount=999))
    assert conflict.status_code == 409 and conflict.json_body["error"]["code"] == "transfer_id_conflict"
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def test_grant__viewer__is_forbidden_and_nothing_written(http, table_snapshot):
    world = http.world
    mykey = world.add_card()
    token = http.sign_in("viewer")
    before = table_snapshot()
    response = http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants", _grant_body(mykey))
    assert response.status_code == 403 and response.json_body["error"]["code"] == "staff_forbidden"
    after = table_snapshot()
    after.pop("staff_sessions"), before.pop("staff_sessions")  # the session's last activity moves
    assert after == before


@pytest.mark.parametrize(
    "method,path",
    [("POST", "/v1/municipalities/{code}/grants"), ("GET", "/v1/municipalities/{code}/reports/summary"),
     ("GET", "/v1/municipalities/{code}/residents/ABCD2345/history")],
)
def test_staff_of_another_municipality__get_403(http, method, path):
    world = http.world
    token = http.sign_in("approver", code=world.other_code)
    body = _grant_body("ABCD2345") if method == "POST" else None
    response = http.staff(token, method, path.format(code=world.home_code), body)
    assert response.status_code == 403 and response.json_body["error"]["code"] == "staff_forbidden"


@pytest.mark.parametrize(
    "body,code",
    [
        ({"mykey_id": "ABCD1234"}, "invalid_mykey_id"),
        ({"mykey_id": "123456789018"}, "individual_number_forbidden"),
        ({"reason": "123456789018"}, "individual_number_forbidden"),
        ({"reason": "個人番号 123456789018 の方への付与"}, "individual_number_forbidden"),
        ({"reason": "1234-5678-9018"}, "individual_number_forbidden"),
        ({"reason": "転入 １２３４ ５６７８ ９０１８"}, "individual_number_forbidden"),
        ({"mykey_id": "1234-5678-9018"}, "individual_number_forbidden"),
        ({"amount": 0}, "invalid_amount"),
        ({"expires_on": "2020-01-01"}, "validation_failed"),
        ({"expires_on": "31/03/2027"}, "validation_failed"),
        ({"grant_id": "not-a-uuid"}, "validation_failed"),
        ({"mykey_id": "ZZZZ2345"}, "mykey_id_unknown"),
    ],
)
def test_grant__bad_input__is_refused_with_its_code(http, body, code):
    world = http.world
    mykey = world.add_card()
    token = http.sign_in("operator")
    response = http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants", {**_grant_body(mykey), **body})
    assert response.status_code in (400, 404) and response.json_body["error"]["code"] == code


@pytest.mark.parametrize("body", [
    {"grant_id": "550e8400-e29b-41d4-a716-123456789018"},  # a UUID ending in a valid number: an identifier
    {"reason": "個人番号ではない受付番号 123456789017 の付与"},  # wrong check digit
    {"reason": "連絡先 090-1234-5678（平日）"},                  # a phone number
    {"reason": "法人番号 1234567890183 の事業所経由"},          # 13 digits
])
def test_grant__numbers_that_are_not_individual_numbers__are_accepted(http, body):
    world = http.world
    mykey = world.add_card()
    response = http.staff(http.sign_in("operator"), "POST", f"/v1/municipalities/{world.home_code}/grants",
                          {**_grant_body(mykey), **body})
    assert response.status_code == 201, response.body
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def test_grant__beyond_budget__is_budget_exceeded(http):
    from chalicelib.services import ledger

    world = http.world
    mykey = world.add_card()
    municipality = world.store.get_municipality(world.home_code)
    for shard in range(municipality.budget_shards):
        world.store.put_counter(ledger.budget_counter_id(world.home_code, shard), 100)
    token = http.sign_in("operator")
    response = http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants", _grant_body(mykey, 401))
    assert response.status_code == 409 and response.json_body["error"]["code"] == "budget_exceeded"
    assert http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants", _grant_body(mykey, 400)).status_code == 201


def test_session__ends_on_sign_out(http):
    token = http.sign_in("viewer")
    path = f"/v1/municipalities/{http.world.home_code}/reports/summary"
    assert http.staff(token, "GET", path).status_code == 200
    assert http.staff(token, "DELETE", "/v1/staff/sessions/current").status_code == 204
    response = http.staff(token, "GET", path)
    assert response.status_code == 401 and response.json_body["error"]["code"] == "staff_authentication_failed"


def test_session__ends_after_inactivity(http):
    import time

    from chalicelib.api import dependencies

    token = http.sign_in("viewer")
    path = f"/v1/municipalities/{http.world.home_code}/reports/summary"
    dependencies.override(clock=lambda: time.time() + 899)
    assert http.staff(token, "GET", path).status_code == 200  # activity moves the idle deadline on
    dependencies.override(clock=lambda: time.time() + 899 + 901)
    assert http.staff(token, "GET", path).status_code == 401
    dependencies.override(clock=time.time)
    assert http.staff(token, "GET", path).status_code == 401  # the expired session is gone for good


def test_summary__period_filter_uses_japanese_days(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 700)
    token = http.sign_in("viewer")
    path = f"/v1/municipalities/{world.home_code}/reports/summary"
    assert http.staff(token, "GET", path + "?from=2020-01-01&to=2020-12-31").json_body["issued"] == 0
    assert http.staff(token, "GET", path + "?from=2020-01-01").json_body["issued"] == 700
    bad = http.staff(token, "GET", path + "?from=yesterday")
    assert bad.status_code == 400 and bad.json_body["error"]["code"] == "validation_failed"


def test_staff_route__no_session__is_401_before_the_path_is_looked_at(http):
    response = http.client.http.get("/v1/municipalities/999999/reports/summary")
    assert response.status_code == 401 and response.json_body["error"]["code"] == "staff_authentication_failed"


def test_summary__period_is_echoed_as_asked(http):
    token = http.sign_in("viewer")
    response = http.staff(token, "GET", f"/v1/municipalities/{http.world.home_code}/reports/summary?from=2026-04-01&to=2027-03-31")
    assert response.json_body["period"] == {"from": "2026-04-01", "to": "2027-03-31"}
