"""Section 1 and 2: each operation in-process against DynamoDB Local, next to its floor, with its capacity.

For every operation the same loop runs: warm-up iterations (their TransactWriteItems is captured for the
floor, see `bench.floor`), then N measured iterations, each followed (or, every other time, preceded) by
one floor request, so drift on this shared 2-core machine hits both alike. One client, sequential.

The store, identity store and card authority are the ones `chalicelib.api.dependencies` builds from the
environment, as a Lambda container builds them (container caches included). Residents are made and
funded through a different store instance, so for the store being measured a resident is one it has
never served ("cold resident": the common case when many containers share the traffic), except in the
`payment_repeat` variant, whose residents the same container served a moment before.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from bench.floor import FloorReplayer, transact_items_summary
from bench.meter import item_size
from bench.stats import rounded, summary

PAYMENT_AMOUNT = 100  # under the PIN-free limit: the common tap
FUNDING = 10_000


@dataclass
class OperationSpec:
    name: str
    description: str
    prepare: Callable[[int], Callable[[], object]]  # untimed: builds iteration i, returns the timed call
    warmup: int
    iterations: int


_STARTED = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - _STARTED
    print(f"[bench] {int(elapsed // 60):02d}:{int(elapsed % 60):02d} {message}", file=sys.stderr, flush=True)


def measure_projection(meter, stream, batch_size: int = 1) -> dict:
    """What listing a transfer costs after its transaction: the stream consumer's writes per transfer, measured
    by delivering what the stream holds through the real handler. `batch_size` is the records per invocation
    the cost model assumes: 1, the worst case (a quiet stream hands Lambda one record at a time)."""
    stream.deliver_pending()  # whatever was posted before starts the count from here
    return {"batch_size": batch_size, "stream": stream}


def finish_projection(meter, started: dict) -> dict:
    stream = started["stream"]
    meter.begin()
    began = time.perf_counter()
    delivered = stream.deliver_pending()
    elapsed_ms = (time.perf_counter() - began) * 1000
    record = meter.end()
    if not delivered:
        return {"transfers": 0}
    return {
        "transfers": delivered, "batch_size": started["batch_size"],
        "wcu_per_transfer": rounded(record.write_units / delivered, 3),
        "ms_per_transfer": rounded(elapsed_ms / delivered, 3),
        "round_trips_per_transfer": rounded(record.round_trips / delivered, 3),
        "what": "BatchWriteItem of the transfer's entries in transfer_index (municipality list, resident list), "
                "through project_transfers, from DynamoDB Local's stream",
    }


def run_operation(spec: OperationSpec, meter, replayer: FloorReplayer, floor_client) -> dict:
    replayer.last = None
    meter.capture_hook = replayer.capture
    meter.capturing = True
    try:
        for index in range(spec.warmup):
            spec.prepare(index)()
    finally:
        meter.capturing = False
        meter.capture_hook = None
    template = replayer.last
    floor_requests = replayer.prepare(template, spec.iterations) if template else []

    op_ms, floor_ms, records, floor_records = [], [], [], []

    def timed_operation(index: int) -> None:
        call = spec.prepare(spec.warmup + index)
        meter.begin()
        started = time.perf_counter()
        call()
        op_ms.append((time.perf_counter() - started) * 1000)
        records.append(meter.end())

    def timed_floor(index: int) -> None:
        meter.begin()
        started = time.perf_counter()
        floor_client.transact_write_items(**floor_requests[index])
        floor_ms.append((time.perf_counter() - started) * 1000)
        floor_records.append(meter.end())

    for index in range(spec.iterations):
        if not floor_requests:
            timed_operation(index)
        elif index % 2 == 0:
            timed_operation(index)
            timed_floor(index)
        else:
            timed_floor(index)
            timed_operation(index)

    result = {"description": spec.description, "iterations": spec.iterations, "warmup": spec.warmup}
    op = summary(op_ms)
    result.update(p50_ms=op["p50_ms"], p95_ms=op["p95_ms"], p99_ms=op["p99_ms"], mean_ms=op["mean_ms"],
                  max_ms=op["max_ms"], ops_per_s=rounded(len(op_ms) / (sum(op_ms) / 1000), 1))
    dynamodb_ms = [record.dynamodb_ms for record in records]
    other_ms = [total - inside for total, inside in zip(op_ms, dynamodb_ms)]
    result["dynamodb_p50_ms"] = rounded(statistics.median(dynamodb_ms))
    result["outside_dynamodb_p50_ms"] = rounded(statistics.median(other_ms))
    result["round_trips"] = rounded(statistics.fmean(record.round_trips for record in records), 2)
    result["reads"] = rounded(statistics.fmean(
        sum(1 for call in record.calls if call.operation in ("GetItem", "BatchGetItem", "Query", "Scan")) for record in records), 2)
    result["rcu"] = rounded(statistics.fmean(record.read_units for record in records), 2)
    result["wcu"] = rounded(statistics.fmean(record.write_units for record in records), 2)
    result["wcu_indexes"] = rounded(statistics.fmean(
        sum(call.index_units for call in record.calls if call.write_units) for record in records), 2)
    result["rcu_min"] = rounded(statistics.fmean(record.minimum_read_units() for record in records), 2)
    result["calls"] = _call_pattern(records)
    if floor_requests:
        floor = summary(floor_ms)
        result.update(
            floor_p50_ms=floor["p50_ms"], floor_p99_ms=floor["p99_ms"],
            floor_ops_per_s=rounded(len(floor_ms) / (sum(floor_ms) / 1000), 1),
            ratio_p50=rounded(op["p50_ms"] / floor["p50_ms"], 2),
            wcu_floor=rounded(statistics.fmean(record.write_units for record in floor_records), 2),
            wcu_floor_indexes=rounded(statistics.fmean(record.index_units for record in floor_records), 2),
            floor_round_trips=rounded(statistics.fmean(record.round_trips for record in floor_records), 2),
            floor_items=transact_items_summary(template.request),
        )
        puts = [body["Item"] for item in template.request["TransactItems"] for action, body in item.items() if action == "Put"
                and body["TableName"].endswith("transfers")]
        if puts:
            result["transfer_item_bytes"] = item_size(puts[0])
        if any(record.round_trips != 1 for record in floor_records):
            raise AssertionError(f"{spec.name}: a floor request took more than one round trip")
    log(f"{spec.name}: p50 {result['p50_ms']} ms, floor {result.get('floor_p50_ms')} ms, "
        f"ratio {result.get('ratio_p50')}, {result['round_trips']} round trips, "
        f"{result['rcu']} RCU, {result['wcu']} WCU (floor {result.get('wcu_floor')})")
    return result


def _call_pattern(records) -> list[dict]:
    """The most common sequence of DynamoDB calls of one iteration, with each call's mean capacity."""
    patterns: dict[tuple, list] = {}
    for record in records:
        key = tuple((call.operation, ",".join(table.split("-", 1)[-1] for table in call.tables)) for call in record.calls)
        patterns.setdefault(key, []).append(record)
    key, group = max(patterns.items(), key=lambda entry: len(entry[1]))
    result = []
    for position, (operation, tables) in enumerate(key):
        calls = [record.calls[position] for record in group]
        result.append({
            "operation": operation, "tables": tables,
            "consistent": calls[0].consistent,
            "rcu": rounded(statistics.fmean(call.read_units for call in calls), 2),
            "wcu": rounded(statistics.fmean(call.write_units for call in calls), 2),
            "p50_ms": rounded(statistics.median(call.milliseconds for call in calls)),
        })
    return result + [{"share_of_iterations": rounded(len(group) / len(records), 3)}]


# -- the operations -------------------------------------------------------------------------------------


class Workbench:
    """The world and the residents the operations work on."""

    def __init__(self, stack, iterations: int, warmup: int):
        from chalicelib.api import dependencies
        from chalicelib.storage.dynamo import DynamoLedgerStore
        from chalicelib.storage.staff import DynamoStaffStore
        from tests.world import build_world

        from bench.residents import CardFactory

        self.stack = stack
        self.iterations = iterations
        self.warmup = warmup
        self.store = dependencies.get_ledger_store()  # what is measured: built as in a Lambda container
        self.identity_store = dependencies.get_identity_store()
        self.authority = dependencies.get_card_authority()
        self.seeder = DynamoLedgerStore(stack_region())  # another "container", for setting up
        self.world = build_world(self.seeder, seed=int(time.time()), budget_shards=8, staff_store=DynamoStaffStore())
        self.world.now = time.time()
        self.cards = CardFactory()
        self.shop_terminal = self.seeder.get_terminal(self.world.shop.terminal_id)

    def card_residents(self, count: int, funded: bool = True) -> list[str]:
        from bench.residents import add_card_residents, fund

        mykeys = add_card_residents(self.world, count, self.cards)
        if funded:
            fund(self.seeder, self.world.home_code, mykeys, FUNDING)
        return mykeys

    def plain_residents(self, count: int) -> list[str]:
        from bench.residents import new_mykey_ids, register_mykeys

        mykeys = new_mykey_ids(count)
        register_mykeys(mykeys, self.world.home_code)
        return mykeys

    def seeder_payments(self, mykeys: list[str], amount: int) -> list[str]:
        from chalicelib.services import ledger

        transfer_ids = []
        for mykey in mykeys:
            command = self.world.payment_command(mykey, amount)
            transfer_ids.append(ledger.pay(command, self.seeder, self.world.authority, time.time).transfer_id)
        return transfer_ids


def stack_region() -> str:
    from bench.stack import REGION

    return REGION


def service_operations(bench: Workbench) -> list[OperationSpec]:
    from chalicelib.services import conversions, ledger, ports

    world, store, count = bench.world, bench.store, bench.iterations + bench.warmup
    log("operations: making and funding residents")
    pay_residents = bench.card_residents(count)
    repeat_residents = bench.card_residents(50)
    refund_residents = bench.card_residents(count)
    refund_payments = bench.seeder_payments(refund_residents, 500)
    grant_residents = bench.plain_residents(count)
    conversion_residents = bench.plain_residents(count)
    partner = register_partner(bench)

    def payment(index: int):
        command = world.payment_command(pay_residents[index], PAYMENT_AMOUNT)
        return lambda: _expect_kind(ledger.pay(command, store, bench.authority, time.time), ports.PAYMENT)

    # Warm-up pays twice per resident: the first round makes the container remember them, and the floor is
    # captured from the last warm-up payment, a repeat like the measured ones (its transaction re-checks the
    # remembered card, so the floor writes the same three items).
    def payment_repeat(index: int):
        command = world.payment_command(repeat_residents[index % len(repeat_residents)], PAYMENT_AMOUNT)
        return lambda: _expect_kind(ledger.pay(command, store, bench.authority, time.time), ports.PAYMENT)

    def grant(index: int):
        command = ledger.GrantCommand(
            grant_id=str(uuid.uuid4()), municipality_code=world.home_code, mykey_id=grant_residents[index], amount=1000,
            reason="健康診断の受診", expires_on=None, staff_id="bench-staff", request_fingerprint=f"bench-{uuid.uuid4()}")
        return lambda: _expect_kind(ledger.grant(command, store, time.time), ports.GRANT)

    def refund(index: int):
        refund_id = str(uuid.uuid4())
        command = ledger.RefundCommand(payment_transfer_id=refund_payments[index], refund_id=refund_id, amount=100,
                                       terminal=bench.shop_terminal, request_fingerprint=f"bench-{refund_id}")
        return lambda: _expect_kind(ledger.refund(command, store, time.time), ports.REFUND)

    def conversion(index: int):
        body, signature = partner.message(conversion_residents[index], world.home_code)

        def call():
            result, _queue = conversions.process_message(store, bench.identity_store, body, signature, time.time,
                                                       lambda: b"bench-hash-secret")
            if result["status"] != "credited":
                raise AssertionError(f"conversion not credited: {result}")
        return call

    warmup, iterations = bench.warmup, bench.iterations
    return [
        OperationSpec("payment", "ledger.pay, PIN-free tap of 100 pt by a resident this container has not served yet "
                      "(programme, merchant and terminal settings warm)", payment, warmup, iterations),
        OperationSpec("payment_repeat", "ledger.pay by residents the same container served a moment before "
                      "(card binding and wallet state remembered)", payment_repeat, 2 * len(repeat_residents), iterations),
        OperationSpec("grant", "ledger.grant of 1,000 pt to a resident with no wallet yet", grant, warmup, iterations),
        OperationSpec("refund", "ledger.refund of 100 pt of a 500 pt payment made through another container",
                      refund, warmup, iterations),
        OperationSpec("conversion", "conversions.process_message: a signed partner message, credited to a "
                      "municipality wallet (transfer, wallet and the resident's daily and monthly caps)",
                      conversion, warmup, iterations),
    ]


def http_operations(bench: Workbench, client) -> list[OperationSpec]:
    """The same operations as whole Lambda requests through Chalice's local gateway (in-process):
    terminal signature check and nonce, or staff session, JSON in and out, the log line and metrics."""
    from terminal_client.signing import request_headers
    from tests.world import STAFF_PASSWORD

    world, count = bench.world, bench.iterations + bench.warmup
    log("HTTP operations: making and funding residents")
    pay_residents = bench.card_residents(count)
    refund_residents = bench.card_residents(count)
    refund_payments = bench.seeder_payments(refund_residents, 500)
    grant_residents = bench.plain_residents(count)
    keys = world.shop
    operator = f"operator-{world.home_code}-{world.staff_suffix}"
    signed_in = client.http.post("/v1/staff/sessions", headers={"Content-Type": "application/json"},
                                 body=json.dumps({"staff_id": operator, "password": STAFF_PASSWORD}).encode())
    if signed_in.status_code != 201:
        raise AssertionError(f"staff sign-in failed: {signed_in.body!r}")
    token = signed_in.json_body["token"]

    def terminal_call(method: str, path: str, body: dict, expected: int):
        raw = json.dumps(body).encode()
        headers = request_headers(keys.private_key, keys.terminal_id, method, path, raw)

        def call():
            response = client.http.request(method, path, headers=headers, body=raw)
            if response.status_code != expected:
                raise AssertionError(f"{method} {path}: {response.status_code} {response.body[:300]!r}")
        return call

    def payment(index: int):
        card = world.cards[pay_residents[index]]
        return terminal_call("POST", "/v1/payments", {
            "transfer_id": str(uuid.uuid4()), "municipality_code": world.home_code, "amount": PAYMENT_AMOUNT,
            "card": {"certificate": base64.b64encode(card.certificate_der).decode()}}, 201)

    def refund(index: int):
        return terminal_call("POST", f"/v1/payments/{refund_payments[index]}/refunds",
                             {"refund_id": str(uuid.uuid4()), "amount": 100}, 201)

    def grant(index: int):
        raw = json.dumps({"grant_id": str(uuid.uuid4()), "mykey_id": grant_residents[index], "amount": 1000,
                          "reason": "健康診断の受診"}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def call():
            response = client.http.post(f"/v1/municipalities/{world.home_code}/grants", headers=headers, body=raw)
            if response.status_code != 201:
                raise AssertionError(f"grant: {response.status_code} {response.body[:300]!r}")
        return call

    warmup, iterations = bench.warmup, bench.iterations
    return [
        OperationSpec("payment_http", "POST /v1/payments, whole request in-process (terminal signature, nonce, "
                      "ledger.pay), resident not served by this container before", payment, warmup, iterations),
        OperationSpec("refund_http", "POST /v1/payments/{id}/refunds, whole request in-process", refund, warmup, iterations),
        OperationSpec("grant_http", "POST /v1/municipalities/{code}/grants by an operator's session, whole request "
                      "in-process", grant, warmup, iterations),
    ]


class BenchPartner:
    def __init__(self, partner_id: str, private_key):
        self.partner_id = partner_id
        self._key = private_key

    def message(self, mykey_id: str, municipality_code: str | None, partner_points: int = 1000) -> tuple[str, str]:
        body = json.dumps({
            "version": 1, "partner_id": self.partner_id, "partner_txn_id": uuid.uuid4().hex, "mykey_id": mykey_id,
            "municipality_code": municipality_code, "partner_points": partner_points, "campaign_code": None,
            "occurred_at": dt.datetime.now(dt.timezone(dt.timedelta(hours=9))).isoformat(),
        }, ensure_ascii=False)
        return body, base64.b64encode(self._key.sign(body.encode())).decode()


def register_partner(bench, result_queue: str = "bench-partner-results") -> BenchPartner:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from chalicelib.services import conversions

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    partner_id = f"bench{uuid.uuid4().hex[:8]}"
    bench.seeder.put_partner({
        "partner_id": partner_id, "name": "ベンチ航空", "public_key": base64.b64encode(public).decode(),
        "result_queue": result_queue, "active": True,
        "agreement": conversions.validate_agreement({
            "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
            "daily_cap_per_resident": 100_000, "monthly_cap_per_resident": 1_000_000, "campaigns": [],
        }),
    })
    return BenchPartner(partner_id, key)


def _expect_kind(transfer, kind: str):
    if transfer.kind != kind:
        raise AssertionError(f"expected a {kind}, got {transfer.kind}")
    return transfer
