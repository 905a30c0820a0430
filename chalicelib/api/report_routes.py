"""Reports for municipal staff: daily movements (the dashboard chart), the merchant settlement of a month
as JSON or as CSV for Excel, and the points expiring soon."""
from __future__ import annotations

import datetime as dt

from chalice import Blueprint

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.administration_routes import csv_response
from chalicelib.api.http import endpoint
from chalicelib.api.staff_routes import staff_session
from chalicelib.domain import identifiers
from chalicelib.domain.time import japan_date

report_api = Blueprint(__name__)


def _query() -> dict:
    return report_api.current_request.query_params or {}


@report_api.route("/v1/municipalities/{code}/reports/daily", methods=["GET"])
@endpoint(report_api)
def daily_report(code):
    from chalicelib.services import reports, staff

    municipality_code, _ = staff_session(report_api, code, staff.VIEWER)
    query = _query()
    today = japan_date(deps.get_clock()())
    end = identifiers.iso_date(query["to"], "to") if query.get("to") else today.isoformat()
    start = (identifiers.iso_date(query["from"], "from") if query.get("from")
             else (dt.date.fromisoformat(end) - dt.timedelta(days=29)).isoformat())
    return reports.daily(deps.get_ledger_store(), municipality_code, start, end)


@report_api.route("/v1/municipalities/{code}/reports/settlements", methods=["GET"])
@endpoint(report_api)
def settlement_report(code):
    from chalicelib.services import reports, staff

    municipality_code, _ = staff_session(report_api, code, staff.VIEWER)
    query = _query()
    month = query.get("month") or japan_date(deps.get_clock()()).strftime("%Y-%m")
    output = query.get("format", "json")
    if output not in ("json", "csv"):
        raise errors.ValidationFailed("format は json か csv です。", field="format")
    report = reports.settlement(deps.get_ledger_store(), municipality_code, month)
    if output == "csv":
        return csv_response(reports.settlement_csv(report), f"settlement-{municipality_code}-{report['month']}.csv")
    return report


@report_api.route("/v1/municipalities/{code}/reports/expiring", methods=["GET"])
@endpoint(report_api)
def expiring_report(code):
    from chalicelib.services import reports, staff

    municipality_code, _ = staff_session(report_api, code, staff.VIEWER)
    days_text = _query().get("days", "30")
    if not identifiers.ascii_digits(days_text, 3):
        raise errors.ValidationFailed("days は 1〜366 の整数です。", field="days")
    return reports.expiring_soon(deps.get_ledger_store(), municipality_code, int(days_text), deps.get_clock())
