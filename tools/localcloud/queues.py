"""The SQS queues the platform consumes, as the infrastructure templates define them: the partner
conversion queue with its dead-letter queue (a message moves there after `max_receive_count` tries)."""
from __future__ import annotations

import json

from chalicelib.api.conversion_handlers import CONVERSION_DEAD_LETTER_QUEUE, CONVERSION_QUEUE


def create_conversion_queues(sqs, visibility_timeout_seconds: int = 30, max_receive_count: int = 5,
                             prefix: str = "") -> tuple[str, str]:
    dead_letters = sqs.create_queue(QueueName=prefix + CONVERSION_DEAD_LETTER_QUEUE)["QueueUrl"]
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=prefix + CONVERSION_QUEUE,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout_seconds),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return queue, dead_letters
