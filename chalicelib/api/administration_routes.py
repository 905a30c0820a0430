"""Municipal staff administration: programme settings, budget, merchants, terminals, staff, audit log.

Every route is under `/v1/municipalities/{code}` and starts with `staff_session`, which refuses a session
of another municipality or with too small a role before anything is read. Every change is written to
the audit log with the staff member and the counter terminal they signed in at.
"""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import (
    created, ed25519_public_key_field, endpoint, json_object, refuse_unknown_fields, required,
)
from chalicelib.api.staff_routes import staff_session
from chalicelib.domain import identifiers

administration_api = Blueprint(__name__)


def _session(code: str, minimum_role: str):
    return staff_session(administration_api, code, minimum_role)


def _audit(municipality_code: str, session, action: str, details: dict) -> None:
    deps.get_identity_store().audit(municipality_code, action, f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id, details=details)


def _now_text() -> str:
    from chalicelib.domain.time import posted_at

    return posted_at(deps.get_clock()())


# -- programme and budget -----------------------------------------------------------------------------


@administration_api.route("/v1/municipalities/{code}/programme", methods=["GET"])
@endpoint(administration_api)
def get_programme(code):
    from chalicelib.services import programme, staff

    municipality_code, _ = _session(code, staff.VIEWER)
    municipality = deps.get_ledger_store().get_municipality(municipality_code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    return programme.settings_of(municipality)


@administration_api.route("/v1/municipalities/{code}/programme", methods=["PATCH"])
@endpoint(administration_api)
def change_programme(code):
    from chalicelib.services import programme, staff

    municipality_code, session = _session(code, staff.APPROVER)
    body = json_object(administration_api.current_request)
    refuse_unknown_fields(body, set(programme.SETTINGS_FIELDS))
    if not body:
        raise errors.ValidationFailed("変更する項目を指定してください。")
    before, after = programme.change_settings(deps.get_ledger_store(), municipality_code, body)
    changed = {name: {"before": before[name], "after": after[name]} for name in body if before[name] != after[name]}
    _audit(municipality_code, session, "programme_changed", changed)
    return after


@administration_api.route("/v1/municipalities/{code}/budget", methods=["GET"])
@endpoint(administration_api)
def get_budget(code):
    from chalicelib.services import ledger, staff

    municipality_code, _ = _session(code, staff.VIEWER)
    store = deps.get_ledger_store()
    municipality = store.get_municipality(municipality_code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    remaining = ledger.budget_remaining(store, municipality)
    pending = deps.get_grant_batch_store().approvals_of_municipality(municipality_code, "pending")
    return {
        "municipality_code": municipality_code,
        "budget_total": municipality.budget_total,
        "budget_used": municipality.budget_total - remaining,
        "budget_remaining": remaining,
        "awaiting_approval_points": sum(approval["amount"] for approval in pending),
        "awaiting_approval_count": len(pending),
        "approval_threshold": municipality.approval_threshold,
    }


# -- merchants and terminals --------------------------------------------------------------------------


@administration_api.route("/v1/municipalities/{code}/merchants", methods=["GET"])
@endpoint(administration_api)
def list_merchants(code):
    from chalicelib.services import administration, staff

    municipality_code, _ = _session(code, staff.VIEWER)
    store = deps.get_ledger_store()
    merchants = []
    for merchant in store.merchants_of_municipality(municipality_code):
        view = administration.merchant_view(merchant)
        view["terminals"] = [administration.terminal_view(t) for t in store.terminals_of_merchant(merchant.merchant_id)]
        merchants.append(view)
    return {"municipality_code": municipality_code, "merchants": merchants}


@administration_api.route("/v1/municipalities/{code}/merchants", methods=["POST"])
@endpoint(administration_api)
def register_merchant(code):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.OPERATOR)
    body = json_object(administration_api.current_request)
    refuse_unknown_fields(body, {"merchant_id", "name", "kind"})
    command = administration.MerchantCommand(municipality_code, required(body, "merchant_id"), required(body, "name"),
                                             required(body, "kind"))
    merchant, was_created = administration.register_merchant(deps.get_ledger_store(), command, _now_text())
    if not was_created:
        return administration.merchant_view(merchant)
    _audit(municipality_code, session, "merchant_registered",
           {"merchant_id": merchant.merchant_id, "name": merchant.name, "kind": merchant.kind})
    return created(administration.merchant_view(merchant))


@administration_api.route("/v1/municipalities/{code}/merchants/{merchant_id}/disable", methods=["POST"])
@endpoint(administration_api)
def disable_merchant(code, merchant_id):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.OPERATOR)
    merchant = administration.disable_merchant(deps.get_ledger_store(), municipality_code, merchant_id)
    _audit(municipality_code, session, "merchant_disabled", {"merchant_id": merchant.merchant_id})
    return {**administration.merchant_view(merchant), "active": False}


@administration_api.route("/v1/municipalities/{code}/merchants/{merchant_id}/terminals", methods=["POST"])
@endpoint(administration_api)
def register_terminal(code, merchant_id):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.OPERATOR)
    body = json_object(administration_api.current_request)
    refuse_unknown_fields(body, {"terminal_id", "public_key", "label"})
    command = administration.TerminalCommand(
        municipality_code, merchant_id, required(body, "terminal_id"),
        ed25519_public_key_field(required(body, "public_key")), body.get("label"),
    )
    terminal, was_created = administration.register_terminal(deps.get_ledger_store(), command, _now_text())
    if not was_created:
        return administration.terminal_view(terminal)
    _audit(municipality_code, session, "terminal_registered",
           {"terminal_id": terminal.terminal_id, "merchant_id": terminal.merchant_id})
    return created(administration.terminal_view(terminal))


@administration_api.route("/v1/municipalities/{code}/terminals/{terminal_id}/disable", methods=["POST"])
@endpoint(administration_api)
def disable_terminal(code, terminal_id):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.OPERATOR)
    terminal = administration.disable_terminal(deps.get_ledger_store(), municipality_code, terminal_id)
    _audit(municipality_code, session, "terminal_disabled",
           {"terminal_id": terminal.terminal_id, "merchant_id": terminal.merchant_id})
    return {**administration.terminal_view(terminal), "active": False}


# -- staff accounts -----------------------------------------------------------------------------------


@administration_api.route("/v1/municipalities/{code}/staff", methods=["GET"])
@endpoint(administration_api)
def list_staff(code):
    from chalicelib.services import staff

    municipality_code, _ = _session(code, staff.APPROVER)
    return {"municipality_code": municipality_code,
            "staff": deps.get_staff_store().staff_of_municipality(municipality_code)}


@administration_api.route("/v1/municipalities/{code}/staff", methods=["POST"])
@endpoint(administration_api)
def create_staff(code):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.APPROVER)
    body = json_object(administration_api.current_request)
    refuse_unknown_fields(body, {"staff_id", "role"})
    account, password = administration.create_staff(
        deps.get_staff_store(), municipality_code, required(body, "staff_id"), required(body, "role"), _now_text())
    _audit(municipality_code, session, "staff_created", {"staff_id": account.staff_id, "role": account.role})
    # The first password is shown once, to the approver who hands it over; only its hash is stored.
    return created({"staff_id": account.staff_id, "role": account.role, "municipality_code": municipality_code,
                    "initial_password": password})


@administration_api.route("/v1/municipalities/{code}/staff/{staff_id}/disable", methods=["POST"])
@endpoint(administration_api)
def disable_staff(code, staff_id):
    from chalicelib.services import administration, staff

    municipality_code, session = _session(code, staff.APPROVER)
    account = administration.disable_staff(deps.get_staff_store(), municipality_code, staff_id, session.staff_id)
    _audit(municipality_code, session, "staff_disabled", {"staff_id": account.staff_id})
    return {"staff_id": account.staff_id, "role": account.role, "active": False}


# -- audit log ----------------------------------------------------------------------------------------


@administration_api.route("/v1/municipalities/{code}/audit-events", methods=["GET"])
@endpoint(administration_api)
def audit_events(code):
    from chalicelib.services import staff

    municipality_code, _ = _session(code, staff.VIEWER)
    query = administration_api.current_request.query_params or {}
    limit_text = query.get("limit", "200")
    if not identifiers.ascii_digits(limit_text, 4) or not 1 <= int(limit_text) <= 1000:
        raise errors.ValidationFailed("limit は 1〜1000 です。", field="limit")
    return {"municipality_code": municipality_code,
            "events": deps.get_identity_store().audit_events(municipality_code, limit=int(limit_text))}


def csv_response(text: str, file_name: str) -> Response:
    return Response(body=text, status_code=200, headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f"attachment; filename=\"{file_name}\"",
        "Cache-Control": "no-store",
    })
