"""The My Key Platform through HTTP on DynamoDB Local: registration, links, suspension, feeds, renewal."""
from __future__ import annotations

import base64
import time
import uuid

import pytest

from chalicelib.domain import identifiers
from tests.world import issue_test_card, shared_ca

pytestmark = pytest.mark.integration


def _register(http, card, home=None, preferred=None, token=None):
    body = {**http.card_response(card, "registration"), "home_municipality_code": home or http.world.home_code}
    if preferred:
        body["preferred_mykey_id"] = preferred
    return http.post("/v1/registrations", body, token)


def _resident_token(http, card) -> str:
    response = http.post("/v1/resident-sessions", http.card_response(card, "resident_sign_in"))
    assert response.status_code == 201, response.body
    return response.json_body["token"]


def _pay(http, card, amount=10, keys=None):
    body = {"transfer_id": str(uuid.uuid4()), "municipality_code": http.world.home_code, "amount": amount,
            "card": {"certificate": card.certificate_base64}}
    return http.terminal(keys or http.world.shop, "POST", "/v1/payments", body)


def _lookup(http, card, keys=None):
    return http.terminal(keys or http.world.facility, "POST", "/v1/facility-link-lookups",
                         {"card": {"certificate": card.certificate_base64}})


def _code(response) -> str:
    return response.json_body["error"]["code"]


# -- registration ---------------------------------------------------------------------------------------


def test_registration__issues_random_mykey_id_and_returns_it_again(http, dynamodb_client, table_prefix):
    card = issue_test_card()
    first = _register(http, card)
    assert first.status_code == 201, first.body
    mykey_id = first.json_body["mykey_id"]
    assert identifiers.mykey_id(mykey_id) == mykey_id and first.json_body["newly_registered"] is True
    assert first.json_body["home_municipality_code"] == http.world.home_code
    again = _register(http, card)
    assert again.status_code == 200 and again.json_body["mykey_id"] == mykey_id
    assert again.json_body["newly_registered"] is False
    # The serial is never stored in clear, in any form, in any table.
    serial = card.serial_number
    dumped = repr([dynamodb_client.scan(TableName=name)["Items"] for name in dynamodb_client.list_tables()["TableNames"]
                   if name.startswith(table_prefix)])
    for form in (str(serial), format(serial, "x"), format(serial, "X")):
        assert form not in dumped


def test_registration__resident_chooses_a_free_mykey_id_or_is_told_it_is_taken(http):
    chosen = "".join(http.world.rng.choice(identifiers.MYKEY_ALPHABET) for _ in range(8))
    first = _register(http, issue_test_card(), preferred=chosen.lower())
    assert first.status_code == 201 and first.json_body["mykey_id"] == chosen
    taken = _register(http, issue_test_card(), preferred=chosen)
    assert taken.status_code == 409 and _code(taken) == "mykey_id_taken"


def test_registration__collisions__up_to_three_regenerations(http, monkeypatch):
    taken = [http.world.add_card() for _ in range(4)]
    fresh = "".join(http.world.rng.choice(identifiers.MYKEY_ALPHABET) for _ in range(8))
    proposals = iter(taken[:3] + [fresh])
    monkeypatch.setattr(identifiers, "new_mykey_id", lambda: next(proposals))
    assert _register(http, issue_test_card()).json_body["mykey_id"] == fresh
    proposals = iter(taken)
    monkeypatch.setattr(identifiers, "new_mykey_id", lambda: next(proposals))
    unavailable = _register(http, issue_test_card())
    assert unavailable.status_code == 503 and _code(unavailable) == "mykey_id_unavailable"


def test_registration__challenge_is_single_use_and_bound_to_its_card(http):
    card = issue_test_card()
    body = {**http.card_response(card, "registration"), "home_municipality_code": http.world.home_code}
    assert http.post("/v1/registrations", body).status_code == 201
    replay = http.post("/v1/registrations", body)
    assert replay.status_code == 401 and _code(replay) == "challenge_invalid"
    other = issue_test_card()
    forged = {**http.card_response(card, "registration"), "home_municipality_code": http.world.home_code}
    forged["card"]["certificate"] = other.certificate_base64  # signed by `card`, presented as `other`
    refused = http.post("/v1/registrations", forged)
    assert refused.status_code == 401 and _code(refused) == "card_signature_invalid"
    wrong_purpose = {**http.card_response(card, "resident_sign_in"), "home_municipality_code": http.world.home_code}
    assert _code(http.post("/v1/registrations", wrong_purpose)) == "challenge_invalid"


def test_registration__expired_challenge__is_refused(http):
    from chalicelib.api import dependencies

    card = issue_test_card()
    body = {**http.card_response(card, "registration"), "home_municipality_code": http.world.home_code}
    dependencies.override(clock=lambda: time.time() + 301)
    response = http.post("/v1/registrations", body)
    assert response.status_code == 401 and _code(response) == "challenge_invalid"


def test_registration__unknown_home_municipality__is_refused(http):
    response = _register(http, issue_test_card(), home="131016" if http.world.home_code != "131016" else "252034")
    assert response.status_code == 404 and _code(response) == "municipality_not_found"


def test_counter_registration__staff_action_audited_with_staff_and_terminal(http):
    token = http.sign_in("operator", counter_terminal_id="counter-3")
    response = _register(http, issue_test_card(), token=token)
    assert response.status_code == 201
    events = http.staff(token, "GET", f"/v1/municipalities/{http.world.home_code}/audit-events").json_body["events"]
    event = next(e for e in events if e["mykey_id"] == response.json_body["mykey_id"])
    assert event["action"] == "registration" and event["actor"].startswith("staff:operator-")
    assert event["counter_terminal_id"] == "counter-3"
    other = http.sign_in("operator", code=http.world.other_code)
    assert _code(_register(http, issue_test_card(), token=other)) == "staff_forbidden"


# -- facility links -------------------------------------------------------------------------------------


def test_facility_link__link_look_up_and_unlink_at_the_facility(http):
    world = http.world
    mykey = world.add_card()
    card = world.cards[mykey]
    linked = http.terminal(world.facility, "POST", "/v1/facility-links",
                           {"card": {"certificate": card.certificate_base64}, "local_id": "LIB-000123"})
    assert linked.status_code == 201, linked.body
    found = _lookup(http, card)
    assert found.status_code == 200 and found.json_body == {"facility_id": world.facility.merchant_id, "local_id": "LIB-000123"}
    at_shop = _lookup(http, card, keys=world.shop)
    assert at_shop.status_code == 403 and _code(at_shop) == "facility_links_not_offered"
    other = http.terminal(world.facility, "POST", "/v1/facility-links",
                          {"card": {"certificate": card.certificate_base64}, "local_id": "LIB-999"})
    assert other.status_code == 409 and _code(other) == "facility_link_exists"
    removed = http.terminal(world.facility, "POST", "/v1/facility-link-removals", {"card": {"certificate": card.certificate_base64}})
    assert removed.status_code == 200
    assert _code(_lookup(http, card)) == "facility_link_not_found"


def test_facility_link__individual_number_as_local_id__is_refused(http):
    world = http.world
    card = world.cards[world.add_card()]
    response = http.terminal(world.facility, "POST", "/v1/facility-links",
                             {"card": {"certificate": card.certificate_base64}, "local_id": "123456789018"})
    assert response.status_code == 400 and _code(response) == "individual_number_forbidden"


def test_resident__lists_and_removes_own_links(http):
    world = http.world
    mykey = world.add_card()
    card = world.cards[mykey]
    http.terminal(world.facility, "POST", "/v1/facility-links", {"card": {"certificate": card.certificate_base64}, "local_id": "M-42"})
    token = _resident_token(http, card)
    me = http.staff(token, "GET", "/v1/residents/me")
    assert me.json_body["mykey_id"] == mykey
    links = http.staff(token, "GET", "/v1/residents/me/facility-links").json_body["links"]
    assert [(l["facility_name"], l["local_id"]) for l in links] == [("長浜城歴史博物館", "M-42")]
    assert http.staff(token, "DELETE", f"/v1/residents/me/facility-links/{world.facility.merchant_id}").status_code == 204
    assert http.staff(token, "GET", "/v1/residents/me/facility-links").json_body["links"] == []
    assert http.staff(token, "DELETE", "/v1/resident-sessions/current").status_code == 204
    assert _code(http.staff(token, "GET", "/v1/residents/me")) == "resident_authentication_failed"


def test_resident_session__ends_after_five_idle_minutes(http):
    from chalicelib.api import dependencies

    world = http.world
    token = _resident_token(http, world.cards[world.add_card()])
    dependencies.override(clock=lambda: time.time() + 301)
    assert _code(http.staff(token, "GET", "/v1/residents/me")) == "resident_authentication_failed"


def test_lookups_and_identity_checks__leave_no_usage_history(http, table_snapshot):
    """100 facility lookups, 100 balance inquiries and 100 payments' identity checks (the card is
    verified, then the payment refused for its amount) write nothing but their spent request nonces."""
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 100)
    card = world.cards[mykey]
    http.terminal(world.facility, "POST", "/v1/facility-links", {"card": {"certificate": card.certificate_base64}, "local_id": "L-7"})
    before = table_snapshot()
    for _ in range(100):
        assert _lookup(http, card).status_code == 200
        inquiry = http.terminal(world.shop, "POST", "/v1/balance-inquiries", {"card": {"certificate": card.certificate_base64}})
        assert inquiry.status_code == 200
        assert _code(_pay(http, card, 101)) == "insufficient_balance"
    after = table_snapshot()
    # The data inventory documents nonce records (with a TTL) as the only trace of a signed request.
    assert len(after.pop("nonces")) == len(before.pop("nonces")) + 300
    assert after == before


# -- suspension and reinstatement -----------------------------------------------------------------------


def test_resident_suspension__card_refused_everywhere_and_audited(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 1000)
    card = world.cards[mykey]
    http.terminal(world.facility, "POST", "/v1/facility-links", {"card": {"certificate": card.certificate_base64}, "local_id": "X1"})
    token = _resident_token(http, card)
    stopped = http.staff(token, "POST", "/v1/residents/me/suspension")
    assert stopped.status_code == 200 and stopped.json_body["status"] == "suspended"
    assert _code(_pay(http, card)) == "card_suspended"
    inquiry = http.terminal(world.shop, "POST", "/v1/balance-inquiries", {"card": {"certificate": card.certificate_base64}})
    assert _code(inquiry) == "card_suspended"
    assert _code(_lookup(http, card)) == "card_suspended"
    assert _code(_register(http, card)) == "card_suspended"
    assert _code(http.post("/v1/resident-sessions", http.card_response(card, "resident_sign_in"))) == "card_suspended"
    assert _code(http.staff(token, "GET", "/v1/residents/me")) == "card_suspended"
    viewer = http.sign_in("viewer")
    events = http.staff(viewer, "GET", f"/v1/municipalities/{world.home_code}/audit-events").json_body["events"]
    assert any(e["action"] == "suspension" and e["actor"] == "resident" and e["mykey_id"] == mykey for e in events)


def test_call_centre_suspension__one_call_stops_the_card(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 500)
    token = http.sign_in("call_centre", code="platform", counter_terminal_id="cc-desk-12")
    response = http.staff(token, "POST", f"/v1/mykeys/{mykey}/suspension", {"reason": "紛失の電話連絡"})
    assert response.status_code == 200 and response.json_body["suspended_cards"] == 1
    assert _code(_pay(http, world.cards[mykey])) == "card_suspended"
    operator = http.sign_in("platform_operator", code="platform")
    events = http.staff(operator, "GET", "/v1/platform/audit-events").json_body["events"]
    event = next(e for e in events if e["mykey_id"] == mykey)
    assert event["counter_terminal_id"] == "cc-desk-12" and event["details"]["reason"] == "紛失の電話連絡"
    stranger = http.sign_in("operator", code=world.other_code)
    refused = http.staff(stranger, "POST", f"/v1/mykeys/{mykey}/suspension", {"reason": "x"})
    assert refused.status_code == 403 and _code(refused) == "staff_forbidden"


def test_reinstatement_on_a_new_card__keeps_mykey_balance_and_links(http):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 800)
    lost = world.cards[mykey]
    http.terminal(world.facility, "POST", "/v1/facility-links", {"card": {"certificate": lost.certificate_base64}, "local_id": "Z9"})
    call_centre = http.sign_in("call_centre", code="platform")
    http.staff(call_centre, "POST", f"/v1/mykeys/{mykey}/suspension", {"reason": "紛失"})
    # The call centre can stop a card but never bind a new one: that needs the resident in person.
    new_card = issue_test_card()
    assert _code(http.staff(call_centre, "POST", f"/v1/mykeys/{mykey}/reinstatement", http.card_response(new_card, "reinstatement"))) == "staff_forbidden"
    counter = http.sign_in("operator", counter_terminal_id="counter-1")
    response = http.staff(counter, "POST", f"/v1/mykeys/{mykey}/reinstatement", http.card_response(new_card, "reinstatement"))
    assert response.status_code == 200, response.body
    assert response.json_body == {"mykey_id": mykey, "status": "active", "new_card": True}
    paid = _pay(http, new_card, 300)
    assert paid.status_code == 201 and paid.json_body["balance_after"] == 500
    assert _lookup(http, new_card).json_body["local_id"] == "Z9"
    assert _code(_pay(http, lost)) == "card_suspended"  # the lost card stays stopped
    http.staff(call_centre, "POST", f"/v1/mykeys/{mykey}/suspension", {"reason": "再度の紛失"})
    someone_else = world.cards[world.add_card()]
    taken = http.staff(counter, "POST", f"/v1/mykeys/{mykey}/reinstatement", http.card_response(someone_else, "reinstatement"))
    assert taken.status_code == 409 and _code(taken) == "card_registered_elsewhere"


# -- J-LIS feeds ----------------------------------------------------------------------------------------


def test_revocation_feed_csv__registered_card_revoked_and_unregistered_serial_never_registers(http):
    world = http.world
    mykey = world.add_card()
    card = world.cards[mykey]
    never_registered = issue_test_card()
    operator = http.sign_in("platform_operator", code="platform")
    content = f"serial_number\n{card.serial_number:x}\n{never_registered.serial_number:X}\n"
    response = http.staff(operator, "POST", "/v1/platform/revocation-feeds", {"format": "csv", "content": content})
    assert response.status_code == 200, response.body
    assert response.json_body == {"revoked_registered": 1, "recorded_unregistered": 1, "already_revoked": 0}
    assert _code(_pay(http, card)) == "card_revoked"
    assert _code(_register(http, never_registered)) == "card_revoked"
    again = http.staff(operator, "POST", "/v1/platform/revocation-feeds", {"format": "csv", "content": content})
    assert again.json_body["already_revoked"] == 2


def test_revocation_feed_crl__accepted_only_when_signed_by_a_trusted_ca(http):
    from tools.devpki import DevCertificateAuthority

    world = http.world
    mykey = world.add_card()
    card = world.cards[mykey]
    operator = http.sign_in("platform_operator", code="platform")
    world.grant(mykey, 100)
    # Same CA name as the trusted one, different key: the CRL's signature is what must decide.
    impostor = DevCertificateAuthority.create()
    assert impostor.certificate.subject == shared_ca().certificate.subject
    forged = impostor.issue_crl([card.serial_number])
    refused = http.staff(operator, "POST", "/v1/platform/revocation-feeds",
                         {"format": "crl", "content_base64": base64.b64encode(forged).decode()})
    assert refused.status_code == 400 and _code(refused) == "feed_invalid"
    assert _pay(http, card).status_code == 201
    crl = shared_ca().issue_crl([card.serial_number])
    response = http.staff(operator, "POST", "/v1/platform/revocation-feeds",
                          {"format": "crl", "content_base64": base64.b64encode(crl).decode()})
    assert response.status_code == 200 and response.json_body["revoked_registered"] == 1
    assert _code(_pay(http, card)) == "card_revoked"


def test_feeds__only_the_platform_operator(http):
    for token in (http.sign_in("approver"), http.sign_in("call_centre", code="platform")):
        response = http.staff(token, "POST", "/v1/platform/revocation-feeds", {"format": "csv", "content": "serial_number\n"})
        assert response.status_code == 403 and _code(response) == "staff_forbidden"


def test_renewal_feed__new_certificate_keeps_mykey_balance_and_links_old_stops(http):
    from tests.world import CARD_NOT_BEFORE

    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 900)
    old = world.cards[mykey]
    http.terminal(world.facility, "POST", "/v1/facility-links", {"card": {"certificate": old.certificate_base64}, "local_id": "R-1"})
    new = shared_ca().issue_card(valid_days=3650, not_before=CARD_NOT_BEFORE)
    operator = http.sign_in("platform_operator", code="platform")
    content = f"old_serial_number,new_serial_number\n{old.serial_number:x},{new.serial_number:x}\n"
    response = http.staff(operator, "POST", "/v1/platform/renewal-feeds", {"content": content})
    assert response.status_code == 200 and response.json_body["renewed"] == 1, response.body
    paid = _pay(http, new, 100)
    assert paid.status_code == 201 and paid.json_body["balance_after"] == 800
    assert _lookup(http, new).json_body["local_id"] == "R-1"
    assert _code(_pay(http, old)) == "card_superseded"
    again = http.staff(operator, "POST", "/v1/platform/renewal-feeds", {"content": content})
    assert again.json_body["already_renewed"] == 1


def test_feed__malformed_csv__is_feed_invalid_and_changes_nothing(http, table_snapshot):
    operator = http.sign_in("platform_operator", code="platform")
    before = table_snapshot()
    for body in ({"format": "csv", "content": "serial\n12\n"}, {"format": "csv", "content": "serial_number\nnot-hex\n"}):
        response = http.staff(operator, "POST", "/v1/platform/revocation-feeds", body)
        assert response.status_code == 400 and _code(response) == "feed_invalid"
    after = table_snapshot()
    after.pop("staff_sessions"), before.pop("staff_sessions")
    assert after == before


def test_counter_staff__sign_in_grant_and_sign_out_are_audited_with_the_terminal(http):
    world = http.world
    mykey = world.add_card()
    token = http.sign_in("operator", counter_terminal_id="counter-7")
    grant = http.staff(token, "POST", f"/v1/municipalities/{world.home_code}/grants",
                       {"grant_id": str(uuid.uuid4()), "mykey_id": mykey, "amount": 300, "reason": "献血"})
    assert grant.status_code == 201
    assert http.staff(token, "DELETE", "/v1/staff/sessions/current").status_code == 204
    viewer = http.sign_in("viewer")
    events = http.staff(viewer, "GET", f"/v1/municipalities/{world.home_code}/audit-events").json_body["events"]
    mine = [e for e in events if e["actor"] == f"staff:operator-{world.home_code}-{world.staff_suffix}"]
    assert [e["action"] for e in mine][:3] == ["staff_sign_out", "grant", "staff_sign_in"]
    assert {e["counter_terminal_id"] for e in mine[:3]} == {"counter-7"}
    assert mine[1]["mykey_id"] == mykey and mine[1]["details"]["amount"] == 300


def test_renewal_feed__bad_row__refuses_the_whole_feed_and_changes_nothing(http):
    world = http.world
    mykey = world.add_card()
    old = world.cards[mykey]
    new = issue_test_card()
    operator = http.sign_in("platform_operator", code="platform")
    content = f"old_serial_number,new_serial_number\n{old.serial_number:x},{new.serial_number:x}\nzz,01\n"
    response = http.staff(operator, "POST", "/v1/platform/renewal-feeds", {"content": content})
    assert response.status_code == 400 and _code(response) == "feed_invalid"
    assert _pay(http, old).json_body["error"]["code"] == "insufficient_balance"  # still its card, not superseded


def test_reinstatement__of_a_working_mykey__is_refused(http):
    world = http.world
    mykey = world.add_card()
    counter = http.sign_in("operator")
    response = http.staff(counter, "POST", f"/v1/mykeys/{mykey}/reinstatement", http.card_response(issue_test_card(), "reinstatement"))
    assert response.status_code == 409 and _code(response) == "mykey_not_suspended"


def test_lone_surrogate_in_any_string__is_validation_failed_not_a_server_error(http):
    operator = http.sign_in("platform_operator", code="platform")
    raw = b'{"format": "csv", "content": "serial_number\\n\\ud800"}'
    response = http.client.http.post("/v1/platform/revocation-feeds", body=raw,
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {operator}"})
    assert response.status_code == 400 and _code(response) == "validation_failed"
