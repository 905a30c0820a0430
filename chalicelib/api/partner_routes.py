"""Partner onboarding and statements (platform operator), and the resident's reserve account."""
from __future__ import annotations

import base64

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
    refuse_unknown_fields(body, {"name", "public_keys", "public_key", "result_queue", "agreement", "active"})
    name = required(body, "name")
    public_keys = _public_keys(body)
    result_queue = required(body, "result_queue")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise errors.ValidationFailed("name を100文字以内で指定してください。", field="name")
    for index, key in enumerate(public_keys):
        ed25519_public_key_field(key, f"public_keys[{index}]" if "public_keys" in body else "public_key")
    if len(public_keys) == 2 and base64.b64decode(public_keys[0]) == base64.b64decode(public_keys[1]):
        raise errors.ValidationFailed("public_keys の2つの鍵が同じです。", field="public_keys[1]")
    # The consumer may send only to queues named points-* (its IAM policy): any other name would send every
    # result of this partner to the dead-letter queue, so it is refused here, where it is typed.
    if not isinstance(result_queue, str) or not __import__("re").fullmatch(r"points-[A-Za-z0-9_-]{1,73}", result_queue):
        raise errors.ValidationFailed(
            "result_queue は points- で始まる SQS のキュー名です（英数字・-・_、80文字以内。"
            "例: points-partner-results-<partner_id>）。", field="result_queue")
    agreement = required(body, "agreement")
    if not isinstance(agreement, dict):
        raise errors.ValidationFailed("agreement はオブジェクトです。", field="agreement")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise errors.ValidationFailed("active は true か false です。", field="active")
    # `public_key` stays the first key, for readers that know only one.
    partner = {"partner_id": partner_id, "name": name.strip(), "public_keys": public_keys, "public_key": public_keys[0],
               "result_queue": result_queue, "agreement": conversions.validate_agreement(agreement), "active": active}
    deps.get_ledger_store().put_partner(partner)
    deps.get_identity_store().audit("platform", "partner_onboarding", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id, details={"partner_id": partner_id})
    return partner


def _public_keys(body: dict) -> list:
    """`public_keys` (one key, or two while the partner changes keys), or the single `public_key` of
    clients written before rotation existed; not both. Each key is checked by the caller."""
    if "public_keys" in body and "public_key" in body:
        raise errors.ValidationFailed("public_keys と public_key のどちらか一方を指定してください。", field="public_key")
    if "public_key" in body:
        return [required(body, "public_key")]
    keys = required(body, "public_keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= 2:
        raise errors.ValidationFailed("public_keys は公開鍵1つか2つ（鍵の切り替え中）の配列です。", field="public_keys")
    return keys


@partner_api.route("/v1/platform/partners/{partner_id}/statements/{month}", methods=["GET"])
@endpoint(partner_api)
def partner_statement(partner_id, month):
    from chalicelib.services import conversions

    platform_operator_session(partner_api.current_request)
    statement = conversions.monthly_statement(deps.get_ledger_store(), identifiers.plain_identifier(partner_id, "partner_id"), month)
    return statement_response(statement, partner_api.current_request)


def statement_response(statement: dict, request):
    """The statement as JSON, or with `?format=csv` as a CSV file for Excel; the partner's own read too."""
    from chalicelib.services import conversions

    if (request.query_params or {}).get("format") == "csv":
        filename = f"statement-{statement['partner_id']}-{statement['month']}.csv"
        return Response(body=conversions.statement_csv(statement), status_code=200,
                        headers={"Content-Type": "text/csv; charset=utf-8",
                                 "Content-Disposition": f'attachment; filename="{filename}"'})
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
