"""Partner onboarding and statements (platform operator), and the resident's reserve account."""
from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import created, ed25519_public_key_field, endpoint, json_object, refuse_unknown_fields, required
from chalicelib.api.staff_routes import platform_operator_session
from chalicelib.domain import identifiers

partner_api = Blueprint(__name__)


@partner_api.route("/v1/platform/partners/{partner_id}", methods=["PUT"])
@endpoint(partner_api)
def put_partner(partner_id):
    from chalicelib.services import conversions

    session = platform_operator_session(partner_api.current_request)
    partner_id = identifiers.plain_identifier(partner_id, "partner_id")
    body = json_object(partner_api.current_request)
    refuse_unknown_fields(body, {"name", "public_key", "result_queue", "agreement", "active"})
    name, public_key, result_queue = required(body, "name"), required(body, "public_key"), required(body, "result_queue")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise errors.ValidationFailed("name を100文字以内で指定してください。", field="name")
    ed25519_public_key_field(public_key)
    if not isinstance(result_queue, str) or not __import__("re").fullmatch(r"[A-Za-z0-9_-]{1,80}", result_queue):
        raise errors.ValidationFailed("result_queue は SQS のキュー名です（英数字・-・_、80文字以内）。", field="result_queue")
    agreement = required(body, "agreement")
    if not isinstance(agreement, dict):
        raise errors.ValidationFailed("agreement はオブジェクトです。", field="agreement")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise errors.ValidationFailed("active は true か false です。", field="active")
    partner = {"partner_id": partner_id, "name": name.strip(), "public_key": public_key, "result_queue": result_queue,
               "agreement": conversions.validate_agreement(agreement), "active": active}
    deps.get_ledger_store().put_partner(partner)
    deps.get_identity_store().audit("platform", "partner_onboarding", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id, details={"partner_id": partner_id})
    return partner


@partner_api.route("/v1/platform/partners/{partner_id}/statements/{month}", methods=["GET"])
@endpoint(partner_api)
def partner_statement(partner_id, month):
    from chalicelib.services import conversions

    platform_operator_session(partner_api.current_request)
    statement = conversions.monthly_statement(deps.get_ledger_store(), identifiers.plain_identifier(partner_id, "partner_id"), month)
    if (partner_api.current_request.query_params or {}).get("format") == "csv":
        return Response(body=conversions.statement_csv(statement), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8",
                                 "Content-Disposition": f'attachment; filename="statement-{partner_id}-{statement["month"]}.csv"'})
    return statement


# -- the resident's reserve account ---------------------------------------------------------------------


def _resident():
    from chalicelib.api.staff_routes import bearer_token
    from chalicelib.services import identity

    return identity.resident_session(deps.get_identity_store(), bearer_token(partner_api.current_request), deps.get_clock())


@partner_api.route("/v1/residents/me/reserve", methods=["GET"])
@endpoint(partner_api)
def resident_reserve():
    from chalicelib.services import conversions

    mykey = _resident()
    return conversions.reserve_summary(deps.get_ledger_store(), mykey.mykey_id)


@partner_api.route("/v1/residents/me/reserve/allocations", methods=["POST"])
@endpoint(partner_api)
def allocate_reserve():
    from chalicelib.services import conversions

    mykey = _resident()
    body = json_object(partner_api.current_request)
    refuse_unknown_fields(body, {"allocation_id", "municipality_code", "amount"})
    transfer = conversions.allocate_reserve(
        deps.get_ledger_store(), mykey.mykey_id, identifiers.municipality_code(required(body, "municipality_code")),
        identifiers.amount(required(body, "amount")), identifiers.operation_id(required(body, "allocation_id"), "allocation_id"),
        deps.get_clock(),
    )
    return created({"allocation_id": transfer.transfer_id, "municipality_code": transfer.municipality_code,
                    "amount": transfer.amount, "balance_after": transfer.balance_after, "expires_on": next(iter(transfer.lots)),
                    "posted_at": transfer.posted_at})
