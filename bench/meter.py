"""What every DynamoDB call of the app costs, measured on the wire: round trips, time, consumed capacity.

`Meter.install()` hooks the botocore client of every PynamoDB connection (the app's own store code is not
touched) and `Meter.attach(client)` hooks a plain boto3 client (the floor's). On each DynamoDB call:

* `before-parameter-build`: asks for `ReturnConsumedCapacity='INDEXES'` (the total, split into table and
  global secondary indexes) when the operation accepts it, notes the start time, and, while capturing is
  on, keeps a deep copy of the API parameters of each `TransactWriteItems` (see `bench.floor`);
* `after-call`: counts the HTTP round trips (botocore's attempt number: a retry is a second one), adds the response's `ConsumedCapacity` (one dict, or a list for batch and transactional
  calls), the call's duration, and the size of every item a read returned.

Records are per thread: `begin()` … `end()` around one operation gives what that operation did; the
running totals (`totals()`) are for many threads at once (contention, bulk grants, the queue drain).
"""
from __future__ import annotations

import copy
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

READ_OPERATIONS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def attribute_size(value: dict) -> int:
    """Bytes DynamoDB counts for one typed attribute value (the developer guide's item-size rules)."""
    (kind, content), = value.items()
    if kind == "S":
        return len(content.encode("utf-8"))
    if kind == "N":
        digits = content.lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(item.encode("utf-8")) for item in content)
    if kind == "NS":
        return sum(attribute_size({"N": item}) for item in content)
    if kind == "BS":
        return sum(len(item) for item in content)
    if kind == "L":
        return 3 + sum(1 + attribute_size(item) for item in content)
    if kind == "M":
        return 3 + sum(1 + len(name.encode("utf-8")) + attribute_size(item) for name, item in content.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: dict) -> int:
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def eventually_consistent_rcu(size_bytes: int) -> float:
    """The least a read of an item of this size can cost: half a unit per started 4 KB."""
    return 0.5 * max(1, math.ceil(size_bytes / 4096))


@dataclass
class Call:
    operation: str
    tables: list[str]
    milliseconds: float
    read_units: float
    write_units: float
    index_units: float  # part of read/write units that went to global secondary indexes
    round_trips: int
    consistent: bool | None = None
    items_read: list[tuple[str, int]] = field(default_factory=list)  # (table, item size in bytes)
    failed: str | None = None


@dataclass
class Record:
    calls: list[Call] = field(default_factory=list)

    @property
    def read_units(self) -> float:
        return sum(call.read_units for call in self.calls)

    @property
    def write_units(self) -> float:
        return sum(call.write_units for call in self.calls)

    @property
    def index_units(self) -> float:
        return sum(call.index_units for call in self.calls)

    @property
    def round_trips(self) -> int:
        return sum(call.round_trips for call in self.calls)

    @property
    def dynamodb_ms(self) -> float:
        return sum(call.milliseconds for call in self.calls)

    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    def minimum_read_units(self) -> float:
        """Eventually consistent reads of the same items, each item once."""
        total = 0.0
        for call in self.calls:
            for table, size in call.items_read:
                total += eventually_consistent_rcu(size)
            if call.operation in READ_OPERATIONS and not call.items_read:
                total += 0.5  # a read that found nothing still costs its half unit
        return total


def _units(consumed) -> tuple[float, float]:
    """(total units, units spent on global secondary indexes) of one ConsumedCapacity entry or list."""
    if not consumed:
        return 0.0, 0.0
    entries = consumed if isinstance(consumed, list) else [consumed]
    total = index = 0.0
    for entry in entries:
        total += float(entry.get("CapacityUnits", 0.0))
        for per_index in (entry.get("GlobalSecondaryIndexes") or {}).values():
            index += float(per_index.get("CapacityUnits", 0.0))
        for per_index in (entry.get("LocalSecondaryIndexes") or {}).values():
            index += float(per_index.get("CapacityUnits", 0.0))
    return total, index


def _tables(operation: str, params: dict) -> list[str]:
    if "TableName" in params:
        return [params["TableName"]]
    if "RequestItems" in params:
        return sorted(params["RequestItems"])
    if "TransactItems" in params:
        return [next(iter(item.values()))["TableName"] for item in params["TransactItems"]]
    return []


class _MeteredProperty(property):
    """`Connection.client`, hooking each botocore client on its way out (a property subclass can carry
    the meter and the original property, for `uninstall`)."""

    _bench_meter = None
    _bench_original = None


class Meter:
    def __init__(self):
        self._local = threading.local()
        self._lock = threading.Lock()
        self._hooked: set[int] = set()
        self._totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0, 0.0])
        self.capturing = False
        self.captured: list[dict] = []  # TransactWriteItems API parameters, while capturing
        self.capture_hook = None  # called with each captured request (bench.floor takes its pre-images)

    # -- hooking -------------------------------------------------------------------------------------

    def install(self) -> "Meter":
        """Hook every botocore client PynamoDB creates from now on (and any it already has, on next use)."""
        from pynamodb.connection.base import Connection

        meter = self
        original = Connection.__dict__["client"]
        if getattr(original, "_bench_meter", None) is not None:
            raise RuntimeError("a meter is already installed")

        def client(connection):
            botocore_client = original.fget(connection)
            meter.attach(botocore_client)
            return botocore_client

        patched = _MeteredProperty(client)
        patched._bench_meter = self
        patched._bench_original = original
        Connection.client = patched
        return self

    @staticmethod
    def uninstall() -> None:
        from pynamodb.connection.base import Connection

        current = Connection.__dict__["client"]
        original = getattr(current, "_bench_original", None)
        if original is not None:
            Connection.client = original

    def attach(self, client) -> None:
        key = id(client)
        if key in self._hooked:
            return
        with self._lock:
            if key in self._hooked:
                return
            self._hooked.add(key)
            events = client.meta.events
            events.register("before-parameter-build.dynamodb.*", self._before_parameter_build)
            events.register("after-call.dynamodb.*", self._after_call)

    # -- per-thread records --------------------------------------------------------------------------

    def begin(self) -> None:
        self._local.record = Record()

    def end(self) -> Record:
        record = getattr(self._local, "record", None) or Record()
        self._local.record = None
        return record

    def totals(self) -> dict[str, dict]:
        with self._lock:
            return {operation: {"calls": int(values[0]), "read_units": values[1], "write_units": values[2],
                                "index_units": values[3], "round_trips": int(values[4]), "milliseconds": values[5]}
                    for operation, values in self._totals.items()}

    @staticmethod
    def difference(after: dict, before: dict) -> dict:
        result = {}
        for operation, values in after.items():
            earlier = before.get(operation, {})
            delta = {name: values[name] - earlier.get(name, 0) for name in values}
            if delta["calls"]:
                result[operation] = delta
        return result

    # -- event handlers ------------------------------------------------------------------------------

    def _before_parameter_build(self, params, model, context, **_):
        if "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        context["bench_started"] = time.perf_counter()
        context["bench_tables"] = _tables(model.name, params)
        context["bench_consistent"] = params.get("ConsistentRead")
        if model.name == "TransactWriteItems" and self.capturing:
            request = copy.deepcopy(params)
            self.captured.append(request)
            if self.capture_hook is not None:
                self.capture_hook(request)

    def _after_call(self, http_response, parsed, model, context, **_):
        started = context.get("bench_started")
        if started is None:
            return
        milliseconds = (time.perf_counter() - started) * 1000
        total, index = _units(parsed.get("ConsumedCapacity"))
        operation = model.name
        is_read = operation in READ_OPERATIONS
        items_read: list[tuple[str, int]] = []
        tables = context.get("bench_tables", [])
        if operation == "GetItem" and "Item" in parsed:
            items_read.append((tables[0] if tables else "", item_size(parsed["Item"])))
        elif operation == "BatchGetItem":
            for table, items in (parsed.get("Responses") or {}).items():
                items_read.extend((table, item_size(item)) for item in items)
        elif operation in ("Query", "Scan"):
            items_read.extend((tables[0] if tables else "", item_size(item)) for item in parsed.get("Items") or [])
        failed = None
        if http_response is not None and http_response.status_code >= 300:
            failed = (parsed.get("Error") or {}).get("Code", str(http_response.status_code))
        call = Call(
            operation=operation, tables=tables, milliseconds=milliseconds,
            read_units=total if is_read else 0.0, write_units=0.0 if is_read else total, index_units=index,
            round_trips=int((context.get("retries") or {}).get("attempt", 1)), consistent=context.get("bench_consistent"),
            items_read=items_read, failed=failed,
        )
        record = getattr(self._local, "record", None)
        if record is not None:
            record.calls.append(call)
        with self._lock:
            values = self._totals[operation]
            values[0] += 1
            values[1] += call.read_units
            values[2] += call.write_units
            values[3] += index
            values[4] += call.round_trips
            values[5] += milliseconds
