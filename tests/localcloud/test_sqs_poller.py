"""Tests for SqsPoller against a real moto server acting as SQS.

Each test defines a tiny Chalice app with an `on_sqs_message` handler and its
own uniquely named queue, so tests share one moto server (started once per
module) without seeing each other's messages.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from typing import Any

import pytest
from chalice import Blueprint, Chalice

from tools.localcloud.processes import MotoServer, free_port, local_client
from tools.localcloud.sqs_poller import SqsPoller


@pytest.fixture(scope="module")
def moto_server():
    with MotoServer(free_port()) as server:
        yield server


@pytest.fixture
def sqs(moto_server):
    return local_client("sqs", moto_server.endpoint_url)


@pytest.fixture
def queue(sqs):
    """A fresh queue, returned as (name, url)."""
    name = f"test-{uuid.uuid4().hex}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    yield name, url
    sqs.delete_queue(QueueUrl=url)


def send_messages(sqs: Any, queue_url: str, bodies: list[str]) -> dict[str, str]:
    """Send one message per body; return message id -> body."""
    return {sqs.send_message(QueueUrl=queue_url, MessageBody=body)["MessageId"]: body for body in bodies}


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """Return (visible, in flight) message counts for the queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def recording_app(queue_name: str, batch_size: int = 10, fail_bodies: frozenset[str] = frozenset()):
    """A Chalice app whose handler records every record and batch, reporting fail_bodies as failures."""
    app = Chalice(app_name="pointcloud-test")
    seen_records: list[dict[str, Any]] = []
    batch_sizes: list[int] = []

    @app.on_sqs_message(queue=queue_name, batch_size=batch_size)
    def handle_uploads(event):
        failures = []
        records = [record.to_dict() for record in event]
        batch_sizes.append(len(records))
        for record in records:
            seen_records.append(record)
            if record["body"] in fail_bodies:
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    return app, seen_records, batch_sizes


def test_poller__failed_record__is_left_on_queue_and_others_deleted(sqs, queue):
    queue_name, queue_url = queue
    app, seen_records, batch_sizes = recording_app(queue_name, fail_bodies=frozenset({"poison"}))
    sent = send_messages(sqs, queue_url, ["scan-1", "poison", "scan-2"])
    poller = SqsPoller(app, sqs, wait_seconds=0)

    delivered_count = poller.poll_once()

    assert delivered_count == 3
    assert batch_sizes == [3]
    seen_message_ids = [record["messageId"] for record in seen_records]
    assert len(set(seen_message_ids)) == 3
    assert set(seen_message_ids) == set(sent)
    # Only the failed message survives, invisible until its visibility
    # timeout; making it visible now shows which one it is.
    assert queue_counts(sqs, queue_url) == (0, 1)
    poison_record = next(record for record in seen_records if record["body"] == "poison")
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=poison_record["receiptHandle"], VisibilityTimeout=0
    )
    remaining = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [(message["MessageId"], message["Body"]) for message in remaining] == [
        (poison_record["messageId"], "poison")
    ]


def test_poller__handler_raises__leaves_whole_batch_on_queue(sqs, queue):
    queue_name, queue_url = queue
    app = Chalice(app_name="pointcloud-test")
    calls: list[int] = []

    @app.on_sqs_message(queue=queue_name, batch_size=10)
    def explode(event):
        calls.append(len(list(event)))
        raise RuntimeError("simulated handler crash")

    send_messages(sqs, queue_url, ["a", "b", "c"])
    poller = SqsPoller(app, sqs, wait_seconds=0)

    assert poller.poll_once() == 3
    assert calls == [3]
    assert queue_counts(sqs, queue_url) == (0, 3)


def test_poller__unknown_item_identifier__leaves_whole_batch_on_queue(sqs, queue):
    queue_name, queue_url = queue
    app = Chalice(app_name="pointcloud-test")

    @app.on_sqs_message(queue=queue_name, batch_size=10)
    def misreport(event):
        return {"batchItemFailures": [{"itemIdentifier": "not-a-message-in-this-batch"}]}

    send_messages(sqs, queue_url, ["a", "b", "c"])

    SqsPoller(app, sqs, wait_seconds=0).poll_once()

    assert queue_counts(sqs, queue_url) == (0, 3)


def test_poller__batch_item_failures_not_reported__deletes_whole_batch_like_chalice_default_mapping(sqs, queue):
    queue_name, queue_url = queue
    app, _, _ = recording_app(queue_name, fail_bodies=frozenset({"poison"}))
    send_messages(sqs, queue_url, ["scan-1", "poison", "scan-2"])

    SqsPoller(app, sqs, wait_seconds=0, report_batch_item_failures=False).poll_once()

    assert queue_counts(sqs, queue_url) == (0, 0)


def test_poller__batch_size__limits_records_per_invocation(sqs, queue):
    queue_name, queue_url = queue
    app, seen_records, batch_sizes = recording_app(queue_name, batch_size=2)
    send_messages(sqs, queue_url, ["a", "b", "c"])
    poller = SqsPoller(app, sqs, wait_seconds=0)

    first_delivered_count = poller.poll_once()
    second_delivered_count = poller.poll_once()
    third_delivered_count = poller.poll_once()

    assert (first_delivered_count, second_delivered_count, third_delivered_count) == (2, 1, 0)
    assert batch_sizes == [2, 1]
    assert sorted(record["body"] for record in seen_records) == ["a", "b", "c"]
    assert queue_counts(sqs, queue_url) == (0, 0)


def test_poller__event_and_context__have_the_shape_lambda_delivers(sqs, queue):
    queue_name, queue_url = queue
    app = Chalice(app_name="pointcloud-test")
    captured: dict[str, Any] = {}

    @app.on_sqs_message(queue=queue_name, batch_size=1)
    def capture(event):
        captured["event"] = event.to_dict()
        captured["context"] = event.context

    body = '{"tileId": "53394611"}'
    message_id = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=body,
        MessageAttributes={
            "tenant": {"DataType": "String", "StringValue": "tokyo"},
            "checksum": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
        },
    )["MessageId"]

    SqsPoller(app, sqs, wait_seconds=0).poll_once()

    [record] = captured["event"]["Records"]
    assert record["messageId"] == message_id
    assert record["body"] == body
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == f"arn:aws:sqs:ap-northeast-1:123456789012:{queue_name}"
    assert record["awsRegion"] == "ap-northeast-1"
    assert record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"] == {
        "tenant": {"stringValue": "tokyo", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "checksum": {
            "binaryValue": base64.b64encode(b"\x00\x01\x02").decode("ascii"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    context = captured["context"]
    assert context.function_name == "pointcloud-test-local-capture"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:ap-northeast-1:123456789012:function:pointcloud-test-local-capture"
    )
    assert context.memory_limit_in_mb == "128"
    assert uuid.UUID(context.aws_request_id)
    assert 0 < context.get_remaining_time_in_millis() <= 60_000


def test_poller__blueprint_handler__is_discovered_under_its_prefixed_name(sqs, queue):
    queue_name, queue_url = queue
    blueprint = Blueprint(__name__)
    bodies: list[str] = []

    @blueprint.on_sqs_message(queue=queue_name)
    def index_tile(event):
        bodies.extend(record.body for record in event)

    app = Chalice(app_name="pointcloud-test")
    app.register_blueprint(blueprint, name_prefix="tiles_")
    send_messages(sqs, queue_url, ["tile-1"])
    poller = SqsPoller(app, sqs, wait_seconds=0)

    delivered_count = poller.poll_once()

    assert [subscription.handler_name for subscription in poller.subscriptions] == ["tiles_index_tile"]
    assert delivered_count == 1
    assert bodies == ["tile-1"]
    assert queue_counts(sqs, queue_url) == (0, 0)


def test_poller__given_queue_urls__are_used_instead_of_looking_names_up(sqs, queue):
    _, queue_url = queue
    # No queue called "uploads" exists; only the mapping can resolve it.
    app, seen_records, _ = recording_app("uploads")
    send_messages(sqs, queue_url, ["scan-1"])

    SqsPoller(app, sqs, queue_urls={"uploads": queue_url}, wait_seconds=0).poll_once()

    assert [record["body"] for record in seen_records] == ["scan-1"]
    assert seen_records[0]["eventSourceARN"].endswith(":uploads")


def test_poller__queue_missing__fails_at_construction_naming_the_queue(sqs):
    app, _, _ = recording_app("queue-that-was-never-created")

    with pytest.raises(LookupError, match="queue-that-was-never-created"):
        SqsPoller(app, sqs, wait_seconds=0)


def test_poller__empty_queue__delivers_nothing(sqs, queue):
    queue_name, _ = queue
    app, seen_records, batch_sizes = recording_app(queue_name)

    assert SqsPoller(app, sqs, wait_seconds=0).poll_once() == 0
    assert seen_records == [] and batch_sizes == []


def test_poller__run_forever__delivers_messages_until_stop_event_is_set(sqs, queue):
    queue_name, queue_url = queue
    app, seen_records, _ = recording_app(queue_name)
    poller = SqsPoller(app, sqs, wait_seconds=1)
    stop_event = threading.Event()
    thread = threading.Thread(target=poller.run_forever, args=(stop_event,), daemon=True)
    thread.start()
    try:
        send_messages(sqs, queue_url, ["scan-1", "scan-2"])
        deadline = time.monotonic() + 10
        while len(seen_records) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop_event.set()
        thread.join(timeout=5)

    assert not thread.is_alive()
    assert sorted(record["body"] for record in seen_records) == ["scan-1", "scan-2"]
    assert queue_counts(sqs, queue_url) == (0, 0)


# -- stopping `make run` (issue 15, item 8) ---------------------------------------------------------------------


class RecordingEndpoint:
    """Stands for DynamoDB Local in the stop sequence: records whether its caller thread was still running."""

    def __init__(self, thread: threading.Thread | None) -> None:
        self.thread = thread
        self.thread_alive_at_stop: bool | None = None

    def stop(self) -> None:
        self.thread_alive_at_stop = self.thread.is_alive() if self.thread else None


def test_stop_background__poller_ends_before_the_sqs_endpoint_stops__and_no_traceback_is_logged(caplog):
    from tools.localcloud.__main__ import stop_background
    from tools.localcloud.streams import StreamDelivery

    server = MotoServer(free_port())
    stop_server = server.stop
    try:
        server.start()
        sqs = local_client("sqs", server.endpoint_url)
        names = [f"stop-{uuid.uuid4().hex}" for _ in range(3)]
        app = Chalice(app_name="pointcloud-stop")
        for index, name in enumerate(names):
            sqs.create_queue(QueueName=name)
            app.on_sqs_message(queue=name, name=f"handler_{index}")(lambda event: None)
        poller = SqsPoller(app, sqs, wait_seconds=1)
        polled = threading.Event()
        receive = sqs.receive_message

        def receive_and_tell(**arguments):
            polled.set()
            return receive(**arguments)

        sqs.receive_message = receive_and_tell
        stop_requested = threading.Event()
        poller_thread = threading.Thread(target=poller.run_forever, args=(stop_requested,), daemon=True)
        # The stream delivery's loop, with a round that is still calling the database when the stop comes.
        streams = object.__new__(StreamDelivery)
        in_round = threading.Event()

        def round_in_flight():
            in_round.set()
            stop_requested.wait()
            raise ConnectionError("DynamoDB Local went away")

        streams.deliver_pending = round_in_flight
        stream_thread = threading.Thread(target=streams.run_forever, args=(stop_requested,), daemon=True)
        database = RecordingEndpoint(stream_thread)
        stopped_with_poller_alive = []
        server.stop = lambda: (stopped_with_poller_alive.append(poller_thread.is_alive()), stop_server())
        caplog.set_level("DEBUG")
        poller_thread.start()
        stream_thread.start()
        assert polled.wait(30) and in_round.wait(30)  # both threads are in the middle of their calls

        stop_requested.set()
        stop_background(poller_thread, server, stream_thread, database)
    finally:
        stop_server()

    assert not poller_thread.is_alive() and not stream_thread.is_alive()
    assert stopped_with_poller_alive[0] is False  # the SQS endpoint was stopped after the poller had ended
    assert database.thread_alive_at_stop is False  # and DynamoDB Local after the stream delivery
    assert [record.getMessage() for record in caplog.records if record.exc_info or record.levelname == "ERROR"] == []
    assert "SQS poller stopped" in caplog.text


def test_poller__stop_asked_during_a_round__ends_it_before_the_next_queue(sqs):
    names = [f"round-{uuid.uuid4().hex}" for _ in range(3)]
    app = Chalice(app_name="pointcloud-round")
    for index, name in enumerate(names):
        sqs.create_queue(QueueName=name)
        app.on_sqs_message(queue=name, name=f"handler_{index}")(lambda event: None)
    poller = SqsPoller(app, sqs, wait_seconds=0)
    stop_event = threading.Event()
    asked = []
    receive = sqs.receive_message

    def receive_then_stop(**arguments):
        asked.append(arguments["QueueUrl"])
        stop_event.set()
        return receive(**arguments)

    sqs.receive_message = receive_then_stop
    assert poller.poll_once(stop_event) == 0
    assert len(asked) == 1  # the other two queues were not polled once the stop was asked for


def test_poller__endpoint_failing_without_a_stop__is_still_logged_with_its_traceback(caplog):
    """The quiet exit is only for a stop: an SQS endpoint that goes away unasked is an error worth seeing."""
    with MotoServer(free_port()) as server:
        sqs = local_client("sqs", server.endpoint_url)
        name = f"gone-{uuid.uuid4().hex}"
        sqs.create_queue(QueueName=name)
        app = Chalice(app_name="pointcloud-gone")
        app.on_sqs_message(queue=name)(lambda event: None)
        poller = SqsPoller(app, sqs, wait_seconds=0)
    stop_event = threading.Event()
    failures = []
    original = poller.poll_once

    def poll_then_stop_after_two_failures(stop=None):
        try:
            return original(stop)
        except Exception:
            failures.append(1)
            if len(failures) == 2:
                stop_event.set()
            raise

    poller.poll_once = poll_then_stop_after_two_failures
    caplog.set_level("INFO")
    poller.run_forever(stop_event)
    assert len([record for record in caplog.records if record.exc_info]) == 1  # the first failure, not the one at the stop
