"""Transfer lists fed from the transfers table's stream (chalicelib/storage/projection.py) on DynamoDB Local.

Each movement's transaction writes no index entry; `project_transfers` lists it afterwards from the
stream. These tests read `transfer_index` directly and drive the delivery themselves (the rest of the
suite reads through the store, which delivers first: tests/conftest.py).
"""
from __future__ import annotations

import pytest

from chalicelib.api import projection_handlers
from chalicelib.storage import projection
from chalicelib.storage.models import TransferIndexModel, TransferModel

pytestmark = pytest.mark.integration


def _entries(transfer_id: str) -> list[tuple[str, str]]:
    return sorted((item.index_key, item.sort_key) for item in TransferIndexModel.scan()
                  if item.sort_key.endswith("#" + transfer_id))


@pytest.fixture
def delivery(table_prefix):
    from tests.conftest import REGION
    from tools.localcloud.streams import transfer_stream_delivery

    stream = transfer_stream_delivery(TransferModel._get_connection().connection.client.meta.endpoint_url, REGION)
    stream.deliver_pending()  # what earlier tests posted
    return stream


def test_payment__is_listed_for_its_municipality_and_its_resident_only_after_the_stream_delivers_it(dynamo_world, delivery):
    mykey = dynamo_world.add_card()
    dynamo_world.grant(mykey, 1000)
    payment = dynamo_world.pay(mykey, 300)
    assert _entries(payment.transfer_id) == []  # the transaction itself wrote no list entry

    assert delivery.deliver_pending() >= 2  # the grant and the payment at least

    shard = TransferModel.get(payment.transfer_id).municipality_shard
    sort_key = projection.sort_key(payment.posted_at, payment.transfer_id)
    assert _entries(payment.transfer_id) == sorted([(f"mykey#{mykey}", sort_key), (f"municipality#{shard}", sort_key)])
    [listed] = [t for t in dynamo_world.store.transfers_of_mykey(mykey) if t.transfer_id == payment.transfer_id]
    assert listed == payment
    assert [t.transfer_id for t in dynamo_world.store.transfers_of_mykey(mykey, "999999")] == []
    posted = {p.transfer_id: p for p in dynamo_world.store.transfers_of_municipality(dynamo_world.home_code)}
    assert posted[payment.transfer_id].amount == 300 and posted[payment.transfer_id].merchant_id == payment.merchant_id


def test_redelivered_records__list_each_transfer_once(dynamo_world, delivery, dynamodb_client):
    mykey = dynamo_world.add_card()
    grant = dynamo_world.grant(mykey, 700)
    delivery.deliver_pending()
    before = _entries(grant.transfer_id)

    # Lambda delivers a batch again after a timeout: the same records, the same entries.
    streams = delivery._streams
    stream_arn = dynamodb_client.describe_table(TableName=TransferModel.Meta.table_name)["Table"]["LatestStreamArn"]
    records = []
    for shard in delivery._shards(stream_arn):
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records += page["Records"]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    mine = [r for r in records if r["dynamodb"]["NewImage"]["transfer_id"]["S"] == grant.transfer_id]
    assert len(mine) == 1
    answer = projection_handlers.project_stream_event({"Records": [dict(mine[0], eventSource="aws:dynamodb")] * 2}, None)

    assert answer == {"batchItemFailures": []}
    assert _entries(grant.transfer_id) == before and len(before) == 2


def test_record_that_fails__is_reported_and_delivered_again_next_time(dynamo_world, delivery, monkeypatch):
    mykey = dynamo_world.add_card()
    grant = dynamo_world.grant(mykey, 500)
    real = projection.project_record
    failures = []

    def failing_once(record):
        if record["dynamodb"]["NewImage"]["transfer_id"]["S"] == grant.transfer_id and not failures:
            failures.append(record["dynamodb"]["SequenceNumber"])
            raise RuntimeError("throttled")
        return real(record)

    monkeypatch.setattr(projection, "project_record", failing_once)
    delivery.deliver_pending()
    assert failures and _entries(grant.transfer_id) == []  # reported as failed, nothing after it skipped

    delivery.deliver_pending()
    assert len(_entries(grant.transfer_id)) == 2


def test_backfill__lists_transfers_posted_before_the_stream_existed(dynamo_world, delivery):
    mykey = dynamo_world.add_card()
    grant = dynamo_world.grant(mykey, 400)
    for index_key, sort_key in _entries(grant.transfer_id):
        TransferIndexModel(index_key, sort_key).delete()
    delivery.deliver_pending()  # the stream's copy is written; remove it to stand for an older transfer
    for index_key, sort_key in _entries(grant.transfer_id):
        TransferIndexModel(index_key, sort_key).delete()
    assert _entries(grant.transfer_id) == []

    assert projection.backfill() >= 2

    assert len(_entries(grant.transfer_id)) == 2


def test_enable_streams__turns_on_the_transfers_stream_of_a_table_created_without_it(dynamodb_client):
    import uuid

    from chalicelib.storage.schema import enable_streams, table_definitions

    prefix = f"old{uuid.uuid4().hex[:8]}-"
    [definition] = [d for d in table_definitions(prefix) if d["TableName"] == prefix + "transfers"]
    dynamodb_client.create_table(**{key: value for key, value in definition.items() if key != "StreamSpecification"})
    try:
        assert "LatestStreamArn" not in dynamodb_client.describe_table(TableName=prefix + "transfers")["Table"]
        # Only tables whose model asks for a stream are looked at (the other tables of this prefix do not exist).
        assert enable_streams(dynamodb_client, prefix) == [prefix + "transfers"]
        table = dynamodb_client.describe_table(TableName=prefix + "transfers")["Table"]
        assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        assert enable_streams(dynamodb_client, prefix) == []  # idempotent
    finally:
        dynamodb_client.delete_table(TableName=prefix + "transfers")

