"""The partner's own signed read API (docs/CONTRACTS.md#partner-reconciliation): its conversions, its statement.

Partners sign like point-management companies, with their own header and prefix: `X-Partner-Id`,
`X-Timestamp`, `X-Nonce`, `X-Signature` over
`POINTS-PARTNER-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n{hex SHA-256 of the body}`, with either
of their registered keys. No path names a partner: each reads only what belongs to the partner that
signed (`chalicelib/services/partner_reconciliation.py`).
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import dependencies as deps
from chalicelib.api.http import endpoint, json_object, raw_body

partner_reconciliation_api = Blueprint(__name__)


def _partner() -> dict:
    """The signing partner, checked before the body is read (the size limit aside)."""
    from chalicelib.auth import terminals
    from chalicelib.services import partner_reconciliation

    request = partner_reconciliation_api.current_request
    path = terminals.signed_path(request.context.get("path") or request.path, request.context.get("stage"))
    partner = partner_reconciliation.authenticate(deps.get_ledger_store(), request.method, path, request.headers,
                                                  raw_body(request), deps.get_clock())
    # The request log line names the partner, as it names terminals and staff (chalicelib/observability.py).
    request.context["partner_id"] = partner["partner_id"]
    return partner


@partner_reconciliation_api.route("/v1/partner/conversion-inquiries", methods=["POST"])
@endpoint(partner_reconciliation_api)
def conversion_inquiry():
    from chalicelib.services import partner_reconciliation

    partner = _partner()
    inquiry = partner_reconciliation.parse_inquiry(json_object(partner_reconciliation_api.current_request))
    return partner_reconciliation.answer(deps.get_ledger_store(), deps.get_hash_secret(), partner["partner_id"], inquiry)


@partner_reconciliation_api.route("/v1/partner/statements/{month}", methods=["GET"])
@endpoint(partner_reconciliation_api)
def own_statement(month):
    from chalicelib.api.partner_routes import statement_response
    from chalicelib.services import conversions

    partner = _partner()
    statement = conversions.monthly_statement(deps.get_ledger_store(), partner["partner_id"], month)
    return statement_response(statement, partner_reconciliation_api.current_request)
