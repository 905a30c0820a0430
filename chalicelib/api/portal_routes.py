"""The resident portal: its page, card sign-in through a one-time code, and the resident's JSON API."""
from __future__ import annotations

import functools
from pathlib import Path

from chalice import Blueprint, Response

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import created, endpoint, json_object, refuse_unknown_fields, required, signed_card
from chalicelib.api.staff_routes import bearer_token
from chalicelib.domain import identifiers

portal_api = Blueprint(__name__)


@functools.lru_cache(maxsize=1)
def _page() -> str:
    return (Path(__file__).resolve().parent.parent / "web" / "portal.html").read_text(encoding="utf-8")


@portal_api.route("/portal", methods=["GET"])
@endpoint(portal_api)
def portal_page():
    return Response(body=_page(), status_code=200, headers={
        "Content-Type": "text/html; charset=utf-8",
        # The page needs nothing from elsewhere: no plug-in, no CDN.
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
    })


def _code(code: str) -> str:
    try:
        return identifiers.mykey_id(code, "code")
    except errors.DomainError as error:
        raise errors.ChallengeInvalid() from error


@portal_api.route("/v1/portal/sign-in-requests", methods=["POST"])
@endpoint(portal_api)
def start_sign_in():
    from chalicelib.services import portal

    if portal_api.current_request.raw_body:
        refuse_unknown_fields(json_object(portal_api.current_request), set())
    return created(portal.start_sign_in(deps.get_identity_store(), deps.get_clock()))


@portal_api.route("/v1/portal/sign-in-requests/{code}", methods=["GET"])
@endpoint(portal_api)
def sign_in_challenge(code):
    from chalicelib.services import portal

    return portal.challenge_for(deps.get_identity_store(), _code(code), deps.get_clock())


@portal_api.route("/v1/portal/sign-in-requests/{code}/card-response", methods=["POST"])
@endpoint(portal_api)
def sign_in_card_response(code):
    from chalicelib.services import portal

    body = json_object(portal_api.current_request)
    refuse_unknown_fields(body, {"card"})
    certificate, signature = signed_card(body)
    return portal.answer_with_card(deps.get_identity_store(), deps.get_card_authority(), _code(code), certificate,
                                   signature, deps.get_clock())


@portal_api.route("/v1/portal/sign-in-requests/{code}/session", methods=["POST"])
@endpoint(portal_api)
def sign_in_session(code):
    from chalicelib.services import portal

    body = json_object(portal_api.current_request)
    refuse_unknown_fields(body, {"poll_secret"})
    secret = required(body, "poll_secret")
    if not isinstance(secret, str):
        raise errors.ChallengeInvalid()
    result = portal.collect_session(deps.get_identity_store(), _code(code), secret, deps.get_clock())
    return created(result) if result["status"] == "signed_in" else result


@portal_api.route("/v1/portal/municipalities", methods=["GET"])
@endpoint(portal_api)
def municipalities():
    return {"municipalities": [{"municipality_code": m.code, "name": m.name, "point_name": m.point_name}
                               for m in deps.get_ledger_store().list_municipalities()]}


def _resident():
    from chalicelib.services import identity

    return identity.resident_session(deps.get_identity_store(), bearer_token(portal_api.current_request), deps.get_clock())


@portal_api.route("/v1/residents/me/balances", methods=["GET"])
@endpoint(portal_api)
def resident_balances():
    from chalicelib.services import portal

    mykey = _resident()
    return {"balances": portal.balances(deps.get_ledger_store(), mykey.mykey_id, deps.get_clock())}


@portal_api.route("/v1/residents/me/history", methods=["GET"])
@endpoint(portal_api)
def resident_history():
    from chalicelib.services import ledger

    mykey = _resident()
    return {"transfers": ledger.history(deps.get_ledger_store(), mykey.mykey_id)}


@portal_api.route("/v1/residents/me/home-municipality", methods=["PUT"])
@endpoint(portal_api)
def resident_home_municipality():
    from chalicelib.services import portal

    mykey = _resident()
    body = json_object(portal_api.current_request)
    refuse_unknown_fields(body, {"municipality_code"})
    return portal.set_home_municipality(deps.get_identity_store(), deps.get_ledger_store(), mykey,
                                        identifiers.municipality_code(required(body, "municipality_code")))
