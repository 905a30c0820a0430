"""Bulk grants from a CSV file: upload, progress, and the row-level report.

The file travels base64-encoded in a JSON body (`{"file_name", "content_base64"}`), so the same request
works from the console, from a script and through API Gateway without binary media types. Up to
`MAX_UPLOAD_BYTES` of CSV (about 70,000 rows): with base64 the request stays under Lambda's 6 MB limit
on a synchronous invocation's payload. Larger files are split, and each part is its own upload.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib import errors
from chalicelib.api import dependencies as deps
from chalicelib.api.administration_routes import csv_response
from chalicelib.api.http import base64_field, created, endpoint, json_object, refuse_unknown_fields, required
from chalicelib.api.staff_routes import staff_session

grant_batch_api = Blueprint(__name__)

MAX_UPLOAD_BYTES = 4 * 1024 * 1024
# base64 grows the file by a third; the JSON around it is small.
MAX_UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 4096
REPORT_COLUMNS = ("行番号", "申請番号", "マイキーID", "ポイント", "結果", "項目", "エラーコード", "内容")


def batch_view(batch: dict) -> dict:
    from chalicelib.services import grant_requests

    view = {key: value for key, value in batch.items() if key != "errors"}
    view["errors"] = batch["errors"][:100]
    view["errors_reported"] = len(batch["errors"])
    view["progress"] = grant_requests.progress(batch)
    return view


@grant_batch_api.route("/v1/municipalities/{code}/grant-batches", methods=["POST"])
@endpoint(grant_batch_api)
def upload_grant_batch(code):
    from chalicelib.services import grant_requests, staff

    municipality_code, session = staff_session(grant_batch_api, code, staff.OPERATOR)
    body = json_object(grant_batch_api.current_request, max_bytes=MAX_UPLOAD_BODY_BYTES)
    refuse_unknown_fields(body, {"file_name", "content_base64"})
    file_name = required(body, "file_name")
    if not isinstance(file_name, str) or not file_name.strip() or len(file_name) > 200:
        raise errors.ValidationFailed("file_name は200文字以内です。", field="file_name")
    content = base64_field(required(body, "content_base64"), "content_base64")
    if len(content) > MAX_UPLOAD_BYTES:
        raise errors.RequestTooLarge("ファイルが大きすぎます（4MBまで）。ファイルを分けてください。")
    command = grant_requests.UploadCommand(municipality_code, file_name.strip(), content, session.staff_id)
    batch, was_created = grant_requests.upload(command, deps.get_ledger_store(), deps.get_grant_batch_store(),
                                               deps.get_grant_batch_queue(), deps.get_clock())
    if was_created:
        deps.get_identity_store().audit(
            municipality_code, "grant_batch_uploaded", f"staff:{session.staff_id}",
            counter_terminal_id=session.counter_terminal_id,
            details={"batch_id": batch["batch_id"], "file_name": batch["file_name"], "status": batch["status"],
                     "valid_rows": batch["valid_rows"], "invalid_rows": batch["invalid_rows"],
                     "total_amount": batch["total_amount"]},
        )
        return created(batch_view(batch))
    return batch_view(batch)


@grant_batch_api.route("/v1/municipalities/{code}/grant-batches", methods=["GET"])
@endpoint(grant_batch_api)
def list_grant_batches(code):
    from chalicelib.services import staff

    municipality_code, _ = staff_session(grant_batch_api, code, staff.VIEWER)
    batches = deps.get_grant_batch_store().batches_of_municipality(municipality_code)
    return {"municipality_code": municipality_code, "batches": [batch_view(batch) for batch in batches]}


def _batch(municipality_code: str, batch_id: str) -> dict:
    from chalicelib.domain import identifiers

    batch = deps.get_grant_batch_store().get_batch(municipality_code, identifiers.operation_id(batch_id, "batch_id"))
    if batch is None:
        raise errors.GrantBatchNotFound()
    return batch


@grant_batch_api.route("/v1/municipalities/{code}/grant-batches/{batch_id}", methods=["GET"])
@endpoint(grant_batch_api)
def get_grant_batch(code, batch_id):
    from chalicelib.services import staff

    municipality_code, _ = staff_session(grant_batch_api, code, staff.VIEWER)
    return batch_view(_batch(municipality_code, batch_id))


@grant_batch_api.route("/v1/municipalities/{code}/grant-batches/{batch_id}/report", methods=["GET"])
@endpoint(grant_batch_api)
def grant_batch_report(code, batch_id):
    from chalicelib.services import grant_requests, reports, staff

    municipality_code, _ = staff_session(grant_batch_api, code, staff.VIEWER)
    batch = _batch(municipality_code, batch_id)
    lines = grant_requests.report_rows(deps.get_grant_batch_store(), batch)
    rows = [[line["row"], line["reference"], line["mykey_id"], line["amount"], line["result"], line["column"],
             line["code"], line["message"]] for line in lines]
    return csv_response(reports.excel_csv(REPORT_COLUMNS, rows), f"grant-report-{batch['batch_id'][:8]}.csv")
