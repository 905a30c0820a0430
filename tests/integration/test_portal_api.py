"""The resident portal's JSON API on DynamoDB Local: card sign-in by one-time code, and what residents see."""
from __future__ import annotations

import base64
import time

import pytest

from chalicelib.services.identity import challenge_message

pytestmark = pytest.mark.integration


def _code(response):
    return response.json_body["error"]["code"]


def _answer(http, code, card, tamper=False):
    challenge = http.client.http.get(f"/v1/portal/sign-in-requests/{code}").json_body
    message = challenge_message("portal_sign_in", code, challenge["challenge"])
    assert message.decode() == challenge["message_to_sign"]
    signature = card.sign(message + (b"x" if tamper else b""))
    return http.post(f"/v1/portal/sign-in-requests/{code}/card-response",
                     {"card": {"certificate": card.certificate_base64, "signature": base64.b64encode(signature).decode()}})


def _signed_in(http, mykey):
    request = http.post("/v1/portal/sign-in-requests", {}).json_body
    assert _answer(http, request["code"], http.world.cards[mykey]).status_code == 200
    session = http.post(f"/v1/portal/sign-in-requests/{request['code']}/session", {"poll_secret": request["poll_secret"]})
    assert session.status_code == 201 and session.json_body["mykey_id"] == mykey
    return session.json_body["token"]


def test_sign_in__code_then_card_then_the_browser_collects_its_session_once(http):
    world = http.world
    mykey = world.add_card()
    started = http.post("/v1/portal/sign-in-requests", {})
    assert started.status_code == 201 and started.json_body["qr_svg"].lstrip().startswith("<svg")
    request = started.json_body
    poll = f"/v1/portal/sign-in-requests/{request['code']}/session"
    assert http.post(poll, {"poll_secret": request["poll_secret"]}).json_body == {"status": "waiting"}
    assert _answer(http, request["code"], world.cards[mykey]).json_body["status"] == "approved"
    # Someone who saw the code but not the browser's secret gets nothing.
    assert _code(http.post(poll, {"poll_secret": "stolen-code-guess"})) == "challenge_invalid"
    session = http.post(poll, {"poll_secret": request["poll_secret"]})
    assert session.status_code == 201
    assert _code(http.post(poll, {"poll_secret": request["poll_secret"]})) == "challenge_invalid"  # once only
    me = http.staff(session.json_body["token"], "GET", "/v1/residents/me")
    assert me.json_body["mykey_id"] == mykey


def test_sign_in__a_code_without_the_card_and_pin_is_useless(http):
    world = http.world
    mykey = world.add_card()
    request = http.post("/v1/portal/sign-in-requests", {}).json_body
    refused = _answer(http, request["code"], world.cards[mykey], tamper=True)
    assert refused.status_code == 401 and _code(refused) == "card_signature_invalid"
    assert http.post(f"/v1/portal/sign-in-requests/{request['code']}/session",
                     {"poll_secret": request["poll_secret"]}).json_body == {"status": "waiting"}
    # Once one card has answered, no other card can take the request over.
    assert _answer(http, request["code"], world.cards[mykey]).status_code == 200
    other = world.cards[world.add_card()]
    assert _code(_answer_raw(http, request["code"], other)) == "challenge_invalid"


def _answer_raw(http, code, card):
    return http.post(f"/v1/portal/sign-in-requests/{code}/card-response",
                     {"card": {"certificate": card.certificate_base64, "signature": base64.b64encode(b"\0" * 256).decode()}})


def test_sign_in__expired_code_and_suspended_card_are_refused(http):
    from chalicelib.api import dependencies

    world = http.world
    suspended = world.add_card(status="suspended")
    request = http.post("/v1/portal/sign-in-requests", {}).json_body
    assert _code(_answer(http, request["code"], world.cards[suspended])) == "card_suspended"
    late = http.post("/v1/portal/sign-in-requests", {}).json_body
    dependencies.override(clock=lambda: time.time() + 301)
    assert _code(http.client.http.get(f"/v1/portal/sign-in-requests/{late['code']}")) == "challenge_invalid"


def test_resident_api__balances_with_expiry_history_and_home_municipality(http):
    world = http.world
    mykey = world.add_card()
    soon = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 9 * 3600 + 10 * 86400))
    world.grant(mykey, 300, expires_on=soon)
    world.grant(mykey, 700)
    world.grant(mykey, 50, code=world.other_code)
    world.now += 1  # the world's clock stands still otherwise; history is newest first
    world.pay(mykey, 100)
    token = _signed_in(http, mykey)
    balances = {b["municipality_code"]: b for b in http.staff(token, "GET", "/v1/residents/me/balances").json_body["balances"]}
    assert balances[world.home_code]["balance"] == 900 and balances[world.home_code]["expiring_within_30_days"] == 200
    assert balances[world.other_code]["balance"] == 50
    history = http.staff(token, "GET", "/v1/residents/me/history").json_body["transfers"]
    assert [entry["kind"] for entry in history][0] == "payment" and history[0]["merchant_name"] == "黒壁スクエア商店"
    assert set(history[0]) == {"transfer_id", "kind", "amount", "wallet_change", "municipality_code", "merchant_name",
                               "reason", "posted_at", "balance_after"}
    listed = http.client.http.get("/v1/portal/municipalities").json_body["municipalities"]
    assert {world.home_code, world.other_code} <= {m["municipality_code"] for m in listed}
    moved = http.staff(token, "PUT", "/v1/residents/me/home-municipality", {"municipality_code": world.other_code})
    assert moved.status_code == 200
    assert http.staff(token, "GET", "/v1/residents/me").json_body["home_municipality_code"] == world.other_code
    unknown = http.staff(token, "PUT", "/v1/residents/me/home-municipality", {"municipality_code": "131016" if world.home_code != "131016" else "252034"})
    assert _code(unknown) == "municipality_not_found"


def test_portal_page__is_served_in_japanese_without_outside_resources(http):
    response = http.client.http.get("/portal")
    page = response.body.decode("utf-8")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert '<html lang="ja">' in page and "マイナンバーカードでサインイン" in page
    assert "http://" not in page and "https://" not in page


def test_sign_in_request__unknown_fields_are_refused(http):
    response = http.post("/v1/portal/sign-in-requests", {"mykey_id": "ABCD2345"})
    assert response.status_code == 400 and _code(response) == "validation_failed"
