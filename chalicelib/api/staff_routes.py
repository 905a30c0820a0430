"""Municipal staff endpoints: sign-in and sign-out, grants, the summary report, a resident's history.

Staff present `Authorization: Bearer <session token>`. Every route under
`/v1/municipalities/{code}` checks that the session belongs to that municipality and has the role the
action needs, before it reads or writes anything.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import created, endpoint, fingerprint, json_object, refuse_unknown_fields, required
from chalicelib.domain import identifiers
from chalicelib.domain.time import japan_day_end_utc, japan_day_start_utc

staff_api = Blueprint(__name__)


def bearer_token(request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _token() -> str | None:
    return bearer_token(staff_api.current_request)


def current_staff_session(request=None):
    """The signed-in staff member, whoever they are; routes then check scope and role."""
    from chalicelib.services import staff

    session = staff.authenticate(
        deps.get_staff_store(), bearer_token(request or staff_api.current_request),
        deps.get_settings().staff_session_idle_seconds, deps.get_clock(),
    )
    (request or staff_api.current_request).context["staff_id"] = session.staff_id
    return session


def platform_operator_session(request):
    """The signed-in platform operator (onboarding partners and operators, feeds, statements)."""
    from chalicelib.services import staff

    session = current_staff_session(request)
    staff.authorize_platform(session, (staff.PLATFORM_OPERATOR,))
    return session


def _staff_session(municipality_code: str, minimum_role: str):
    from chalicelib.services import staff

    # Who is asking comes first: without a valid session nothing, not even the path, is looked at.
    session = current_staff_session()
    code = identifiers.municipality_code(municipality_code)
    staff.authorize(session, code, minimum_role)
    return code, session


@staff_api.route("/v1/staff/sessions", methods=["POST"])
@endpoint(staff_api)
def sign_in():
    from chalicelib.services import staff

    body = json_object(staff_api.current_request)
    refuse_unknown_fields(body, {"staff_id", "password", "counter_terminal_id"})
    staff_id = identifiers.plain_identifier(required(body, "staff_id"), "staff_id")
    password = required(body, "password")
    if not isinstance(password, str):
        raise errors.ValidationFailed("password は文字列で指定してください。", field="password")
    counter_terminal_id = body.get("counter_terminal_id")
    if counter_terminal_id is not None:
        counter_terminal_id = identifiers.plain_identifier(counter_terminal_id, "counter_terminal_id")
    token, session = staff.sign_in(deps.get_staff_store(), staff_id, password, deps.get_clock(), counter_terminal_id)
    # Who was signed in at which counter, and when: the trail that shared counter terminals need.
    deps.get_identity_store().audit(session.municipality_code, "staff_sign_in", f"staff:{session.staff_id}",
                                    counter_terminal_id=counter_terminal_id)
    return created(
        {
            "token": token,
            "staff_id": session.staff_id,
            "municipality_code": session.municipality_code,
            "role": session.role,
            "counter_terminal_id": session.counter_terminal_id,
            "idle_timeout_seconds": deps.get_settings().staff_session_idle_seconds,
            "expires_at": session.expires_at,
        }
    )


@staff_api.route("/v1/staff/sessions/current", methods=["DELETE"])
@endpoint(staff_api)
def sign_out():
    from chalicelib.services import staff

    session = current_staff_session()
    staff.sign_out(deps.get_staff_store(), _token())
    deps.get_identity_store().audit(session.municipality_code, "staff_sign_out", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id)
    return Response(body="", status_code=204)


@staff_api.route("/v1/municipalities/{code}/grants", methods=["POST"])
@endpoint(staff_api)
def create_grant(code):
    from chalicelib.observability import count
    from chalicelib.services import ledger, staff

    municipality_code, session = _staff_session(code, staff.OPERATOR)
    body = json_object(staff_api.current_request)
    refuse_unknown_fields(body, {"grant_id", "mykey_id", "amount", "reason", "expires_on"})
    reason = required(body, "reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise errors.ValidationFailed("reason（付与理由）を200文字以内で入力してください。", field="reason")
    identifiers.refuse_individual_number(reason, "reason")
    expires_on = body.get("expires_on")
    if expires_on is not None:
        expires_on = identifiers.iso_date(expires_on, "expires_on")
    command = ledger.GrantCommand(
        grant_id=identifiers.operation_id(required(body, "grant_id"), "grant_id"),
        municipality_code=municipality_code,
        mykey_id=identifiers.mykey_id(required(body, "mykey_id")),
        amount=identifiers.amount(required(body, "amount")),
        reason=reason.strip(),
        expires_on=expires_on,
        staff_id=session.staff_id,
        request_fingerprint=fingerprint({**body, "mykey_id": identifiers.mykey_id(body["mykey_id"])}, municipality_code),
    )
    transfer = ledger.grant(command, deps.get_ledger_store(), deps.get_clock())
    count("GrantsPosted")
    # Written after the grant: a retry with the same grant_id replays the grant and audits the retry too.
    deps.get_identity_store().audit(
        municipality_code, "grant", f"staff:{session.staff_id}", transfer.mykey_id, session.counter_terminal_id,
        {"grant_id": transfer.transfer_id, "amount": transfer.amount},
    )
    return created(
        {
            "grant_id": transfer.transfer_id,
            "status": "posted",
            "mykey_id": transfer.mykey_id,
            "municipality_code": transfer.municipality_code,
            "amount": transfer.amount,
            "expires_on": next(iter(transfer.lots)),
            "balance_after": transfer.balance_after,
            "posted_at": transfer.posted_at,
        }
    )


@staff_api.route("/v1/municipalities/{code}/reports/summary", methods=["GET"])
@endpoint(staff_api)
def summary_report(code):
    from chalicelib.services import ledger, staff

    municipality_code, _ = _staff_session(code, staff.VIEWER)
    query = staff_api.current_request.query_params or {}
    start = identifiers.iso_date(query["from"], "from") if query.get("from") else None
    end = identifiers.iso_date(query["to"], "to") if query.get("to") else None
    # Dates are whole days in Japan; records are stamped in UTC.
    report = ledger.summary(
        deps.get_ledger_store(),
        municipality_code,
        start=japan_day_start_utc(start) if start else None,
        end=japan_day_end_utc(end) if end else None,
    )
    report["period"] = {"from": start, "to": end}
    return report


@staff_api.route("/v1/municipalities/{code}/residents/{mykey_id}/history", methods=["GET"])
@endpoint(staff_api)
def resident_history(code, mykey_id):
    from chalicelib.services import ledger, staff

    municipality_code, _ = _staff_session(code, staff.VIEWER)
    resident = identifiers.mykey_id(mykey_id)
    return {
        "mykey_id": resident,
        "municipality_code": municipality_code,
        "transfers": ledger.history(deps.get_ledger_store(), resident, municipality_code),
    }
