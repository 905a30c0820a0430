"""DynamoDB Streams delivery for the local stack: what Lambda's event source mapping does in AWS.

`chalice local` never reads a table's stream. `StreamDelivery` reads the transfers table's stream on
DynamoDB Local (DescribeTable → DescribeStream → GetShardIterator → GetRecords), builds the event Lambda
would deliver (`{"Records": [...]}` with `eventSource` `aws:dynamodb`), calls the projection handler and,
like the event source mapping with `ReportBatchItemFailures`, starts again from the first failed record
next time. `run_forever` polls in a thread of `make run`; tests and the simulation call
`deliver_pending()` before they read the transfer lists, so that what they read is complete.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

LOG = logging.getLogger(__name__)
BATCH_SIZE = 100


class StreamDelivery:
    def __init__(self, handler: Callable[[dict, object], dict], table_name: Callable[[], str] | str,
                 endpoint_url: str | None = None, region: str = "ap-northeast-1"):
        import boto3

        self._handler = handler
        self._table_name = table_name if callable(table_name) else (lambda: table_name)
        self._dynamodb = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=region)
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint_url, region_name=region)
        # Per stream ARN and shard: the sequence number of the last record handled.
        self._positions: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def deliver_pending(self) -> int:
        """Deliver every record written so far; returns how many were handled."""
        with self._lock:
            table = self._dynamodb.describe_table(TableName=self._table_name())["Table"]
            stream_arn = table.get("LatestStreamArn")
            if not stream_arn:
                return 0
            positions = self._positions.setdefault(stream_arn, {})
            delivered = 0
            for shard in self._shards(stream_arn):
                delivered += self._deliver_shard(stream_arn, shard["ShardId"], positions)
            return delivered

    def _shards(self, stream_arn: str) -> list[dict]:
        shards, start = [], None
        while True:
            arguments = {"StreamArn": stream_arn, **({"ExclusiveStartShardId": start} if start else {})}
            description = self._streams.describe_stream(**arguments)["StreamDescription"]
            shards += description["Shards"]
            start = description.get("LastEvaluatedShardId")
            if not start:
                # Parents before children, as Lambda reads them.
                return sorted(shards, key=lambda shard: shard["SequenceNumberRange"]["StartingSequenceNumber"])

    def _deliver_shard(self, stream_arn: str, shard_id: str, positions: dict[str, str]) -> int:
        last = positions.get(shard_id)
        arguments = {"StreamArn": stream_arn, "ShardId": shard_id}
        arguments.update({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last} if last
                         else {"ShardIteratorType": "TRIM_HORIZON"})
        iterator = self._streams.get_shard_iterator(**arguments)["ShardIterator"]
        delivered = 0
        while iterator:
            response = self._streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
            records = response["Records"]
            if not records:
                return delivered
            failed = self._call_handler(stream_arn, records)
            handled = records if failed is None else records[: next(
                index for index, record in enumerate(records) if record["dynamodb"]["SequenceNumber"] == failed)]
            if handled:
                positions[shard_id] = handled[-1]["dynamodb"]["SequenceNumber"]
                delivered += len(handled)
            if failed is not None:
                LOG.warning("stream record %s failed; delivered again next time", failed)
                return delivered
            iterator = response.get("NextShardIterator")
        return delivered

    def _call_handler(self, stream_arn: str, records: list[dict]) -> str | None:
        event = {"Records": [
            {**record, "eventSource": "aws:dynamodb", "eventSourceARN": stream_arn,
             "awsRegion": record.get("awsRegion", "ap-northeast-1")}
            for record in records
        ]}
        try:
            response = self._handler(event, _LocalContext()) or {}
        except Exception:  # noqa: BLE001 - as for Lambda, a failed invocation is the whole batch again
            LOG.exception("stream batch failed")
            return records[0]["dynamodb"]["SequenceNumber"]
        failures = response.get("batchItemFailures") or []
        return failures[0]["itemIdentifier"] if failures else None

    def run_forever(self, stop: threading.Event, interval_seconds: float = 0.1) -> None:
        """Deliver until `stop` is set. Whoever stops DynamoDB Local sets it and joins this thread first; a
        round that fails once the stop was asked for is the database going away, not worth a traceback."""
        while not stop.is_set():
            try:
                self.deliver_pending()
            except Exception as error:  # noqa: BLE001 - the poller must outlive a failed round, as Lambda's does
                if stop.is_set():
                    LOG.info("stream delivery interrupted by the stop: %s", error)
                    break
                LOG.exception("stream delivery round failed")
            stop.wait(interval_seconds)


class _LocalContext:
    function_name = "project_transfers"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:ap-northeast-1:000000000000:function:project_transfers"
    aws_request_id = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def transfer_stream_delivery(endpoint_url: str | None = None, region: str = "ap-northeast-1") -> StreamDelivery:
    """Delivery of the transfers table's stream (the table the models are bound to) to the projection."""
    from chalicelib.api.projection_handlers import project_stream_event
    from chalicelib.storage.models import TransferModel

    return StreamDelivery(project_stream_event, lambda: TransferModel.Meta.table_name, endpoint_url, region)
