"""The SQS queues the platform consumes, as the infrastructure templates define them: each consumed queue
with its dead-letter queue (a message moves there after `max_receive_count` tries)."""
from __future__ import annotations

import json

from chalicelib.api.conversion_handlers import CONVERSION_DEAD_LETTER_QUEUE, CONVERSION_QUEUE
from chalicelib.api.grant_batch_handlers import GRANT_BATCH_DEAD_LETTER_QUEUE, GRANT_BATCH_QUEUE


def create_queue_with_dead_letters(sqs, name: str, dead_letter_name: str, visibility_timeout_seconds: int = 30,
                                   max_receive_count: int = 5) -> tuple[str, str]:
    """Create the pair, or return the existing one as it is (its settings are left alone)."""
    try:
        dead_letters = sqs.create_queue(QueueName=dead_letter_name)["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        dead_letters = sqs.get_queue_url(QueueName=dead_letter_name)["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    try:
        queue = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility_timeout_seconds),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(max_receive_count)}),
            },
        )["QueueUrl"]
    except sqs.exceptions.QueueNameExists:
        queue = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return queue, dead_letters


def create_conversion_queues(sqs, visibility_timeout_seconds: int = 30, max_receive_count: int = 5,
                             prefix: str = "") -> tuple[str, str]:
    return create_queue_with_dead_letters(sqs, prefix + CONVERSION_QUEUE, prefix + CONVERSION_DEAD_LETTER_QUEUE,
                                          visibility_timeout_seconds, max_receive_count)


def create_grant_batch_queues(sqs, visibility_timeout_seconds: int = 120, max_receive_count: int = 5,
                              prefix: str = "") -> tuple[str, str]:
    return create_queue_with_dead_letters(sqs, prefix + GRANT_BATCH_QUEUE, prefix + GRANT_BATCH_DEAD_LETTER_QUEUE,
                                          visibility_timeout_seconds, max_receive_count)


def create_platform_queues(sqs) -> dict[str, tuple[str, str]]:
    """Every queue a handler of the app consumes, for the local cloud's poller."""
    return {CONVERSION_QUEUE: create_conversion_queues(sqs), GRANT_BATCH_QUEUE: create_grant_batch_queues(sqs)}
