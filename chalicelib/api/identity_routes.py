"""My Key Platform endpoints: challenges, registration, resident sessions and what residents manage
themselves, staff suspension and reinstatement, the platform operator's J-LIS feeds, audit events.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import base64_field, created, endpoint, json_object, refuse_unknown_fields, required, signed_card
from chalicelib.api.staff_routes import bearer_token, current_staff_session, platform_operator_session
from chalicelib.domain import identifiers

identity_api = Blueprint(__name__)
# J-LIS feeds come in bulk: up to 5 MiB (under Lambda's 6 MB request limit) instead of 64 KiB.
FEED_MAX_BYTES = 5 * 1024 * 1024


def _card_response(body: dict):
    from chalicelib.services.identity import CardResponse

    certificate, signature = signed_card(body)
    challenge_id = required(body, "challenge_id")
    if not identifiers.is_operation_id(challenge_id):
        raise errors.ChallengeInvalid()
    return CardResponse(challenge_id=challenge_id, certificate_der=certificate, signature=signature)


def _mykey_body(mykey) -> dict:
    return {"mykey_id": mykey.mykey_id, "status": mykey.status, "home_municipality_code": mykey.home_municipality_code,
            "registered_at": mykey.registered_at}


def _staff_actor(session):
    from chalicelib.services.identity import Actor

    return Actor(f"staff:{session.staff_id}", session.counter_terminal_id, session.municipality_code)


# -- challenges and registration ------------------------------------------------------------------------


@identity_api.route("/v1/challenges", methods=["POST"])
@endpoint(identity_api)
def create_challenge():
    from chalicelib.services import identity

    body = json_object(identity_api.current_request)
    refuse_unknown_fields(body, {"purpose"})
    return created(identity.issue_challenge(deps.get_identity_store(), required(body, "purpose"), deps.get_clock()))


@identity_api.route("/v1/registrations", methods=["POST"])
@endpoint(identity_api)
def create_registration():
    from chalicelib.services import identity, staff

    request = identity_api.current_request
    # Counter mode: staff registering a resident at the town hall sign in first, and are audited.
    session = current_staff_session(request) if bearer_token(request) else None
    body = json_object(request)
    refuse_unknown_fields(body, {"challenge_id", "card", "home_municipality_code", "preferred_mykey_id"})
    home = identifiers.municipality_code(required(body, "home_municipality_code"), "home_municipality_code")
    preferred = body.get("preferred_mykey_id")
    preferred = identifiers.mykey_id(preferred, "preferred_mykey_id") if preferred is not None else None
    response = _card_response(body)
    if session is not None:
        staff.authorize(session, home, staff.OPERATOR)
        actor = _staff_actor(session)
    else:
        actor = identity.Actor("resident")
    mykey, new = identity.register(deps.get_identity_store(), deps.get_ledger_store(), deps.get_card_authority(),
                                   response, home, preferred, actor, deps.get_clock())
    return Response(body={**_mykey_body(mykey), "newly_registered": new}, status_code=201 if new else 200,
                    headers={"Content-Type": "application/json"})


# -- residents ------------------------------------------------------------------------------------------


def _resident():
    from chalicelib.services import identity

    request = identity_api.current_request
    return identity.resident_session(deps.get_identity_store(), bearer_token(request), deps.get_clock())


@identity_api.route("/v1/resident-sessions", methods=["POST"])
@endpoint(identity_api)
def resident_sign_in():
    from chalicelib.services import identity

    body = json_object(identity_api.current_request)
    refuse_unknown_fields(body, {"challenge_id", "card"})
    token, mykey = identity.resident_sign_in(deps.get_identity_store(), deps.get_card_authority(), _card_response(body),
                                             deps.get_clock())
    return created({"token": token, **_mykey_body(mykey),
                    "idle_timeout_seconds": identity.RESIDENT_SESSION_IDLE_SECONDS})


@identity_api.route("/v1/resident-sessions/current", methods=["DELETE"])
@endpoint(identity_api)
def resident_sign_out():
    from chalicelib.services import identity

    token = bearer_token(identity_api.current_request)
    if not token:
        raise errors.ResidentAuthenticationFailed()
    identity.resident_sign_out(deps.get_identity_store(), token)
    return Response(body="", status_code=204)


@identity_api.route("/v1/residents/me", methods=["GET"])
@endpoint(identity_api)
def resident_me():
    return _mykey_body(_resident())


@identity_api.route("/v1/residents/me/facility-links", methods=["GET"])
@endpoint(identity_api)
def resident_facility_links():
    from chalicelib.services import identity

    mykey = _resident()
    return {"links": identity.resident_links(deps.get_identity_store(), deps.get_ledger_store(), mykey)}


@identity_api.route("/v1/residents/me/facility-links/{facility_id}", methods=["DELETE"])
@endpoint(identity_api)
def resident_remove_facility_link(facility_id):
    from chalicelib.services import identity

    mykey = _resident()
    identity.resident_remove_link(deps.get_identity_store(), mykey, identifiers.plain_identifier(facility_id, "facility_id"))
    return Response(body="", status_code=204)


@identity_api.route("/v1/residents/me/suspension", methods=["POST"])
@endpoint(identity_api)
def resident_suspend():
    from chalicelib.services import identity

    mykey = _resident()
    return identity.suspend(deps.get_identity_store(), mykey.mykey_id, "本人による利用停止", identity.Actor("resident"))


# -- staff: suspension and reinstatement ----------------------------------------------------------------


def _mykey_for_staff(mykey_id: str, platform_roles: tuple[str, ...]):
    from chalicelib.services import staff

    session = current_staff_session(identity_api.current_request)
    resident = identifiers.mykey_id(mykey_id)
    mykey = deps.get_identity_store().get_mykey(resident)
    if mykey is None:
        # Refused the same way for every staff member, so that ids cannot be probed across municipalities.
        if session.municipality_code == staff.PLATFORM:
            staff.authorize_platform(session, platform_roles)
            raise errors.MykeyIdUnknown()
        raise errors.StaffForbidden()
    staff.authorize_for_resident(session, mykey.home_municipality_code, platform_roles)
    return session, mykey


@identity_api.route("/v1/mykeys/{mykey_id}/suspension", methods=["POST"])
@endpoint(identity_api)
def staff_suspend(mykey_id):
    from chalicelib.services import identity, staff

    session, mykey = _mykey_for_staff(mykey_id, (staff.CALL_CENTRE,))
    body = json_object(identity_api.current_request)
    refuse_unknown_fields(body, {"reason"})
    reason = required(body, "reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise errors.ValidationFailed("reason（停止理由）を200文字以内で入力してください。", field="reason")
    identifiers.refuse_individual_number_in_text(reason, "reason")
    return identity.suspend(deps.get_identity_store(), mykey.mykey_id, reason.strip(), _staff_actor(session))


@identity_api.route("/v1/mykeys/{mykey_id}/reinstatement", methods=["POST"])
@endpoint(identity_api)
def staff_reinstate(mykey_id):
    from chalicelib.services import identity

    # In person only: municipal counter staff, never the call centre.
    session, mykey = _mykey_for_staff(mykey_id, ())
    body = json_object(identity_api.current_request)
    refuse_unknown_fields(body, {"challenge_id", "card"})
    return identity.reinstate(deps.get_identity_store(), deps.get_card_authority(), mykey.mykey_id, _card_response(body),
                              _staff_actor(session), deps.get_clock())


# -- platform operator: J-LIS feeds ---------------------------------------------------------------------


@identity_api.route("/v1/platform/revocation-feeds", methods=["POST"])
@endpoint(identity_api)
def import_revocation_feed():
    from chalicelib.services import identity

    session = platform_operator_session(identity_api.current_request)
    body = json_object(identity_api.current_request, max_bytes=FEED_MAX_BYTES)
    refuse_unknown_fields(body, {"format", "content", "content_base64"})
    feed_format = required(body, "format")
    if feed_format not in ("csv", "crl"):
        raise errors.ValidationFailed("format は csv または crl です。", field="format")
    if feed_format == "csv":
        content = required(body, "content")
        if not isinstance(content, str):
            raise errors.ValidationFailed("content は CSV の文字列です。", field="content")
        data = content.encode("utf-8")
    else:
        data = base64_field(required(body, "content_base64"), "content_base64")
    return identity.import_revocations(deps.get_identity_store(), deps.get_card_authority(), feed_format, data,
                                       _staff_actor(session))


@identity_api.route("/v1/platform/renewal-feeds", methods=["POST"])
@endpoint(identity_api)
def import_renewal_feed():
    from chalicelib.services import identity

    session = platform_operator_session(identity_api.current_request)
    body = json_object(identity_api.current_request, max_bytes=FEED_MAX_BYTES)
    refuse_unknown_fields(body, {"content", "new_issuer_sha256"})
    content = required(body, "content")
    issuer = body.get("new_issuer_sha256")
    if not isinstance(content, str):
        raise errors.ValidationFailed("content は CSV の文字列です。", field="content")
    if issuer is not None and not isinstance(issuer, str):
        raise errors.ValidationFailed("new_issuer_sha256 は16進数の文字列です。", field="new_issuer_sha256")
    return identity.import_renewals(deps.get_identity_store(), deps.get_card_authority(), content.encode("utf-8"), issuer,
                                    _staff_actor(session))


@identity_api.route("/v1/platform/audit-events", methods=["GET"])
@endpoint(identity_api)
def platform_audit_events():
    from chalicelib.services import identity, staff

    session = current_staff_session(identity_api.current_request)
    staff.authorize_platform(session, staff.PLATFORM_ROLES)
    return {"events": deps.get_identity_store().audit_events(identity.PLATFORM_SCOPE)}
