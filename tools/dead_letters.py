"""Operator command for the partner conversion dead-letter queue: list, show, redrive.

A conversion message lands in the dead-letter queue after its retries failed (a poison message, or a
partner whose result queue is gone). Once the cause is fixed, redrive sends it back to the conversion
queue with its body and signature unchanged; the consumer's idempotency makes a redrive of a message
that was in fact credited harmless.

    python -m tools.dead_letters list
    python -m tools.dead_letters show MESSAGE_ID
    python -m tools.dead_letters redrive (MESSAGE_ID ... | --all)

Works against AWS, or the local cloud when `AWS_ENDPOINT_URL_SQS` points at it.
"""
from __future__ import annotations

import argparse
import json
import sys

from chalicelib.api.conversion_handlers import CONVERSION_DEAD_LETTER_QUEUE, CONVERSION_QUEUE

_PEEK_VISIBILITY_SECONDS = 2


def _all_messages(sqs, queue_url: str, visibility_seconds: int) -> list[dict]:
    messages: dict[str, dict] = {}
    for _ in range(20):
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_seconds,
                                    MessageAttributeNames=["All"], AttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
        new = [message for message in batch if message["MessageId"] not in messages]
        if not new:
            break
        messages.update({message["MessageId"]: message for message in new})
    return list(messages.values())


def _peek(sqs, queue_url: str) -> list[dict]:
    """Look without taking: every message is made visible again at once, for the next look or redrive."""
    messages = _all_messages(sqs, queue_url, _PEEK_VISIBILITY_SECONDS)
    for message in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return messages


def list_messages(sqs, dead_letter_url: str) -> list[dict]:
    """Every dead letter, briefly: id, receive count, partner and transaction (the body is not trusted)."""
    summaries = []
    for message in _peek(sqs, dead_letter_url):
        try:
            body = json.loads(message["Body"])
            partner, txn = body.get("partner_id"), body.get("partner_txn_id")
        except (json.JSONDecodeError, AttributeError):
            partner, txn = None, None
        summaries.append({"message_id": message["MessageId"], "partner_id": partner, "partner_txn_id": txn,
                          "receive_count": int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0))})
    return summaries


def show(sqs, dead_letter_url: str, message_id: str) -> dict | None:
    for message in _peek(sqs, dead_letter_url):
        if message["MessageId"] == message_id:
            return {"message_id": message_id, "body": message["Body"],
                    "message_attributes": message.get("MessageAttributes", {}), "attributes": message.get("Attributes", {})}
    return None


def redrive(sqs, dead_letter_url: str, source_url: str, message_ids: list[str] | None) -> list[str]:
    """Send the chosen dead letters (all when `message_ids` is None) back to the source queue."""
    moved = []
    for message in _all_messages(sqs, dead_letter_url, 30):
        if message_ids is not None and message["MessageId"] not in message_ids:
            continue
        attributes = {name: {key: value for key, value in attribute.items() if key in ("DataType", "StringValue", "BinaryValue")}
                      for name, attribute in message.get("MessageAttributes", {}).items()}
        sqs.send_message(QueueUrl=source_url, MessageBody=message["Body"], MessageAttributes=attributes)
        # Deleted only after it is safely back on the source queue: a crash in between duplicates, never loses.
        sqs.delete_message(QueueUrl=dead_letter_url, ReceiptHandle=message["ReceiptHandle"])
        moved.append(message["MessageId"])
    return moved


def main(argv: list[str] | None = None) -> int:
    import boto3

    parser = argparse.ArgumentParser(description="Partner conversion dead letters")
    parser.add_argument("--queue", default=CONVERSION_QUEUE)
    parser.add_argument("--dead-letter-queue", default=CONVERSION_DEAD_LETTER_QUEUE)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list")
    show_parser = commands.add_parser("show")
    show_parser.add_argument("message_id")
    redrive_parser = commands.add_parser("redrive")
    redrive_parser.add_argument("message_ids", nargs="*")
    redrive_parser.add_argument("--all", action="store_true")
    arguments = parser.parse_args(argv)

    sqs = boto3.client("sqs")
    dead_letter_url = sqs.get_queue_url(QueueName=arguments.dead_letter_queue)["QueueUrl"]
    if arguments.command == "list":
        for entry in list_messages(sqs, dead_letter_url):
            print(json.dumps(entry, ensure_ascii=False))
    elif arguments.command == "show":
        found = show(sqs, dead_letter_url, arguments.message_id)
        if found is None:
            print("not found", file=sys.stderr)
            return 1
        print(json.dumps(found, ensure_ascii=False, indent=2))
    else:
        if not arguments.all and not arguments.message_ids:
            print("name message ids, or --all", file=sys.stderr)
            return 2
        source_url = sqs.get_queue_url(QueueName=arguments.queue)["QueueUrl"]
        moved = redrive(sqs, dead_letter_url, source_url, None if arguments.all else arguments.message_ids)
        print(f"redriven: {len(moved)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
