"""Records which DynamoDB tables, indexes and IAM actions each Lambda function's code really uses.

`DynamoCallRecorder` wraps botocore's `BaseClient._make_api_call`, the one method through which every
botocore client sends a request: PynamoDB's connections and boto3's clients alike, whichever session they
were made from (an event hook on one session would miss the clients the stores and fixtures built before
the recording started). A call is recorded only while a function is marked as running (`running(name)`),
so what a test does to set up its data is left out.

Each call is reduced to what IAM authorises: a transaction to the item action of each of its parts
(`TransactWriteItems` needs `PutItem`, `UpdateItem`, `DeleteItem`, `ConditionCheckItem` on each table it
touches, `TransactGetItems` needs `GetItem`), a batch to its action on each of its tables. Any other
operation (`DescribeTable`, `CreateTable`...) is recorded under its own name, which no function is granted.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

_TRANSACT_PARTS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


@dataclass(frozen=True, order=True)
class Call:
    function: str
    table: str  # the table's base name (the models' `Meta.base_name`) when it has the tests' prefix
    action: str  # the IAM action, without `dynamodb:`
    index: str | None = None


def calls_of(function: str, operation: str, params: dict, table_prefix: str) -> list[Call]:
    """The IAM-level calls one DynamoDB API request stands for."""

    def base(table_name: str) -> str:
        return table_name[len(table_prefix):] if table_name.startswith(table_prefix) else table_name

    if operation in ("TransactWriteItems", "TransactGetItems"):
        calls = []
        for item in params.get("TransactItems", []):
            for part, request in item.items():
                calls.append(Call(function, base(request["TableName"]), _TRANSACT_PARTS.get(part, part)))
        return calls
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [Call(function, base(name), operation) for name in params.get("RequestItems", {})]
    return [Call(function, base(params.get("TableName", "?")), operation, params.get("IndexName"))]


class DynamoCallRecorder:
    def __init__(self, table_prefix: str):
        self.table_prefix = table_prefix
        self.calls: set[Call] = set()
        # A plain attribute, not a context variable: a call made from another thread is still attributed.
        self._running: str | None = None

    @contextlib.contextmanager
    def running(self, function: str | None):
        """Attribute the DynamoDB calls made inside to `function` (None: to no function, e.g. a test harness)."""
        previous, self._running = self._running, function
        try:
            yield
        finally:
            self._running = previous

    def record(self, operation: str, params: dict) -> None:
        function = self._running
        if function is not None:
            self.calls.update(calls_of(function, operation, params, self.table_prefix))

    @contextlib.contextmanager
    def installed(self):
        """Wrap botocore's single entry point for every client call, for the duration of the block."""
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        recorder = self

        def recording(client, operation_name, api_params):
            if client.meta.service_model.service_name == "dynamodb":
                recorder.record(operation_name, api_params)
            return original(client, operation_name, api_params)

        BaseClient._make_api_call = recording
        try:
            yield self
        finally:
            BaseClient._make_api_call = original

    def of(self, function: str) -> set[Call]:
        return {call for call in self.calls if call.function == function}
