"""The transfer lists, fed from the transfers table's stream.

Reports list a municipality's transfers and residents list their own; both read `transfer_index`
(`TransferIndexModel`), never a secondary index of the transfers table. An index there would be written
inside every movement's `TransactWriteItems`, where each index write costs two write units (DynamoDB
Local reports 2 per index per transfer); a payment's transaction would cost 8 units instead of 4. Here
the two list entries of a transfer are written after its transaction commits, by `project_transfers`
(chalicelib/api/projection_handlers.py) from the table's stream, one unit each.

`index_items(new_image)` says which entries a transfer image makes; `project_record(record)` writes
them for one stream record and raises on failure, so that the batch handler reports that record and
Lambda delivers it again. Entries are copies of an immutable record under a key derived from it: a
redelivered record writes the same items again, which is harmless.
"""
from __future__ import annotations

import time

from chalicelib.storage.models import TransferIndexModel

MUNICIPALITY_PREFIX = "municipality#"
MYKEY_PREFIX = "mykey#"
# Sorts after `{end}#{any transfer id}`: `posted_at <= end` is `sort_key <= end + SORT_KEY_END_SUFFIX`.
SORT_KEY_END_SUFFIX = "#~"
_UNPROCESSED_RETRIES = 8


def sort_key(posted_at: str, transfer_id: str) -> str:
    return f"{posted_at}#{transfer_id}"


def municipality_index_key(municipality_shard: str) -> str:
    return MUNICIPALITY_PREFIX + municipality_shard


def mykey_index_key(mykey_id: str) -> str:
    return MYKEY_PREFIX + mykey_id


def index_items(new_image: dict) -> list[dict]:
    """The list entries (DynamoDB attribute values) a transfer's stream image makes."""
    transfer_id = new_image["transfer_id"]["S"]
    posted_at = new_image["posted_at"]["S"]
    municipality_code = new_image["municipality_code"]["S"]
    keys = []
    if "municipality_shard" in new_image:
        keys.append(municipality_index_key(new_image["municipality_shard"]["S"]))
    if new_image.get("mykey_id", {}).get("S"):
        keys.append(mykey_index_key(new_image["mykey_id"]["S"]))
    return [
        {
            "index_key": {"S": key},
            "sort_key": {"S": sort_key(posted_at, transfer_id)},
            "municipality_code": {"S": municipality_code},
            "transfer": {"M": new_image},
        }
        for key in keys
    ]


def project_record(record: dict) -> int:
    """Write the list entries of one stream record (a Lambda DynamoDB stream record); returns how many.

    Only inserts carry a transfer: transfers are never updated, and a removal (none is made today) would
    leave its entries, which list what was posted.
    """
    if record.get("eventName") != "INSERT":
        return 0
    items = index_items(record["dynamodb"]["NewImage"])
    _batch_put(items)
    return len(items)


def _batch_put(items: list[dict]) -> None:
    connection = TransferIndexModel._get_connection().connection
    table_name = TransferIndexModel.Meta.table_name
    pending = items
    for attempt in range(_UNPROCESSED_RETRIES):
        response = connection.dispatch(
            "BatchWriteItem", {"RequestItems": {table_name: [{"PutRequest": {"Item": item}} for item in pending]}}
        )
        unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
        if not unprocessed:
            return
        pending = [request["PutRequest"]["Item"] for request in unprocessed]
        # DynamoDB left some items for later (throttling): back off before the rest.
        time.sleep(0.05 * 2 ** attempt)
    raise RuntimeError(f"{len(pending)} transfer list entries still unprocessed after {_UNPROCESSED_RETRIES} attempts")



def backfill() -> int:
    """Write the list entries of every transfer already in the table (idempotent); returns how many.

    For a table whose transfers were posted before its stream existed: a kept local database, or the
    one-off migration in docs/DEPLOYMENT.md. Reads the table with a scan, page by page.
    """
    from chalicelib.storage.models import TransferModel

    connection = TransferModel._get_connection().connection
    written, start_key = 0, None
    while True:
        arguments = {"TableName": TransferModel.Meta.table_name, "ConsistentRead": True}
        if start_key:
            arguments["ExclusiveStartKey"] = start_key
        page = connection.dispatch("Scan", arguments)
        items = [entry for image in page.get("Items", []) for entry in index_items(image)]
        for offset in range(0, len(items), 25):  # BatchWriteItem takes 25 requests at most
            _batch_put(items[offset:offset + 25])
        written += len(items)
        start_key = page.get("LastEvaluatedKey")
        if not start_key:
            return written


def main(argv: list[str] | None = None) -> int:
    """`python -m chalicelib.storage.projection --backfill`: list every transfer of this stage again (the
    stage's table prefix and endpoint from the environment, as the Lambda functions read them)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--backfill", action="store_true", required=True)
    parser.parse_args(argv)
    from chalicelib.api import dependencies

    dependencies.get_ledger_store()  # binds the models to the stage's tables
    print(f"{backfill()} list entries written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
