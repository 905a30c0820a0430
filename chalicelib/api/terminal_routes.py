"""Terminal endpoints: payments, their outcome, refunds and balance inquiries (docs/CONTRACTS.md#http-core).

Every call is authenticated by the terminal's request signature before its body is looked at.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.http import (
    base64_field,
    created,
    endpoint,
    fingerprint,
    json_object,
    raw_body,
    refuse_unknown_fields,
    required,
)
from chalicelib.domain import identifiers

terminal_api = Blueprint(__name__)


def _authenticated_terminal(request=None):
    from chalicelib.auth import terminals

    request = request or terminal_api.current_request
    body = raw_body(request)
    path = terminals.signed_path(request.context.get("path") or request.path, request.context.get("stage"))
    terminal = terminals.authenticate(deps.get_ledger_store(), request.method, path, request.headers, body, deps.get_clock()())
    request.context["terminal_id"] = terminal.terminal_id
    return terminal


def _card(body: dict, signature_allowed: bool):
    from chalicelib.services.ledger import PresentedCard

    card = required(body, "card")
    if not isinstance(card, dict):
        raise errors.ValidationFailed("card はオブジェクトで指定してください。", field="card")
    allowed = {"certificate", "signature", "signed_at"} if signature_allowed else {"certificate"}
    refuse_unknown_fields(card, allowed, "card: ")
    certificate = base64_field(required(card, "certificate"), "card.certificate")
    signature = card.get("signature")
    signed_at = card.get("signed_at")
    if signed_at is not None and (isinstance(signed_at, bool) or not isinstance(signed_at, int)):
        raise errors.ValidationFailed("card.signed_at は Unix 秒の整数で指定してください。", field="card.signed_at")
    return PresentedCard(
        certificate_der=certificate,
        signature=base64_field(signature, "card.signature") if signature is not None else None,
        signed_at=signed_at,
    )


def _payment_body(transfer, refunded_amount: int | None = None) -> dict:
    body = {
        "transfer_id": transfer.transfer_id,
        "status": "posted",
        "amount": transfer.amount,
        "municipality_code": transfer.municipality_code,
        "balance_after": transfer.balance_after,
        "posted_at": transfer.posted_at,
    }
    if refunded_amount is not None:
        body["refunded_amount"] = refunded_amount
    return body


@terminal_api.route("/v1/payments", methods=["POST"])
@endpoint(terminal_api)
def create_payment():
    from chalicelib.observability import count
    from chalicelib.services import ledger

    terminal = _authenticated_terminal()
    body = json_object(terminal_api.current_request)
    refuse_unknown_fields(body, {"transfer_id", "municipality_code", "amount", "card"})
    command = ledger.PaymentCommand(
        transfer_id=identifiers.operation_id(required(body, "transfer_id"), "transfer_id"),
        municipality_code=identifiers.municipality_code(required(body, "municipality_code")),
        amount=identifiers.amount(required(body, "amount")),
        terminal=terminal,
        card=_card(body, signature_allowed=True),
        request_fingerprint=fingerprint(body, terminal.terminal_id),
    )
    transfer = ledger.pay(command, deps.get_ledger_store(), deps.get_card_authority(), deps.get_clock())
    count("PaymentsPosted")
    return created(_payment_body(transfer))


@terminal_api.route("/v1/payments/{transfer_id}", methods=["GET"])
@endpoint(terminal_api)
def get_payment(transfer_id):
    from chalicelib.services import ledger

    terminal = _authenticated_terminal()
    if not identifiers.is_operation_id(transfer_id):
        raise errors.TransferNotFound()
    transfer, refunded = ledger.find_payment(deps.get_ledger_store(), transfer_id, terminal)
    return _payment_body(transfer, refunded)


@terminal_api.route("/v1/payments/{transfer_id}/refunds", methods=["POST"])
@endpoint(terminal_api)
def create_refund(transfer_id):
    from chalicelib.observability import count
    from chalicelib.services import ledger

    terminal = _authenticated_terminal()
    if not identifiers.is_operation_id(transfer_id):
        raise errors.TransferNotFound()
    body = json_object(terminal_api.current_request)
    refuse_unknown_fields(body, {"refund_id", "amount"})
    command = ledger.RefundCommand(
        payment_transfer_id=transfer_id,
        refund_id=identifiers.operation_id(required(body, "refund_id"), "refund_id"),
        amount=identifiers.amount(required(body, "amount")),
        terminal=terminal,
        request_fingerprint=fingerprint(body, terminal.terminal_id, transfer_id),
    )
    refund = ledger.refund(command, deps.get_ledger_store(), deps.get_clock())
    count("RefundsPosted")
    return created(
        {
            "refund_id": refund.transfer_id,
            "payment_transfer_id": transfer_id,
            "status": "posted",
            "amount": refund.amount,
            "municipality_code": refund.municipality_code,
            "balance_after": refund.balance_after,
            "posted_at": refund.posted_at,
        }
    )


@terminal_api.route("/v1/balance-inquiries", methods=["POST"])
@endpoint(terminal_api)
def create_balance_inquiry():
    from chalicelib.services import ledger

    terminal = _authenticated_terminal()
    body = json_object(terminal_api.current_request)
    refuse_unknown_fields(body, {"card"})
    presented = _card(body, signature_allowed=False)
    store = deps.get_ledger_store()
    clock = deps.get_clock()
    merchant = ledger._merchant_of(store, terminal)
    card, _ = ledger.resolve_card(store, deps.get_card_authority(), presented.certificate_der, clock())
    return {
        "merchant_name": merchant.name,
        "balances": ledger.balances_at_merchant(store, merchant, card.mykey_id, clock),
    }


# -- facility links: a facility's own local ID for the card, and nothing else ----------------------------


def _facility_card_body(allowed: set[str]) -> tuple[dict, bytes]:
    body = json_object(terminal_api.current_request)
    refuse_unknown_fields(body, allowed)
    return body, _card(body, signature_allowed=False).certificate_der


@terminal_api.route("/v1/facility-links", methods=["POST"])
@endpoint(terminal_api)
def create_facility_link():
    from chalicelib.services import identity

    terminal = _authenticated_terminal()
    body, certificate = _facility_card_body({"card", "local_id"})
    local_id = identifiers.plain_identifier(required(body, "local_id"), "local_id")
    link = identity.link_facility(deps.get_identity_store(), deps.get_ledger_store(), deps.get_card_authority(),
                                  terminal, certificate, local_id, deps.get_clock())
    return created(link)


@terminal_api.route("/v1/facility-link-lookups", methods=["POST"])
@endpoint(terminal_api)
def look_up_facility_link():
    from chalicelib.services import identity

    terminal = _authenticated_terminal()
    _, certificate = _facility_card_body({"card"})
    return identity.look_up_facility_link(deps.get_identity_store(), deps.get_ledger_store(), deps.get_card_authority(),
                                          terminal, certificate, deps.get_clock())


@terminal_api.route("/v1/facility-link-removals", methods=["POST"])
@endpoint(terminal_api)
def remove_facility_link():
    from chalicelib.services import identity

    terminal = _authenticated_terminal()
    _, certificate = _facility_card_body({"card"})
    return identity.unlink_facility(deps.get_identity_store(), deps.get_ledger_store(), deps.get_card_authority(),
                                    terminal, certificate, deps.get_clock())
