"""Section 5: bulk grants of 10,000 and 100,000 residents, and the partner conversion queue's drain rate.

Bulk grant, through the real bulk path: a generated CSV (申請番号,マイキーID,ポイント,付与理由,有効期限) goes
to `grant_requests.upload` (parse, check every row, store the chunks, queue one message per chunk) with
the municipality's approval threshold raised so the upload is not parked for a second person; then
`grant_requests.post_chunk` posts each chunk, on a few worker threads as parallel Lambda invocations
would (each worker its own container store). The service is called directly: the HTTP route limits a
file to 4 MiB (100,000 rows are more), which splits a file into uploads but changes nothing per row.
The residents' MyKey IDs are registered beforehand with batch writes (not timed).

Queue drain: signed partner messages are sent to the conversion queue on moto's SQS server, then
`tools.localcloud.sqs_poller.SqsPoller` delivers them to the app's own SQS handler (Powertools batch
processing, one result message to the partner per record, deletes) until the queue is empty: one
consumer, as one Lambda concurrency.
"""
from __future__ import annotations

import json
import queue
import threading
import time

from bench.operations import log, register_partner
from bench.stats import rounded

GRANT_POINTS = 500


class MemoryChunkQueue:
    """The grant-batch queue's `send_chunks`, kept in memory for the worker threads."""

    def __init__(self):
        self.items: queue.Queue = queue.Queue()
        self.sent = 0

    def send_chunks(self, municipality_code: str, batch_id: str, chunk_numbers: list[int]) -> None:
        for number in chunk_numbers:
            self.items.put((municipality_code, batch_id, number))
            self.sent += 1


def _csv(mykey_ids: list[str], label: str) -> bytes:
    lines = ["申請番号,マイキーID,ポイント,付与理由,有効期限"]
    lines += [f"{label}-{index:06d},{mykey_id},{GRANT_POINTS},子育て応援給付," for index, mykey_id in enumerate(mykey_ids)]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


class BulkWorld:
    def __init__(self, bench):
        from chalicelib.services import programme
        from tests.world import build_world

        self.bench = bench
        self.world = build_world(bench.seeder, seed=int(time.time()) + 7, budget_total=2_000_000_000, budget_shards=8)
        programme.change_settings(bench.seeder, self.world.home_code, {"approval_threshold": programme.MAX_BUDGET_POINTS})
        self.code = self.world.home_code
        self.residents: dict[int, list[str]] = {}
        self.uploads = 0


def bulk_grant(bulk: BulkWorld, meter, rows: int, workers: int, budget_s: float | None = None) -> dict:
    """Upload and post `rows` grants. With `budget_s`, workers take no new chunk after that many seconds:
    the run is then reported as not completed, with the rate it kept until then."""
    from chalicelib.services import grant_requests
    from chalicelib.storage.grants import DynamoGrantStore

    from bench.contention import _container_store
    from bench.residents import new_mykey_ids, register_mykeys_parallel
    from bench.stack import REGION

    log(f"bulk grant {rows:,}: registering residents")
    mykey_ids = new_mykey_ids(rows)
    started = time.perf_counter()
    register_mykeys_parallel(mykey_ids, bulk.code)
    registration_s = time.perf_counter() - started
    bulk.residents[rows] = mykey_ids
    bulk.uploads += 1
    content = _csv(mykey_ids, f"B{bulk.uploads}x{rows}")
    chunk_queue = MemoryChunkQueue()
    upload_store = _container_store()
    grant_store = DynamoGrantStore(REGION)
    worker_stores = [_container_store() for _ in range(workers)]

    log(f"bulk grant {rows:,}: upload ({len(content) / 2**20:.1f} MiB) and {workers} workers")
    before = meter.totals()
    started = time.perf_counter()
    batch, created = grant_requests.upload(
        grant_requests.UploadCommand(bulk.code, f"bulk-{rows}.csv", content, "bench-operator"),
        upload_store, grant_store, chunk_queue, time.time)
    upload_s = time.perf_counter() - started
    if not created or batch["status"] != grant_requests.QUEUED:
        raise AssertionError(f"upload not queued: {batch['status']} {batch.get('errors', [])[:3]}")
    failures: list[BaseException] = []
    chunk_seconds: list[float] = []
    lock = threading.Lock()

    stop_at = None if budget_s is None else time.perf_counter() + budget_s

    def work(store) -> None:
        while stop_at is None or time.perf_counter() < stop_at:
            try:
                code, batch_id, number = chunk_queue.items.get_nowait()
            except queue.Empty:
                return
            chunk_started = time.perf_counter()
            try:
                grant_requests.post_chunk(store, grant_store, code, batch_id, number, time.time)
            except BaseException as error:  # noqa: BLE001 — reported below, the run must not hang
                failures.append(error)
                return
            with lock:
                chunk_seconds.append(time.perf_counter() - chunk_started)

    threads = [threading.Thread(target=work, args=(store,)) for store in worker_stores]
    posting_started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    posting_s = time.perf_counter() - posting_started
    total_s = time.perf_counter() - started
    used = meter.difference(meter.totals(), before)
    if failures:
        raise AssertionError(f"bulk grant failed: {failures[0]!r}")
    final = grant_store.get_batch(bulk.code, batch["batch_id"])
    read_units = sum(values["read_units"] for values in used.values())
    write_units = sum(values["write_units"] for values in used.values())
    completed = final["status"] == grant_requests.COMPLETED and final["posted_rows"] == rows
    posted = final["posted_rows"]
    result = {
        "rows": rows, "workers": workers, "completed": completed, "budget_s": budget_s, "chunk_rows": grant_requests.CHUNK_ROWS, "chunks": chunk_queue.sent,
        "csv_mib": rounded(len(content) / 2**20, 2),
        "registration_s": rounded(registration_s, 2),
        "upload_s": rounded(upload_s, 2), "posting_s": rounded(posting_s, 2), "total_s": rounded(total_s, 2),
        "rows_per_s": rounded(posted / total_s, 1), "posting_rows_per_s": rounded(posted / posting_s, 1),
        "chunk_p50_s": rounded(sorted(chunk_seconds)[len(chunk_seconds) // 2], 3) if chunk_seconds else None,
        "status": final["status"], "posted_rows": final["posted_rows"], "failed_rows": final["failed_rows"],
        "posted_amount": final["posted_amount"],
        "rcu_per_row": rounded(read_units / max(1, posted), 2), "wcu_per_row": rounded(write_units / max(1, posted), 2),
        "round_trips_per_row": rounded(sum(values["round_trips"] for values in used.values()) / max(1, posted), 2),
        "dynamodb_ms_per_row": rounded(sum(values["milliseconds"] for values in used.values()) / max(1, posted), 2),
        "worker_ms_per_row": rounded(sum(chunk_seconds) * 1000 / max(1, posted), 2),
    }
    if not completed:
        if budget_s is None or final["failed_rows"]:
            raise AssertionError(f"bulk grant incomplete: {final['status']}, {posted} of {rows} rows")
        result["estimated_total_s"] = rounded(upload_s + rows / (posted / posting_s), 1)
        log(f"bulk grant {rows:,}: stopped at the {budget_s:.0f} s budget after {posted:,} rows")
    log(f"bulk grant {rows:,}: {result['rows_per_s']} rows/s (upload {result['upload_s']} s, posting "
        f"{result['posting_s']} s), {result['wcu_per_row']} WCU and {result['rcu_per_row']} RCU per row")
    return result


LINEAR_TOLERANCE = 0.25  # time ratio up to 25% above the size ratio still counts as linear growth


def run_bulk(bench, meter, sizes: list[int], workers: int, largest_budget_s: float | None = None) -> tuple[dict, BulkWorld]:
    bulk = BulkWorld(bench)
    results = {}
    for size in sorted(sizes):
        budget = largest_budget_s if size == max(sizes) and len(sizes) > 1 else None
        results[str(size)] = bulk_grant(bulk, meter, size, workers, budget)
    out: dict = {"sizes": results, "workers": workers, "linear_tolerance": LINEAR_TOLERANCE,
                 "note": "The service is called directly (the HTTP route limits a file to 4 MiB); chunks are posted by "
                         f"{workers} worker threads, each with its own container store, as parallel Lambda invocations."}
    if len(sizes) >= 2:
        small, large = results[str(min(sizes))], results[str(max(sizes))]
        out["size_ratio"] = rounded(max(sizes) / min(sizes), 2)
        if large["completed"]:
            out["time_ratio"] = rounded(large["total_s"] / small["total_s"], 2)
            out["posting_time_ratio"] = rounded(large["posting_s"] / small["posting_s"], 2)
            out["linear"] = out["time_ratio"] <= out["size_ratio"] * (1 + LINEAR_TOLERANCE)
        else:
            out["time_ratio_extrapolated"] = rounded(large["estimated_total_s"] / small["total_s"], 2)
            out["linear"] = out["time_ratio_extrapolated"] <= out["size_ratio"] * (1 + LINEAR_TOLERANCE)
        out["rate_ratio_largest_to_smallest"] = rounded(large["rows_per_s"] / small["rows_per_s"], 2)
    return out, bulk


def queue_drain(bench, bulk: BulkWorld, meter, stack, messages: int) -> dict:
    import app as application

    from chalicelib.api import dependencies
    from chalicelib.api.conversion_handlers import CONVERSION_QUEUE
    from tools.localcloud.queues import create_platform_queues
    from tools.localcloud.sqs_poller import SqsPoller

    sqs = stack.sqs_client()
    queues = create_platform_queues(sqs)
    result_queue = "bench-partner-results"
    result_url = sqs.create_queue(QueueName=result_queue)["QueueUrl"]
    dependencies.override(sqs_client=sqs)
    partner = register_partner(bench, result_queue)
    residents = next(iter(bulk.residents.values()))
    log(f"queue drain: sending {messages:,} partner messages")
    for start in range(0, messages, 10):
        entries = []
        for index in range(start, min(start + 10, messages)):
            body, signature = partner.message(residents[index % len(residents)], bulk.code)
            entries.append({"Id": str(index - start), "MessageBody": body,
                            "MessageAttributes": {"signature": {"DataType": "String", "StringValue": signature}}})
        sqs.send_message_batch(QueueUrl=queues[CONVERSION_QUEUE][0], Entries=entries)

    poller = SqsPoller(application.app, sqs, queue_urls={name: urls[0] for name, urls in queues.items()}, wait_seconds=0)
    handler_seconds: list[float] = []
    for subscription in poller.subscriptions:
        if subscription.queue_name != CONVERSION_QUEUE:
            continue
        inner = subscription.handler

        def timed(event, context, inner=inner):
            started = time.perf_counter()
            try:
                return inner(event, context)
            finally:
                handler_seconds.append(time.perf_counter() - started)
        subscription.handler = timed
    sqs_time = {"SendMessage": [0, 0.0], "other": [0, 0.0]}

    def sqs_started(context, **_):
        context["bench_started"] = time.perf_counter()

    def sqs_finished(model, context, **_):
        if "bench_started" in context:
            entry = sqs_time["SendMessage" if model.name == "SendMessage" else "other"]
            entry[0] += 1
            entry[1] += (time.perf_counter() - context["bench_started"]) * 1000

    sqs.meta.events.register("before-parameter-build.sqs.*", sqs_started)
    sqs.meta.events.register("after-call.sqs.*", sqs_finished)
    # The partner reads its results as they come, on its own client, as a partner would: left to pile up,
    # moto's SQS server recounts the whole queue on every send and the drain would measure moto instead.
    results_client = stack.sqs_client()
    outcomes = {"credited": 0, "rejected": 0}
    draining = threading.Event()

    def read_results() -> None:
        idle_after_drain = 0
        while outcomes["credited"] + outcomes["rejected"] < messages and idle_after_drain < 5:
            batch = results_client.receive_message(QueueUrl=result_url, MaxNumberOfMessages=10,
                                                   WaitTimeSeconds=1).get("Messages", [])
            if not batch:
                idle_after_drain += draining.is_set()
                continue
            for message in batch:
                status = json.loads(message["Body"])["status"]
                outcomes["credited" if status == "credited" else "rejected"] += 1
            results_client.delete_message_batch(QueueUrl=result_url, Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(batch)])

    partner_reader = threading.Thread(target=read_results, daemon=True)
    partner_reader.start()
    log("queue drain: draining through the SQS poller (the partner reads its results meanwhile)")
    before = meter.totals()
    delivered, idle_polls = 0, 0
    started = time.perf_counter()
    while delivered < messages and idle_polls < 50:
        count = poller.poll_once()
        delivered += count
        idle_polls = idle_polls + 1 if count == 0 else 0
    wall = time.perf_counter() - started
    used = meter.difference(meter.totals(), before)
    draining.set()
    dependencies.reset()

    partner_reader.join(timeout=120)
    credited, rejected = outcomes["credited"], outcomes["rejected"]
    remaining = int(sqs.get_queue_attributes(QueueUrl=queues[CONVERSION_QUEUE][0], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]["ApproximateNumberOfMessages"])
    batches = len(handler_seconds)
    result = {
        "messages": messages, "delivered": delivered, "credited": credited, "rejected": rejected,
        "left_on_queue": remaining, "consumers": 1, "batch_size": 10,
        "wall_s": rounded(wall, 2), "messages_per_s": rounded(delivered / wall, 1),
        "handler_batches": batches,
        "handler_ms_per_batch_p50": rounded(sorted(handler_seconds)[batches // 2] * 1000, 2) if batches else None,
        "handler_ms_per_message": rounded(sum(handler_seconds) * 1000 / max(1, delivered), 2),
        # What one consumer could do if receiving and deleting cost nothing (Lambda's event source mapping
        # polls outside the function): the platform's own limit, without moto's.
        "handler_bound_messages_per_s": rounded(delivered / max(1e-9, sum(handler_seconds)), 1),
        "share_of_time_in_handler": rounded(sum(handler_seconds) / wall, 3),
        "rcu_per_message": rounded(sum(v["read_units"] for v in used.values()) / max(1, delivered), 2),
        "wcu_per_message": rounded(sum(v["write_units"] for v in used.values()) / max(1, delivered), 2),
        "dynamodb_round_trips_per_message": rounded(sum(v["round_trips"] for v in used.values()) / max(1, delivered), 2),
        "dynamodb_ms_per_message": rounded(sum(v["milliseconds"] for v in used.values()) / max(1, delivered), 2),
        "result_send_ms_per_message": rounded(sqs_time["SendMessage"][1] / max(1, delivered), 2),
        "poller_sqs_ms_per_message": rounded(sqs_time["other"][1] / max(1, delivered), 2),
    }
    if credited != messages:
        raise AssertionError(f"queue drain: {credited} of {messages} credited ({rejected} rejected)")
    log(f"queue drain: {result['messages_per_s']} messages/s, handler {result['handler_ms_per_message']} ms per message")
    return result
