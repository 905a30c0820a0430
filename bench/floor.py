"""The floor of an operation: its own TransactWriteItems, replayed bare, in one round trip.

Nothing here is written by hand from the data model. While an operation warms up, `bench.meter` keeps
the API parameters of the `TransactWriteItems` PynamoDB sends for it, and `FloorReplayer.capture` reads,
in that instant, the current item behind every Update, ConditionCheck and Delete of the request (the
state its conditions were checked against). A floor request is the captured request with fresh keys:

* each item's partition-key value is replaced by a fresh random value of the same byte length (same
  item sizes, so the same capacity), the sort key is kept;
* for an Update/ConditionCheck/Delete whose item existed, a copy of that item is stored under the fresh
  key before the measurement (not timed), so the same condition expression holds (`version = :v AND
  balance >= :amount`, `value >= :bound`, `status = :active AND mykey_id = :m`); where the item did not
  exist (`attribute_not_exists`), none is stored;
* a Put keeps its condition (`attribute_not_exists`), which holds on the fresh key.

So whatever the operation's transaction becomes (another ConditionCheck, a counter), its floor follows.
"""
from __future__ import annotations

import copy
import secrets
import string
import uuid
from dataclasses import dataclass

_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class Template:
    request: dict  # TransactWriteItems API parameters as the app sent them
    pre_images: list[dict | None]  # per transact item: the stored item its condition was checked against


def _fresh_like(value: dict) -> dict:
    (kind, content), = value.items()
    if kind == "S":
        size = len(content.encode("utf-8"))
        return {"S": "".join(secrets.choice(_ALPHABET) for _ in range(size))}
    if kind == "N":
        digits = max(1, len(content.lstrip("-")))
        return {"N": str(10 ** (digits - 1) + secrets.randbelow(9 * 10 ** (digits - 1)))}
    if kind == "B":
        return {"B": secrets.token_bytes(len(content))}
    raise ValueError(f"cannot make a fresh key of type {kind}")


class FloorReplayer:
    def __init__(self, plain_client):
        """`plain_client`: a boto3 DynamoDB client that is not metered (reads pre-images, stores copies)."""
        self._client = plain_client
        self._hash_keys: dict[str, str] = {}
        self.last: Template | None = None

    def hash_key(self, table: str) -> str:
        if table not in self._hash_keys:
            schema = self._client.describe_table(TableName=table)["Table"]["KeySchema"]
            self._hash_keys[table] = next(key["AttributeName"] for key in schema if key["KeyType"] == "HASH")
        return self._hash_keys[table]

    # -- capture (called by the meter from inside the operation's TransactWriteItems call) -----------

    def capture(self, request: dict) -> None:
        pre_images: list[dict | None] = []
        for transact_item in request["TransactItems"]:
            (action, body), = transact_item.items()
            if action == "Put":
                pre_images.append(None)
                continue
            found = self._client.get_item(TableName=body["TableName"], Key=body["Key"], ConsistentRead=True)
            pre_images.append(found.get("Item"))
        self.last = Template(copy.deepcopy(request), pre_images)

    # -- replay --------------------------------------------------------------------------------------

    def prepare(self, template: Template, count: int) -> list[dict]:
        """`count` floor requests on fresh keys, with the items their conditions need already stored."""
        requests, to_store = [], []
        for _ in range(count):
            request = copy.deepcopy(template.request)
            if "ClientRequestToken" in request:
                request["ClientRequestToken"] = str(uuid.uuid4())
            for transact_item, pre_image in zip(request["TransactItems"], template.pre_images):
                (action, body), = transact_item.items()
                table = body["TableName"]
                key_name = self.hash_key(table)
                if action == "Put":
                    body["Item"][key_name] = _fresh_like(body["Item"][key_name])
                    continue
                fresh = _fresh_like(body["Key"][key_name])
                body["Key"][key_name] = fresh
                if pre_image is not None:
                    to_store.append((table, {**copy.deepcopy(pre_image), key_name: fresh}))
            requests.append(request)
        self._store(to_store)
        return requests

    def _store(self, items: list[tuple[str, dict]]) -> None:
        for start in range(0, len(items), 25):
            pending: dict[str, list] = {}
            for table, item in items[start:start + 25]:
                pending.setdefault(table, []).append({"PutRequest": {"Item": item}})
            while pending:
                answer = self._client.batch_write_item(RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}


def transact_items_summary(request: dict) -> list[str]:
    """`Put transfers`, `Update wallets`, … : what a captured transaction writes, for the report."""
    summary = []
    for transact_item in request["TransactItems"]:
        (action, body), = transact_item.items()
        table = body["TableName"]
        summary.append(f"{action} {table.split('-', 1)[-1] if '-' in table else table}")
    return summary
