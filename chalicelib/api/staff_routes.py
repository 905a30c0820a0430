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


def staff_session(blueprint, municipality_code: str, minimum_role: str):
    """The caller's session, checked against the municipality in the path and the role the action needs.

    Who is asking comes first: without a valid session nothing, not even the path, is looked at. A
    session of another municipality, or with too small a role, is refused before anything of the
    municipality is read, and the refusal does not even count as the session's activity.
    """
    from chalicelib.services import staff

    request = blueprint.current_request
    session = staff.authenticate(deps.get_staff_store(), bearer_token(request),
                                 deps.get_settings().staff_session_idle_seconds, deps.get_clock(), touch=False)
    request.context["staff_id"] = session.staff_id
    try:
        code = identifiers.municipality_code(municipality_code)
    except errors.DomainError as refusal:
        raise errors.StaffForbidden() from refusal
    staff.authorize(session, code, minimum_role)
    staff.touch_session(deps.get_staff_store(), session, deps.get_clock())
    return code, session


def _staff_session(municipality_code: str, minimum_role: str):
    return staff_session(staff_api, municipality_code, minimum_role)


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
    # The service audits the sign-in, and every refused one (with the lockout it may start).
    token, session = staff.sign_in(deps.get_staff_store(), staff_id, password, deps.get_clock(), counter_terminal_id,
                                   audit=deps.get_identity_store().audit)
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


@staff_api.route("/v1/staff/sessions/current", methods=["GET"])
@endpoint(staff_api)
def who_am_i():
    """The console's first call: who is signed in, for which municipality, with which role."""
    session = current_staff_session()
    municipality = None
    if session.municipality_code != "platform":
        found = deps.get_ledger_store().get_municipality(session.municipality_code)
        municipality = {"code": found.code, "name": found.name, "point_name": found.point_name} if found else None
    return {
        "staff_id": session.staff_id, "municipality_code": session.municipality_code, "role": session.role,
        "counter_terminal_id": session.counter_terminal_id, "municipality": municipality,
        "idle_timeout_seconds": deps.get_settings().staff_session_idle_seconds,
    }


@staff_api.route("/v1/staff/password", methods=["POST"])
@endpoint(staff_api)
def change_password():
    from chalicelib.services import staff

    session = current_staff_session()
    body = json_object(staff_api.current_request)
    refuse_unknown_fields(body, {"current_password", "new_password"})
    current, new = required(body, "current_password"), required(body, "new_password")
    if not isinstance(current, str) or not isinstance(new, str):
        raise errors.ValidationFailed("パスワードは文字列で指定してください。", field="new_password")
    staff.change_password(deps.get_staff_store(), session, current, new)
    deps.get_identity_store().audit(session.municipality_code, "staff_password_changed", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id)
    return Response(body="", status_code=204)


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
    identifiers.refuse_individual_number_in_text(reason, "reason")
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
    from chalicelib.services import grant_requests

    outcome = grant_requests.request_grant(command, deps.get_ledger_store(), deps.get_grant_batch_store(), deps.get_clock())
    if outcome.transfer is None:
        # Above the programme's threshold: parked until a second staff member approves it.
        deps.get_identity_store().audit(
            municipality_code, "grant_requested", f"staff:{session.staff_id}", command.mykey_id,
            session.counter_terminal_id, {"grant_id": command.grant_id, "amount": command.amount},
        )
        return Response(body=approval_view(outcome.approval), status_code=202, headers={"Content-Type": "application/json"})
    transfer = outcome.transfer
    count("GrantsPosted")
    # Written after the grant: a retry with the same grant_id replays the grant and audits the retry too.
    deps.get_identity_store().audit(
        municipality_code, "grant", f"staff:{session.staff_id}", transfer.mykey_id, session.counter_terminal_id,
        {"grant_id": transfer.transfer_id, "amount": transfer.amount},
    )
    return created(grant_view(transfer))


def grant_view(transfer) -> dict:
    return {
        "grant_id": transfer.transfer_id,
        "status": "posted",
        "mykey_id": transfer.mykey_id,
        "municipality_code": transfer.municipality_code,
        "amount": transfer.amount,
        "expires_on": next(iter(transfer.lots)),
        "balance_after": transfer.balance_after,
        "posted_at": transfer.posted_at,
    }


def approval_view(approval: dict) -> dict:
    view = {key: approval.get(key) for key in (
        "approval_id", "kind", "state", "amount", "request", "requested_by", "requested_at", "decided_by",
        "decided_at", "decision_note")}
    view["status"] = "awaiting_approval" if approval["state"] == "pending" else approval["state"]
    if approval["kind"] == "grant":
        view["grant_id"] = approval["approval_id"]
    return view


@staff_api.route("/v1/municipalities/{code}/approvals", methods=["GET"])
@endpoint(staff_api)
def list_approvals(code):
    from chalicelib.services import staff

    municipality_code, _ = _staff_session(code, staff.VIEWER)
    state = (staff_api.current_request.query_params or {}).get("state")
    if state not in (None, "pending", "approved", "rejected"):
        raise errors.ValidationFailed("state は pending, approved, rejected のいずれかです。", field="state")
    approvals = deps.get_grant_batch_store().approvals_of_municipality(municipality_code, state)
    return {"municipality_code": municipality_code, "approvals": [approval_view(a) for a in approvals]}


@staff_api.route("/v1/municipalities/{code}/approvals/{approval_id}/approve", methods=["POST"])
@endpoint(staff_api)
def approve(code, approval_id):
    from chalicelib.api.grant_batch_routes import batch_view
    from chalicelib.services import grant_requests, staff

    municipality_code, session = _staff_session(code, staff.APPROVER)
    approval_id = identifiers.operation_id(approval_id, "approval_id")
    outcome = grant_requests.approve(deps.get_ledger_store(), deps.get_grant_batch_store(), deps.get_grant_batch_queue(),
                                     municipality_code, approval_id, session.staff_id, deps.get_clock())
    approval = outcome["approval"]
    deps.get_identity_store().audit(
        municipality_code, "approval_granted", f"staff:{session.staff_id}", approval["request"].get("mykey_id"),
        session.counter_terminal_id,
        {"approval_id": approval_id, "kind": approval["kind"], "amount": approval["amount"],
         "requested_by": approval["requested_by"]},
    )
    result = {"approval": approval_view(approval)}
    if "grant" in outcome:
        result["grant"] = grant_view(outcome["grant"])
    else:
        result["batch"] = batch_view(outcome["batch"])
    return result


@staff_api.route("/v1/municipalities/{code}/approvals/{approval_id}/reject", methods=["POST"])
@endpoint(staff_api)
def reject(code, approval_id):
    from chalicelib.services import grant_requests, staff

    municipality_code, session = _staff_session(code, staff.APPROVER)
    approval_id = identifiers.operation_id(approval_id, "approval_id")
    body = json_object(staff_api.current_request)
    refuse_unknown_fields(body, {"note"})
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 200:
        raise errors.ValidationFailed("note（却下の理由）は200文字以内です。", field="note")
    identifiers.refuse_individual_number_in_text(note, "note")
    approval = grant_requests.reject(deps.get_grant_batch_store(), municipality_code, approval_id, session.staff_id,
                                     note.strip(), deps.get_clock())
    deps.get_identity_store().audit(
        municipality_code, "approval_rejected", f"staff:{session.staff_id}", approval["request"].get("mykey_id"),
        session.counter_terminal_id, {"approval_id": approval_id, "kind": approval["kind"], "amount": approval["amount"]},
    )
    return {"approval": approval_view(approval)}


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
