"""The transfers table's stream consumer: keeps the transfer lists (`transfer_index`) up to date.

A plain Lambda function (Chalice's `on_dynamodb_record` wants the stream's ARN at import time; the
platform template wires this one to the transfers table's stream instead, with
`ReportBatchItemFailures`, bisection and an on-failure destination). Powertools' batch processor runs
`project_record` for each record and reports the ones that raised, so Lambda retries from the first of
them and nothing after it is lost. Locally, `tools/localcloud/streams.py` reads DynamoDB Local's stream
and calls the same function with the same event shape.
"""
from __future__ import annotations

from chalice import Blueprint

from chalicelib.api import dependencies as deps

PROJECTION_FUNCTION = "project_transfers"

projection_handlers = Blueprint(__name__)


@projection_handlers.lambda_function(name=PROJECTION_FUNCTION)
def project_transfers(event, context):
    deps.get_ledger_store()  # binds the models to this stage's tables
    return project_stream_event(event, context)


def project_stream_event(event: dict, context) -> dict:
    """One stream batch, with the models already bound (the local delivery binds its own)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event=event, record_handler=project_record, processor=processor, context=context)


def project_record(record) -> int:
    from chalicelib.storage import projection

    return projection.project_record(record.raw_event)
