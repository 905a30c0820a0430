"""The bulk-grant consumer: each message names one chunk of an uploaded CSV, whose rows it posts.

An upload (`POST /v1/municipalities/{code}/grant-batches`) stores its rows in chunks and puts one
message per chunk on the grant-batch queue, so a 100,000-row file is posted by many short invocations
in parallel instead of one request that API Gateway would cut off. Posting a row is a grant with an id
derived from the row's application number, so a redelivered or retried chunk posts nothing twice. The
handler is tiny on purpose (Powertools' partial batch response over `post_chunk_record`); the mapping
sets `ReportBatchItemFailures` in the templates.
"""
from __future__ import annotations

import json

from chalice import Blueprint

from chalicelib.api import dependencies as deps

GRANT_BATCH_QUEUE = "points-grant-batches"
GRANT_BATCH_DEAD_LETTER_QUEUE = "points-grant-batches-dead-letters"
GRANT_BATCH_SIZE = 1
# At most five chunks at once: a 100,000-row upload (500 chunks of 200 rows) still posts in minutes, while
# it leaves the account's concurrency to the API and keeps the writes to one municipality's budget from
# contending. The function's reserved concurrency (.chalice/config.json) matches it.
GRANT_BATCH_MAXIMUM_CONCURRENCY = 5

grant_batch_handlers = Blueprint(__name__)


@grant_batch_handlers.on_sqs_message(queue=GRANT_BATCH_QUEUE, batch_size=GRANT_BATCH_SIZE,
                                     maximum_concurrency=GRANT_BATCH_MAXIMUM_CONCURRENCY)
def handle_grant_batches(event):
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(event=event.to_dict(), record_handler=post_chunk_record, processor=processor,
                                    context=event.context)


def post_chunk_record(record) -> dict:
    from chalicelib.observability import get_logger
    from chalicelib.services import grant_requests

    try:
        message = json.loads(record.body)
        municipality_code, batch_id, chunk_number = (message["municipality_code"], message["batch_id"],
                                                     int(message["chunk_number"]))
        if not (isinstance(municipality_code, str) and municipality_code and isinstance(batch_id, str) and batch_id
                and 0 <= chunk_number < 10**6):
            raise TypeError("grant batch message fields")
    except (ValueError, TypeError, KeyError, RecursionError, OverflowError):
        # Only the platform writes this queue: an unreadable message is a bug to log, not one to retry.
        get_logger().error("unreadable grant batch message", extra={"message_id": record.message_id})
        return {"skipped": "unreadable"}
    outcome = grant_requests.post_chunk(
        deps.get_ledger_store(), deps.get_grant_batch_store(), municipality_code, batch_id, chunk_number,
        deps.get_clock(),
    )
    get_logger().info("grant batch chunk", extra={"batch_id": message["batch_id"], "chunk_number": message["chunk_number"],
                                                  **outcome})
    return outcome
