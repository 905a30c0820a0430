"""Deliver SQS messages to a Chalice app's queue handlers, the way Lambda would.

`chalice local` serves HTTP routes only; it never invokes handlers declared
with `@app.on_sqs_message`. In AWS, a Lambda event source mapping receives
messages, invokes the function with a batch, and deletes what succeeded.
`SqsPoller` plays that role against a local SQS endpoint (moto's server):

* it finds every SQS handler on the app, including handlers from registered
  blueprints, by reading `app.event_sources` (SQSEventConfig entries) and
  `app.handler_map` (the Chalice-wrapped callables, keyed by the same name);
* it receives up to the handler's batch_size messages, builds an event in the
  exact shape Lambda sends, and calls the wrapped handler with
  (event, context) as the Lambda runtime does;
* it deletes the messages that succeeded, honouring a partial-batch response
  (`{"batchItemFailures": [{"itemIdentifier": <messageId>}]}`), and deletes
  nothing if the handler raises, so the whole batch is retried after the
  queue's visibility timeout.

Chalice 1.34 does not itself set `FunctionResponseTypes:
["ReportBatchItemFailures"]` on the event source mappings it deploys, and
without that setting Lambda ignores `batchItemFailures` and deletes the whole
batch. The poller honours partial-batch responses by default because that is
how the project's mappings are meant to be configured; pass
`report_batch_item_failures=False` to reproduce a mapping without the setting.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import Chalice, SQSEventConfig

logger = logging.getLogger(__name__)

LOCAL_REGION = "ap-northeast-1"
# moto's default account, so the ARNs built here match the ones moto reports.
LOCAL_ACCOUNT_ID = "123456789012"
# SQS returns at most ten messages per ReceiveMessage call and deletes at
# most ten per DeleteMessageBatch call.
SQS_MAXIMUM_MESSAGES_PER_CALL = 10
# Chalice's default Lambda timeout, used for get_remaining_time_in_millis().
DEFAULT_LAMBDA_TIMEOUT_SECONDS = 60
DEFAULT_LAMBDA_MEMORY_MEGABYTES = 128
# After an SQS error in run_forever, wait this long before polling again so
# that an endpoint that is down does not cause a tight loop of failures.
ERROR_BACKOFF_SECONDS = 1.0


@dataclass
class LocalLambdaContext:
    """The parts of the Lambda runtime's context object that handlers and Powertools read."""

    function_name: str
    timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT_SECONDS
    # The Lambda runtime fills this from an environment variable, so it is a
    # string there; keeping it a string catches code that assumes an int.
    memory_limit_in_mb: str = str(DEFAULT_LAMBDA_MEMORY_MEGABYTES)
    function_version: str = "$LATEST"
    region: str = LOCAL_REGION
    account_id: str = LOCAL_ACCOUNT_ID
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: Any = None
    client_context: Any = None
    _started_monotonic_seconds: float = field(default_factory=time.monotonic, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed_seconds = time.monotonic() - self._started_monotonic_seconds
        return max(0, int((self.timeout_seconds - elapsed_seconds) * 1000))


@dataclass
class SqsSubscription:
    """One `@app.on_sqs_message` handler and the queue it reads."""

    handler_name: str
    queue_name: str
    queue_url: str
    queue_arn: str
    batch_size: int
    handler: Callable[[dict[str, Any], Any], Any]


def find_sqs_handlers(app: Chalice) -> list[tuple[SQSEventConfig, Callable[[dict[str, Any], Any], Any]]]:
    """Return each SQS event source on the app with its Chalice-wrapped handler.

    Blueprint handlers appear here too: `app.register_blueprint` replays the
    blueprint's registrations onto the app, under the prefixed name.
    """
    handlers = []
    for event_source in app.event_sources:
        if isinstance(event_source, SQSEventConfig):
            handlers.append((event_source, app.handler_map[event_source.name]))
    return handlers


def lambda_message_attributes(sqs_message_attributes: dict[str, Any]) -> dict[str, Any]:
    """Convert ReceiveMessage's message attributes to the camel-case shape Lambda uses.

    Lambda always includes the two list fields, and carries binary values as
    base64 text because the event is JSON.
    """
    converted = {}
    for name, attribute in sqs_message_attributes.items():
        lambda_attribute: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attribute["DataType"],
        }
        if "StringValue" in attribute:
            lambda_attribute["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            lambda_attribute["binaryValue"] = base64.b64encode(attribute["BinaryValue"]).decode("ascii")
        converted[name] = lambda_attribute
    return converted


def lambda_sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """Build one record of a Lambda SQS event from a ReceiveMessage message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class SqsPoller:
    """Receives from each queue a Chalice app listens to and invokes its handler."""

    def __init__(
        self,
        app: Chalice,
        sqs_client: Any,
        queue_urls: dict[str, str] | None = None,
        wait_seconds: int = 1,
        *,
        report_batch_item_failures: bool = True,
        stage: str = "local",
        lambda_timeout_seconds: float = DEFAULT_LAMBDA_TIMEOUT_SECONDS,
        account_id: str = LOCAL_ACCOUNT_ID,
    ) -> None:
        """Discover the app's SQS handlers and resolve their queue URLs.

        `queue_urls` maps queue names to URLs; any queue not in it is looked
        up with GetQueueUrl now, so a missing queue fails here rather than on
        the first poll. `wait_seconds` is the long-poll wait for each queue.
        """
        self.app = app
        self.sqs_client = sqs_client
        self.wait_seconds = wait_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.stage = stage
        self.lambda_timeout_seconds = lambda_timeout_seconds
        self.region = sqs_client.meta.region_name or LOCAL_REGION
        self.account_id = account_id
        given_queue_urls = dict(queue_urls or {})
        self.subscriptions: list[SqsSubscription] = []
        for event_source, handler in find_sqs_handlers(app):
            # The decorator takes either a queue name or a queue ARN; the
            # name is the ARN's last field.
            queue_name = event_source.queue or (event_source.queue_arn or "").rsplit(":", 1)[-1]
            queue_arn = (
                event_source.queue_arn or f"arn:aws:sqs:{self.region}:{self.account_id}:{queue_name}"
            )
            queue_url = given_queue_urls.get(queue_name) or self._look_up_queue_url(
                queue_name, event_source.name
            )
            self.subscriptions.append(
                SqsSubscription(
                    handler_name=event_source.name,
                    queue_name=queue_name,
                    queue_url=queue_url,
                    queue_arn=queue_arn,
                    batch_size=event_source.batch_size,
                    handler=handler,
                )
            )

    def poll_once(self, stop_event: threading.Event | None = None) -> int:
        """Run one receive-invoke-delete cycle per handler; return how many messages were delivered.

        Messages in a batch whose handler failed still count as delivered. With `stop_event`, the round
        ends at the first queue after it is set: a stop then waits for one long poll at most, not for
        one per queue.
        """
        delivered_count = 0
        for subscription in self.subscriptions:
            if stop_event is not None and stop_event.is_set():
                break
            delivered_count += self._poll_subscription(subscription)
        return delivered_count

    def run_forever(self, stop_event: threading.Event) -> None:
        """Poll until stop_event is set; SQS errors are logged and retried, not raised.

        Whoever stops the SQS endpoint sets `stop_event` and joins this thread first (`make run` does):
        an error that still arrives once the stop was asked for is the endpoint going away, and ends the
        loop quietly instead of being logged with a traceback.
        """
        logger.info(
            "SQS poller started for %s",
            ", ".join(f"{s.handler_name} <- {s.queue_name}" for s in self.subscriptions) or "no handlers",
        )
        while not stop_event.is_set():
            if not self.subscriptions:
                # Nothing to receive, so there is no long poll to pace the loop.
                stop_event.wait(self.wait_seconds or ERROR_BACKOFF_SECONDS)
                continue
            try:
                self.poll_once(stop_event)
            except (BotoCoreError, ClientError) as error:
                if stop_event.is_set():
                    logger.info("SQS poll interrupted by the stop: %s", error)
                    break
                logger.exception("SQS poll failed; retrying in %.1f seconds", ERROR_BACKOFF_SECONDS)
                stop_event.wait(ERROR_BACKOFF_SECONDS)
        logger.info("SQS poller stopped")

    # Internals.

    def _look_up_queue_url(self, queue_name: str, handler_name: str) -> str:
        try:
            return self.sqs_client.get_queue_url(QueueName=queue_name)["QueueUrl"]
        except ClientError as error:
            raise LookupError(
                f"queue {queue_name!r} used by SQS handler {handler_name!r} does not exist "
                f"at {self.sqs_client.meta.endpoint_url}; create it before starting the poller"
            ) from error

    def _receive_batch(self, subscription: SqsSubscription) -> list[dict[str, Any]]:
        """Receive up to batch_size distinct messages, waiting only for the first one.

        Lambda can hand a function more than the ten messages one
        ReceiveMessage call returns, so the batch is filled with further
        non-waiting calls until it is full or the queue has nothing more.
        """
        messages: list[dict[str, Any]] = []
        seen_message_ids: set[str] = set()
        wait_seconds = self.wait_seconds
        while len(messages) < subscription.batch_size:
            response = self.sqs_client.receive_message(
                QueueUrl=subscription.queue_url,
                MaxNumberOfMessages=min(SQS_MAXIMUM_MESSAGES_PER_CALL, subscription.batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            # On a queue with a zero visibility timeout the same message can
            # come back at once; a batch never holds one message twice.
            new_messages = [m for m in received if m["MessageId"] not in seen_message_ids]
            if not new_messages:
                break
            for message in new_messages:
                seen_message_ids.add(message["MessageId"])
            messages.extend(new_messages)
            wait_seconds = 0
        return messages

    def _poll_subscription(self, subscription: SqsSubscription) -> int:
        messages = self._receive_batch(subscription)
        if not messages:
            return 0
        event = {
            "Records": [lambda_sqs_record(message, subscription.queue_arn, self.region) for message in messages]
        }
        context = LocalLambdaContext(
            function_name=f"{self.app.app_name}-{self.stage}-{subscription.handler_name}",
            timeout_seconds=self.lambda_timeout_seconds,
            region=self.region,
            account_id=self.account_id,
        )
        started_seconds = time.monotonic()
        try:
            response = subscription.handler(event, context)
        except Exception:
            # Lambda treats an error as failure of the whole batch: nothing is
            # deleted and every message reappears after the visibility timeout.
            logger.exception(
                "SQS handler %s raised on a batch of %d from %s; leaving all of them on the queue",
                subscription.handler_name,
                len(messages),
                subscription.queue_name,
            )
            return len(messages)
        duration_milliseconds = (time.monotonic() - started_seconds) * 1000

        message_ids = [message["MessageId"] for message in messages]
        failed_message_ids = self._failed_message_ids(response, message_ids, subscription)
        to_delete = [message for message in messages if message["MessageId"] not in failed_message_ids]
        self._delete_messages(subscription, to_delete)
        logger.info(
            "SQS handler %s processed %d from %s in %.0f ms: %d deleted, %d left for retry",
            subscription.handler_name,
            len(messages),
            subscription.queue_name,
            duration_milliseconds,
            len(to_delete),
            len(messages) - len(to_delete),
        )
        return len(messages)

    def _failed_message_ids(self, response: Any, message_ids: list[str], subscription: SqsSubscription) -> set[str]:
        """Apply Lambda's partial-batch rules to a handler's return value.

        An empty or missing response means success. A response Lambda cannot
        interpret, or an itemIdentifier that is empty or not in the batch,
        makes Lambda fail the whole batch, so every message is returned.
        """
        if not self.report_batch_item_failures or response is None:
            return set()
        whole_batch = set(message_ids)
        if not isinstance(response, dict):
            logger.warning(
                "SQS handler %s returned %r, which is not a batch response; retrying the whole batch",
                subscription.handler_name,
                type(response).__name__,
            )
            return whole_batch
        failures = response.get("batchItemFailures") or []
        failed_message_ids = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in whole_batch:
                logger.warning(
                    "SQS handler %s reported failure %r, which names no message in the batch; "
                    "retrying the whole batch",
                    subscription.handler_name,
                    failure,
                )
                return whole_batch
            failed_message_ids.add(identifier)
        return failed_message_ids

    def _delete_messages(self, subscription: SqsSubscription, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAXIMUM_MESSAGES_PER_CALL):
            chunk = messages[start : start + SQS_MAXIMUM_MESSAGES_PER_CALL]
            response = self.sqs_client.delete_message_batch(
                QueueUrl=subscription.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(chunk)
                ],
            )
            for failure in response.get("Failed", []):
                logger.warning(
                    "could not delete message %s from %s: %s",
                    chunk[int(failure["Id"])]["MessageId"],
                    subscription.queue_name,
                    failure.get("Message", failure.get("Code")),
                )
