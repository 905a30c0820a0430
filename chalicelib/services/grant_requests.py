"""Grants as staff ask for them: single grants, two-person approval, and bulk CSV uploads.

A single grant at or below the programme's approval threshold is posted at once (`ledger.grant`). Above
it, the request is stored as a pending approval keyed by its grant_id, and only a second staff member
with the approver role can post it; the requester can never approve their own request. A bulk upload
is checked row by row; a file with any error posts nothing and returns its report, so staff fix the
file and upload it again. A valid file is stored in chunks and posted by the grant-batch queue, one
message per chunk, after a second person's approval when its total is above the threshold.

Every row's grant id is derived from the municipality and the row's application number (申請番号), so a
re-upload — the same file twice, or a corrected file after some rows failed — grants each application
once; a row whose number was already granted with different content is reported as a conflict.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.domain.time import japan_date, posted_at
from chalicelib.services import grant_csv, ledger, ports

Clock = Callable[[], float]
# Rows per chunk: one queue message posts this many grants, well inside the consumer's timeout.
CHUNK_ROWS = 200
MAX_REPORTED_ERRORS = 1000
_BATCH_NAMESPACE = uuid.UUID("2f9d0a7e-3c55-4b8e-a1f2-6d0c4e8b7a31")
_ROW_GRANT_NAMESPACE = uuid.UUID("b6e3f1c4-8a2d-4f7e-9c1b-5e4d3a2f1b0c")

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
GRANT, GRANT_BATCH = "grant", "grant_batch"
INVALID, AWAITING_APPROVAL, QUEUED, COMPLETED = "invalid", "awaiting_approval", "queued", "completed"
ROW_GRANTED, ROW_ALREADY_GRANTED, ROW_FAILED = "granted", "already_granted", "failed"


@dataclass(frozen=True)
class GrantOutcome:
    """A posted grant, or a grant waiting for approval (then `transfer` is None)."""

    transfer: ports.Transfer | None
    approval: dict | None


def _municipality(store, code: str) -> ports.Municipality:
    municipality = store.get_municipality(code)
    if municipality is None:
        raise errors.MunicipalityNotFound()
    return municipality


# -- single grants and approval -----------------------------------------------------------------------


def request_grant(command: ledger.GrantCommand, store, grant_store, clock: Clock) -> GrantOutcome:
    """Post the grant, or park it for approval when it is above the programme's threshold."""
    municipality = _municipality(store, command.municipality_code)
    existing = store.get_transfer(command.grant_id)
    if existing is not None or command.amount <= municipality.approval_threshold:
        return GrantOutcome(ledger.grant(command, store, clock), None)
    # What would refuse the grant anyway is refused now, not after a second person has approved it.
    if command.amount > municipality.max_amount:
        raise errors.InvalidAmount(f"1回に付与できるのは {municipality.max_amount} ポイントまでです。", field="amount")
    if not store.mykey_exists(command.mykey_id):
        raise errors.MykeyIdUnknown()
    approval = {
        "municipality_code": command.municipality_code, "approval_id": command.grant_id, "kind": GRANT,
        "state": PENDING, "amount": command.amount,
        "request": {"mykey_id": command.mykey_id, "amount": command.amount, "reason": command.reason,
                    "expires_on": command.expires_on},
        "request_fingerprint": command.request_fingerprint, "requested_by": command.staff_id,
        "requested_at": posted_at(clock()),
    }
    stored = grant_store.create_approval(approval)
    if stored["kind"] != GRANT or stored["request_fingerprint"] != command.request_fingerprint:
        raise errors.TransferIdConflict()
    if stored["state"] == APPROVED:
        return GrantOutcome(_post_approved_grant(stored, store, clock), stored)
    return GrantOutcome(None, stored)


def _grant_command(approval: dict) -> ledger.GrantCommand:
    request = approval["request"]
    return ledger.GrantCommand(
        grant_id=approval["approval_id"], municipality_code=approval["municipality_code"],
        mykey_id=request["mykey_id"], amount=int(request["amount"]), reason=request["reason"],
        expires_on=request.get("expires_on"), staff_id=approval["requested_by"],
        request_fingerprint=approval["request_fingerprint"],
    )


def _post_approved_grant(approval: dict, store, clock: Clock) -> ports.Transfer:
    return ledger.grant(_grant_command(approval), store, clock)


def approve(store, grant_store, queue, municipality_code: str, approval_id: str, approver_id: str, clock: Clock) -> dict:
    """A second staff member approves: the grant is posted, or the upload's chunks are queued.

    Approving twice (a double click, a retry after a lost answer) gives the same result.
    """
    approval = grant_store.get_approval(municipality_code, approval_id)
    if approval is None:
        raise errors.ApprovalNotFound()
    if approval["requested_by"] == approver_id:
        raise errors.SelfApprovalForbidden()
    if approval["state"] == REJECTED or (approval["state"] == APPROVED and approval["decided_by"] != approver_id):
        raise errors.ApprovalAlreadyDecided()
    if approval["state"] == PENDING:
        decided_at = posted_at(clock())
        if not grant_store.decide_approval(municipality_code, approval_id, APPROVED, approver_id, decided_at, None):
            return approve(store, grant_store, queue, municipality_code, approval_id, approver_id, clock)
        approval = {**approval, "state": APPROVED, "decided_by": approver_id, "decided_at": decided_at}
    # From here on the work is idempotent, so a retry after a crash finishes what the first attempt began.
    if approval["kind"] == GRANT:
        transfer = _post_approved_grant(approval, store, clock)
        return {"approval": approval, "grant": transfer}
    batch = start_posting(grant_store, queue, municipality_code, approval_id, approver_id, clock)
    return {"approval": approval, "batch": batch}


def reject(grant_store, municipality_code: str, approval_id: str, staff_id: str, note: str, clock: Clock) -> dict:
    approval = grant_store.get_approval(municipality_code, approval_id)
    if approval is None:
        raise errors.ApprovalNotFound()
    if approval["state"] != PENDING:
        raise errors.ApprovalAlreadyDecided()
    decided_at = posted_at(clock())
    if not grant_store.decide_approval(municipality_code, approval_id, REJECTED, staff_id, decided_at, note):
        raise errors.ApprovalAlreadyDecided()
    if approval["kind"] == GRANT_BATCH:
        grant_store.set_batch_status(municipality_code, approval_id, "rejected", AWAITING_APPROVAL)
    return {**approval, "state": REJECTED, "decided_by": staff_id, "decided_at": decided_at, "decision_note": note}


# -- bulk uploads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadCommand:
    municipality_code: str
    file_name: str
    content: bytes
    staff_id: str


def batch_id_of(municipality_code: str, content: bytes) -> str:
    return str(uuid.uuid5(_BATCH_NAMESPACE, f"{municipality_code}/{hashlib.sha256(content).hexdigest()}"))


def row_grant_id(municipality_code: str, reference: str) -> str:
    """The grant id of an application: the same 申請番号 is the same grant, in whichever upload."""
    return str(uuid.uuid5(_ROW_GRANT_NAMESPACE, f"{municipality_code}/{reference}"))


def upload(command: UploadCommand, store, grant_store, queue, clock: Clock) -> tuple[dict, bool]:
    """Check the file, store it, and start posting (or ask for approval). Returns (batch, created now).

    The same file uploaded again returns the first upload's batch and does nothing else.
    """
    municipality = _municipality(store, command.municipality_code)
    batch_id = batch_id_of(command.municipality_code, command.content)
    existing = grant_store.get_batch(command.municipality_code, batch_id)
    if existing is not None:
        return existing, False
    now = clock()
    parsed = grant_csv.parse(command.content, municipality.max_amount, japan_date(now))
    valid = not parsed.errors and parsed.rows
    total_amount = sum(row.amount for row in parsed.rows)
    if not parsed.rows and not parsed.errors:
        raise errors.CsvHeaderInvalid("データの行がありません。")
    needs_approval = valid and total_amount > municipality.approval_threshold
    chunks = [parsed.rows[start:start + CHUNK_ROWS] for start in range(0, len(parsed.rows), CHUNK_ROWS)] if valid else []
    batch = {
        "municipality_code": command.municipality_code, "batch_id": batch_id, "file_name": command.file_name,
        "content_sha256": hashlib.sha256(command.content).hexdigest(), "encoding": parsed.encoding,
        "uploaded_by": command.staff_id, "uploaded_at": posted_at(now),
        "status": INVALID if not valid else (AWAITING_APPROVAL if needs_approval else QUEUED),
        "total_rows": parsed.total_rows, "valid_rows": len(parsed.rows), "invalid_rows": _rows_with_errors(parsed),
        "total_amount": total_amount, "chunk_count": len(chunks),
        "posted_rows": 0, "already_posted_rows": 0, "failed_rows": 0, "posted_amount": 0,
        "errors": [dataclasses.asdict(error) for error in parsed.errors[:MAX_REPORTED_ERRORS]],
        "approved_by": None, "queued_at": None, "completed_at": None,
    }
    rows = [[[row.row, row.reference, row.mykey_id, row.amount, row.reason, row.expires_on] for row in chunk] for chunk in chunks]
    stored, created = grant_store.create_batch(batch, rows)
    if not created:
        return stored, False
    if needs_approval:
        grant_store.create_approval({
            "municipality_code": command.municipality_code, "approval_id": batch_id, "kind": GRANT_BATCH,
            "state": PENDING, "amount": total_amount,
            "request": {"file_name": command.file_name, "rows": len(parsed.rows)},
            "request_fingerprint": batch["content_sha256"], "requested_by": command.staff_id,
            "requested_at": batch["uploaded_at"],
        })
    elif valid:
        stored = start_posting(grant_store, queue, command.municipality_code, batch_id, None, clock)
    return stored, True


def _rows_with_errors(parsed: grant_csv.ParsedFile) -> int:
    return len({error.row for error in parsed.errors})


def start_posting(grant_store, queue, municipality_code: str, batch_id: str, approver_id: str | None, clock: Clock) -> dict:
    """Mark the upload queued and send one message per chunk (again on a retry: posting is idempotent)."""
    batch = grant_store.get_batch(municipality_code, batch_id)
    if batch is None:
        raise errors.GrantBatchNotFound()
    if batch["status"] == AWAITING_APPROVAL:
        grant_store.set_batch_status(municipality_code, batch_id, QUEUED, AWAITING_APPROVAL,
                                     approved_by=approver_id, queued_at=posted_at(clock()))
    elif batch["status"] == QUEUED and batch["queued_at"] is None:
        grant_store.set_batch_status(municipality_code, batch_id, QUEUED, QUEUED, queued_at=posted_at(clock()))
    if batch["status"] in (AWAITING_APPROVAL, QUEUED):
        pending = grant_store.pending_chunk_numbers(batch_id)
        queue.send_chunks(municipality_code, batch_id, pending)
    return grant_store.get_batch(municipality_code, batch_id)


def post_chunk(store, grant_store, municipality_code: str, batch_id: str, chunk_number: int, clock: Clock) -> dict:
    """Post every row of one chunk and record the results with the batch's progress, once.

    Raises only for trouble worth a retry (contention, throttling); a row that cannot be granted is a
    result, not an exception.
    """
    batch = grant_store.get_batch(municipality_code, batch_id)
    chunk = grant_store.get_chunk(batch_id, chunk_number)
    if batch is None or chunk is None:
        return {"skipped": "unknown_chunk"}
    if batch["status"] != QUEUED:
        return {"skipped": batch["status"]}
    if chunk["state"] == "done":
        _complete_if_finished(grant_store, municipality_code, batch_id, clock)
        return {"skipped": "already_done"}
    queued_at = batch["queued_at"] or batch["uploaded_at"]
    results = []
    counts = {ROW_GRANTED: 0, ROW_ALREADY_GRANTED: 0, ROW_FAILED: 0}
    granted_amount = 0
    for row, reference, mykey_id, amount, reason, expires_on in chunk["rows"]:
        command = ledger.GrantCommand(
            grant_id=row_grant_id(municipality_code, reference), municipality_code=municipality_code,
            mykey_id=mykey_id, amount=int(amount), reason=reason, expires_on=expires_on,
            staff_id=batch["uploaded_by"],
            request_fingerprint=_row_fingerprint(municipality_code, mykey_id, int(amount), reason, expires_on),
        )
        try:
            transfer = ledger.grant(command, store, clock)
        except errors.ConcurrentUpdate:
            raise  # transient: the whole chunk is retried, and rows already posted replay
        except errors.DomainError as refusal:
            results.append([row, ROW_FAILED, refusal.code])
            counts[ROW_FAILED] += 1
            continue
        # A grant posted before this upload was queued came from an earlier upload of the same application.
        outcome = ROW_ALREADY_GRANTED if transfer.posted_at < queued_at else ROW_GRANTED
        results.append([row, outcome, None])
        counts[outcome] += 1
        if outcome == ROW_GRANTED:
            granted_amount += transfer.amount
    grant_store.finish_chunk(municipality_code, batch_id, chunk_number, results, counts[ROW_GRANTED],
                             counts[ROW_ALREADY_GRANTED], counts[ROW_FAILED], granted_amount)
    _complete_if_finished(grant_store, municipality_code, batch_id, clock)
    return counts


def _row_fingerprint(municipality_code: str, mykey_id: str, amount: int, reason: str, expires_on: str | None) -> str:
    canonical = json.dumps([municipality_code, mykey_id, amount, reason, expires_on], ensure_ascii=False)
    return "csv:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _complete_if_finished(grant_store, municipality_code: str, batch_id: str, clock: Clock) -> None:
    batch = grant_store.get_batch(municipality_code, batch_id)
    done = batch["posted_rows"] + batch["already_posted_rows"] + batch["failed_rows"]
    if batch["status"] == QUEUED and done >= batch["valid_rows"]:
        grant_store.set_batch_status(municipality_code, batch_id, COMPLETED, QUEUED, completed_at=posted_at(clock()))


def progress(batch: dict) -> dict:
    """What the console shows while an upload is being posted."""
    done = batch["posted_rows"] + batch["already_posted_rows"] + batch["failed_rows"]
    valid = batch["valid_rows"]
    return {"processed_rows": done, "percent": 100 if valid == 0 else min(100, done * 100 // valid)}


ROW_OUTCOME_NAMES = {ROW_GRANTED: "付与しました", ROW_ALREADY_GRANTED: "付与済み（以前の取り込み）", ROW_FAILED: "付与できませんでした"}


def report_rows(grant_store, batch: dict) -> list[dict]:
    """One line per row for the downloadable report: the validation errors, or each row's outcome."""
    if batch["status"] == INVALID:
        return [{"row": error["row"], "reference": "", "mykey_id": "", "amount": "", "result": "エラー",
                 "column": error["column"], "code": error["code"], "message": error["message"]}
                for error in batch["errors"]]
    lines = []
    for chunk in grant_store.chunks_of_batch(batch["batch_id"]):
        outcomes = {entry[0]: entry for entry in chunk["results"] or []}
        for row, reference, mykey_id, amount, _reason, _expires_on in chunk["rows"]:
            outcome = outcomes.get(row)
            code = outcome[2] if outcome else None
            lines.append({
                "row": row, "reference": reference, "mykey_id": mykey_id, "amount": amount,
                "result": ROW_OUTCOME_NAMES[outcome[1]] if outcome else "未処理", "column": "",
                "code": code or "", "message": errors.message_for_code(code) if code else "",
            })
    return sorted(lines, key=lambda line: line["row"])
