"""Approvals and bulk-grant uploads on DynamoDB (the `grant_store` of `services.grant_requests`)."""
from __future__ import annotations

import json

from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.storage.models import ApprovalModel, GrantBatchChunkModel, GrantBatchModel

_CONDITION_FAILED = "ConditionalCheckFailedException"
_BATCH_FIELDS = (
    "municipality_code", "batch_id", "file_name", "content_sha256", "encoding", "uploaded_by", "uploaded_at", "status",
    "total_rows", "valid_rows", "invalid_rows", "total_amount", "chunk_count", "posted_rows", "already_posted_rows",
    "failed_rows", "posted_amount", "approved_by", "queued_at", "completed_at",
)
_NUMBER_FIELDS = {"total_rows", "valid_rows", "invalid_rows", "total_amount", "chunk_count", "posted_rows",
                  "already_posted_rows", "failed_rows", "posted_amount"}


def _approval(item: ApprovalModel) -> dict:
    request = item.request.as_dict() if hasattr(item.request, "as_dict") else dict(item.request or {})
    if "amount" in request:
        request["amount"] = int(request["amount"])
    if "rows" in request:
        request["rows"] = int(request["rows"])
    return {
        "municipality_code": item.municipality_code, "approval_id": item.approval_id, "kind": item.kind,
        "state": item.state, "amount": int(item.amount), "request": request,
        "request_fingerprint": item.request_fingerprint, "requested_by": item.requested_by,
        "requested_at": item.requested_at, "decided_by": item.decided_by, "decided_at": item.decided_at,
        "decision_note": item.decision_note,
    }


def _batch(item: GrantBatchModel) -> dict:
    batch = {name: getattr(item, name) for name in _BATCH_FIELDS}
    for name in _NUMBER_FIELDS:
        batch[name] = int(batch[name] or 0)
    batch["errors"] = json.loads(item.errors) if item.errors else []
    return batch


class DynamoGrantStore:
    def __init__(self, region: str):
        self._connection = Connection(region=region)

    # -- approvals ---------------------------------------------------------------------------------------

    def create_approval(self, approval: dict) -> dict:
        """Store a pending approval unless one with this id exists; returns what is stored either way."""
        fields = {key: value for key, value in approval.items() if key not in ("municipality_code", "approval_id")}
        try:
            ApprovalModel(approval["municipality_code"], approval["approval_id"], **fields).save(
                condition=ApprovalModel.approval_id.does_not_exist())
        except PutError as error:
            if error.cause_response_code != _CONDITION_FAILED:
                raise
        return self.get_approval(approval["municipality_code"], approval["approval_id"])

    def get_approval(self, municipality_code: str, approval_id: str) -> dict | None:
        try:
            return _approval(ApprovalModel.get(municipality_code, approval_id, consistent_read=True))
        except ApprovalModel.DoesNotExist:
            return None

    def approvals_of_municipality(self, municipality_code: str, state: str | None = None) -> list[dict]:
        condition = ApprovalModel.state == state if state else None
        items = [_approval(item) for item in ApprovalModel.query(municipality_code, filter_condition=condition)]
        return sorted(items, key=lambda approval: approval["requested_at"], reverse=True)

    def decide_approval(self, municipality_code: str, approval_id: str, state: str, decided_by: str,
                        decided_at: str, note: str | None) -> bool:
        try:
            ApprovalModel(municipality_code, approval_id).update(
                actions=[ApprovalModel.state.set(state), ApprovalModel.decided_by.set(decided_by),
                         ApprovalModel.decided_at.set(decided_at), ApprovalModel.decision_note.set(note)],
                condition=ApprovalModel.state == "pending",
            )
        except UpdateError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return False
            raise
        return True

    # -- uploads -----------------------------------------------------------------------------------------

    def create_batch(self, batch: dict, chunks: list[list[list]]) -> tuple[dict, bool]:
        """Store the chunks, then the batch (so a visible batch always has its rows); first writer wins."""
        with GrantBatchChunkModel.batch_write() as writer:
            for number, rows in enumerate(chunks):
                writer.save(GrantBatchChunkModel(batch["batch_id"], number, rows=json.dumps(rows, ensure_ascii=False),
                                                 state="pending"))
        fields = {key: value for key, value in batch.items() if key not in ("municipality_code", "batch_id", "errors")}
        try:
            GrantBatchModel(batch["municipality_code"], batch["batch_id"],
                            errors=json.dumps(batch["errors"], ensure_ascii=False), **fields).save(
                condition=GrantBatchModel.batch_id.does_not_exist())
        except PutError as error:
            if error.cause_response_code != _CONDITION_FAILED:
                raise
            return self.get_batch(batch["municipality_code"], batch["batch_id"]), False
        return self.get_batch(batch["municipality_code"], batch["batch_id"]), True

    def get_batch(self, municipality_code: str, batch_id: str) -> dict | None:
        try:
            return _batch(GrantBatchModel.get(municipality_code, batch_id, consistent_read=True))
        except GrantBatchModel.DoesNotExist:
            return None

    def batches_of_municipality(self, municipality_code: str, limit: int = 50) -> list[dict]:
        batches = [_batch(item) for item in GrantBatchModel.query(municipality_code)]
        return sorted(batches, key=lambda batch: batch["uploaded_at"], reverse=True)[:limit]

    def set_batch_status(self, municipality_code: str, batch_id: str, status: str, expected_status: str, **fields) -> bool:
        actions = [GrantBatchModel.status.set(status)]
        actions += [getattr(GrantBatchModel, name).set(value) for name, value in fields.items()]
        try:
            GrantBatchModel(municipality_code, batch_id).update(actions=actions,
                                                                condition=GrantBatchModel.status == expected_status)
        except UpdateError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return False
            raise
        return True

    def get_chunk(self, batch_id: str, chunk_number: int) -> dict | None:
        try:
            item = GrantBatchChunkModel.get(batch_id, chunk_number, consistent_read=True)
        except GrantBatchChunkModel.DoesNotExist:
            return None
        return self._chunk(item)

    @staticmethod
    def _chunk(item: GrantBatchChunkModel) -> dict:
        return {"chunk_number": int(item.chunk_number), "rows": json.loads(item.rows), "state": item.state,
                "results": json.loads(item.results) if item.results else None}

    def chunks_of_batch(self, batch_id: str) -> list[dict]:
        return [self._chunk(item) for item in GrantBatchChunkModel.query(batch_id, consistent_read=True)]

    def pending_chunk_numbers(self, batch_id: str) -> list[int]:
        return [int(item.chunk_number) for item in GrantBatchChunkModel.query(
            batch_id, filter_condition=GrantBatchChunkModel.state == "pending", consistent_read=True,
            attributes_to_get=["chunk_number", "state"])]

    def finish_chunk(self, municipality_code: str, batch_id: str, chunk_number: int, results: list, posted: int,
                     already_posted: int, failed: int, posted_amount: int) -> bool:
        """The chunk's results and the batch's progress in one transaction, only if the chunk was pending."""
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.update(
                    GrantBatchChunkModel(batch_id, chunk_number),
                    actions=[GrantBatchChunkModel.state.set("done"),
                             GrantBatchChunkModel.results.set(json.dumps(results, ensure_ascii=False))],
                    condition=GrantBatchChunkModel.state == "pending",
                )
                transaction.update(
                    GrantBatchModel(municipality_code, batch_id),
                    actions=[GrantBatchModel.posted_rows.add(posted), GrantBatchModel.already_posted_rows.add(already_posted),
                             GrantBatchModel.failed_rows.add(failed), GrantBatchModel.posted_amount.add(posted_amount)],
                    condition=GrantBatchModel.batch_id.exists(),
                )
        except TransactWriteError as error:
            reasons = error.cancellation_reasons or []
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                return False  # another delivery of the same message finished it first
            raise
        return True
