"""The partner conversion consumer (docs/CONTRACTS.md#partner-conversions) and the reserve account's daily job.

The SQS handler is tiny on purpose: Powertools' batch processor runs `convert_record` for each record
and reports the ones that raised as `batchItemFailures`, so only they are retried (the event source
mapping must set `ReportBatchItemFailures`; the templates do). A record raises only for transient
trouble (throttling, a result that could not be sent): every refusal is a result, not an exception.
"""
from __future__ import annotations

import json

from chalice import Blueprint, Cron

from chalicelib.api import dependencies as deps

CONVERSION_QUEUE = "points-partner-conversions"
CONVERSION_DEAD_LETTER_QUEUE = "points-partner-conversions-dead-letters"
CONVERSION_BATCH_SIZE = 10
# A partner's month-end batch drains at ten batches at once instead of scaling out over the account's
# concurrency, which the API needs; the function's reserved concurrency (.chalice/config.json) matches it.
CONVERSION_MAXIMUM_CONCURRENCY = 10

conversion_handlers = Blueprint(__name__)


@conversion_handlers.on_sqs_message(queue=CONVERSION_QUEUE, batch_size=CONVERSION_BATCH_SIZE,
                                    maximum_concurrency=CONVERSION_MAXIMUM_CONCURRENCY)
def handle_partner_conversions(event):
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event.to_dict(), record_handler=convert_record, processor=processor,
                                    context=event.context)


def convert_record(record) -> dict:
    from chalicelib.observability import count_now, get_logger
    from chalicelib.services import conversions

    # Read from the raw attribute: a Binary-typed `signature` has no stringValue and is simply no signature.
    raw_signature = (record.raw_event.get("messageAttributes") or {}).get("signature") or {}
    signature = raw_signature.get("stringValue") if isinstance(raw_signature.get("stringValue"), str) else None
    result, result_queue = conversions.process_message(
        deps.get_ledger_store(), deps.get_identity_store(), record.body, signature, deps.get_clock(),
        deps.get_hash_secret(),
    )
    # Support finds a partner's transaction by partner_id and partner_txn_id; an id that failed validation
    # (it may be an Individual Number) appears only as its keyed hash.
    get_logger().info("partner conversion", extra={
        "message_id": record.message_id, **conversions.log_fields(record.body, deps.get_hash_secret()),
        "status": result["status"], "reason": result["reason"], "points": result["points"],
    })
    if result_queue is None:
        # No registered, active partner to tell: never retried, but counted, and the platform's alarm on
        # this metric tells the operator (docs/PARTNERS.md, "登録されていない提携先").
        count_now("PartnerMessagesUnattributed")
        return result
    count_now("PartnerConversions", status=result["status"])
    # Sent after the decision; if sending fails the record is retried, and the decision replays unchanged.
    deps.get_sqs_client().send_message(QueueUrl=deps.queue_url(result_queue),
                                       MessageBody=json.dumps(result, ensure_ascii=False))
    return result


@conversion_handlers.schedule(Cron(10, 15, "*", "*", "?", "*"), name="move_expired_reserves")
def move_expired_reserves(event):
    from chalicelib.services import conversions

    moved = conversions.move_expired_reserves(deps.get_ledger_store(), deps.get_identity_store(), deps.get_clock())
    return {"reserve_moves": len(moved)}
