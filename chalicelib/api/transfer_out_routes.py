"""Transfer-outs: the resident's request at a terminal, the operator's signed confirmation or rejection,
registration of operators (platform) and programmes (municipality), statements, and the deadline job.

Operators sign like terminals, with their own header and prefix: `X-Operator-Id`, `X-Timestamp`,
`X-Nonce`, `X-Signature` over
`POINTS-OPERATOR-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n{hex SHA-256 of the body}`.
"""
from __future__ import annotations

import json

from chalice import Blueprint, Rate

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import (
    created,
    ed25519_public_key_field,
    endpoint,
    fingerprint,
    json_object,
    raw_body,
    refuse_unknown_fields,
    required,
)
from chalicelib.api.staff_routes import platform_operator_session, staff_session
from chalicelib.domain import identifiers
from chalicelib.domain.accounts import CHECK_DIGIT_RULES

transfer_out_api = Blueprint(__name__)


def _hold_body(hold: dict) -> dict:
    return {"hold_id": hold["hold_id"], "status": hold["state"], "municipality_code": hold["municipality_code"],
            "amount": hold["amount"], "programme_id": hold["programme_id"],
            "destination_account": hold["destination_account"], "deadline": hold["deadline"],
            "finished_at": hold.get("finished_at"), "outcome_reason": hold.get("outcome_reason")}


@transfer_out_api.route("/v1/transfer-outs", methods=["POST"])
@endpoint(transfer_out_api)
def create_transfer_out():
    from chalicelib.api.terminal_routes import _authenticated_terminal, _card
    from chalicelib.services import transfer_outs

    terminal = _authenticated_terminal(transfer_out_api.current_request)
    body = json_object(transfer_out_api.current_request)
    refuse_unknown_fields(body, {"transfer_id", "municipality_code", "amount", "programme_id", "destination_account", "card"})
    destination = required(body, "destination_account")
    identifiers.refuse_individual_number(destination, "destination_account")
    if not isinstance(destination, str) or len(destination) > 64:
        raise errors.DestinationAccountInvalid(field="destination_account")
    command = transfer_outs.TransferOutCommand(
        transfer_id=identifiers.operation_id(required(body, "transfer_id"), "transfer_id"),
        municipality_code=identifiers.municipality_code(required(body, "municipality_code")),
        amount=identifiers.amount(required(body, "amount")),
        programme_id=identifiers.plain_identifier(required(body, "programme_id"), "programme_id"),
        destination_account=destination,
        terminal=terminal,
        card=_card(body, signature_allowed=True),
        request_fingerprint=fingerprint(body, terminal.terminal_id),
    )
    store = deps.get_ledger_store()
    hold, _ = transfer_outs.request_transfer_out(command, store, deps.get_card_authority(), deps.get_clock())
    _ask_operator(store, hold)
    return created(_hold_body(hold))


def _ask_operator(store, hold: dict) -> None:
    """Send the request to the operator's queue; sent again on every retry (operators dedupe by hold_id).
    If it cannot be sent, the hold stays pending and its deadline gives the points back."""
    from chalicelib.observability import count, get_logger

    if hold["state"] != "pending":
        return
    operator = store.get_operator(hold["operator_id"])
    try:
        deps.get_sqs_client().send_message(QueueUrl=deps.queue_url(operator["request_queue"]), MessageBody=json.dumps({
            "hold_id": hold["hold_id"], "programme_id": hold["programme_id"], "municipality_code": hold["municipality_code"],
            "destination_account": hold["destination_account"], "amount": hold["amount"], "deadline": hold["deadline"],
        }, ensure_ascii=False))
    except Exception:
        get_logger().exception("transfer-out request not sent", extra={"hold_id": hold["hold_id"]})
        count("TransferOutRequestsUnsent")


def _operator():
    from chalicelib.auth import terminals

    request = transfer_out_api.current_request
    store = deps.get_ledger_store()
    path = terminals.signed_path(request.context.get("path") or request.path, request.context.get("stage"))
    return terminals.authenticate_signed(store, request.method, path, request.headers, raw_body(request), deps.get_clock()(),
                                         "X-Operator-Id", "POINTS-OPERATOR-V1", store.get_operator,
                                         errors.OperatorAuthenticationFailed, "事業者")


@transfer_out_api.route("/v1/operator/holds/{hold_id}/confirmation", methods=["POST"])
@endpoint(transfer_out_api)
def confirm_hold(hold_id):
    from chalicelib.services import transfer_outs

    operator = _operator()
    if not identifiers.is_operation_id(hold_id):
        raise errors.HoldNotFound()
    body = json_object(transfer_out_api.current_request)
    refuse_unknown_fields(body, {"destination_account", "amount"})
    amount = identifiers.amount(required(body, "amount"))
    hold = transfer_outs.confirm(deps.get_ledger_store(), operator, hold_id, required(body, "destination_account"), amount,
                                 deps.get_clock())
    return _hold_body(hold)


@transfer_out_api.route("/v1/operator/holds/{hold_id}/rejection", methods=["POST"])
@endpoint(transfer_out_api)
def reject_hold(hold_id):
    from chalicelib.services import transfer_outs

    operator = _operator()
    if not identifiers.is_operation_id(hold_id):
        raise errors.HoldNotFound()
    body = json_object(transfer_out_api.current_request)
    refuse_unknown_fields(body, {"reason"})
    reason = required(body, "reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 200:
        raise errors.ValidationFailed("reason を200文字以内で指定してください。", field="reason")
    return _hold_body(transfer_outs.reject(deps.get_ledger_store(), operator, hold_id, reason.strip(), deps.get_clock()))


# -- registration and statements ------------------------------------------------------------------------


@transfer_out_api.route("/v1/platform/operators/{operator_id}", methods=["PUT"])
@endpoint(transfer_out_api)
def put_operator(operator_id):
    session = platform_operator_session(transfer_out_api.current_request)
    body = json_object(transfer_out_api.current_request)
    refuse_unknown_fields(body, {"name", "public_key", "request_queue", "active"})
    public_key = ed25519_public_key_field(required(body, "public_key"))
    name = required(body, "name")
    if not isinstance(name, str) or not name.strip():
        raise errors.ValidationFailed("name を指定してください。", field="name")
    operator = {"operator_id": identifiers.plain_identifier(operator_id, "operator_id"), "name": name.strip(),
                "public_key": public_key, "request_queue": identifiers.plain_identifier(required(body, "request_queue"), "request_queue", 80),
                "active": body.get("active", True) is not False}
    deps.get_ledger_store().put_operator(operator)
    deps.get_identity_store().audit("platform", "operator_registration", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id, details={"operator_id": operator["operator_id"]})
    return operator


@transfer_out_api.route("/v1/municipalities/{code}/transfer-programmes/{programme_id}", methods=["PUT"])
@endpoint(transfer_out_api)
def put_programme(code, programme_id):
    from chalicelib.domain.accounts import compile_account_pattern
    from chalicelib.services import staff

    municipality_code, session = staff_session(transfer_out_api, code, staff.APPROVER)
    body = json_object(transfer_out_api.current_request)
    refuse_unknown_fields(body, {"operator_id", "name", "account_pattern", "check_digit", "hold_seconds", "active"})
    pattern, rule = required(body, "account_pattern"), required(body, "check_digit")
    try:
        compile_account_pattern(pattern)
    except ValueError as error:
        raise errors.ValidationFailed(
            "account_pattern は口座番号の形式です（文字・文字クラス・\\d と ? * + {n} {m,n} のみ、グループと | は使えません）。",
            field="account_pattern") from error
    if rule not in CHECK_DIGIT_RULES:
        raise errors.ValidationFailed("check_digit は luhn または none です。", field="check_digit")
    hold_seconds = body.get("hold_seconds", 3 * 86400)
    if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int) or not 60 <= hold_seconds <= 30 * 86400:
        raise errors.ValidationFailed("hold_seconds は60秒から30日です。", field="hold_seconds")
    existing = deps.get_ledger_store().get_programme(identifiers.plain_identifier(programme_id, "programme_id"))
    if existing is not None and existing["municipality_code"] != municipality_code:
        # Programme ids are global: one municipality's staff must never rewrite another's destination.
        raise errors.StaffForbidden("このプログラムは他の自治体のものです。")
    operator_id = identifiers.plain_identifier(required(body, "operator_id"), "operator_id")
    if deps.get_ledger_store().get_operator(operator_id) is None:
        raise errors.ValidationFailed("operator_id の事業者が登録されていません。", field="operator_id")
    programme = {"programme_id": identifiers.plain_identifier(programme_id, "programme_id"), "municipality_code": municipality_code,
                 "operator_id": operator_id, "name": str(required(body, "name")), "account_pattern": pattern, "check_digit": rule,
                 "hold_seconds": hold_seconds, "active": body.get("active", True) is not False}
    deps.get_ledger_store().put_programme(programme)
    deps.get_identity_store().audit(municipality_code, "transfer_programme", f"staff:{session.staff_id}",
                                    counter_terminal_id=session.counter_terminal_id, details={"programme_id": programme_id})
    return programme


@transfer_out_api.route("/v1/platform/operators/{operator_id}/statements/{month}", methods=["GET"])
@endpoint(transfer_out_api)
def operator_statement(operator_id, month):
    from chalicelib.services import transfer_outs

    platform_operator_session(transfer_out_api.current_request)
    return transfer_outs.operator_statement(deps.get_ledger_store(), identifiers.plain_identifier(operator_id, "operator_id"), month)


@transfer_out_api.schedule(Rate(5, unit=Rate.MINUTES), name="void_expired_holds")
def void_expired_holds(event):
    from chalicelib.services import transfer_outs

    return {"voided": len(transfer_outs.void_expired_holds(deps.get_ledger_store(), deps.get_clock()))}
