"""Send one signed point conversion to the Municipal Point Cloud, and wait for its result.

This is what a partner company (card issuer, airline, carrier) runs, in essence. See docs/PARTNERS.md.

    python examples/send_conversion.py --partner-file partner.json --mykey-id ABCD2345 --partner-points 1000 \\
        [--municipality 252034] [--campaign CODE] [--txn-id ID]

`partner.json` holds {"partner_id", "private_key" (base64 of the raw 32-byte Ed25519 key), "result_queue"}.
boto3 finds the queues with your usual AWS credentials and region; for the local cloud set
AWS_ENDPOINT_URL_SQS (make run prints it). Needs only boto3 and cryptography.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import time
import uuid

import boto3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONVERSION_QUEUE = "points-partner-conversions"


def signed_message(partner: dict, mykey_id: str, partner_points: int, municipality_code: str | None,
                   campaign_code: str | None, txn_id: str) -> tuple[str, str]:
    """The message body (exact bytes matter: they are what is signed) and its base64 Ed25519 signature."""
    body = json.dumps({
        "version": 1,
        "partner_id": partner["partner_id"],
        "partner_txn_id": txn_id,
        "mykey_id": mykey_id,
        "municipality_code": municipality_code,
        "partner_points": partner_points,
        "campaign_code": campaign_code,
        "occurred_at": datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=9))).isoformat(timespec="seconds"),
    }, ensure_ascii=False)
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(partner["private_key"]))
    return body, base64.b64encode(key.sign(body.encode("utf-8"))).decode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partner-file", required=True)
    parser.add_argument("--mykey-id", required=True)
    parser.add_argument("--partner-points", type=int, required=True)
    parser.add_argument("--municipality", default=None, help="omit for the resident's reserve account")
    parser.add_argument("--campaign", default=None)
    parser.add_argument("--txn-id", default=None, help="your own unique transaction id (default: a new UUID)")
    parser.add_argument("--wait-seconds", type=float, default=30)
    arguments = parser.parse_args(argv)

    with open(arguments.partner_file, encoding="utf-8") as handle:
        partner = json.load(handle)
    txn_id = arguments.txn_id or str(uuid.uuid4())
    body, signature = signed_message(partner, arguments.mykey_id, arguments.partner_points, arguments.municipality,
                                     arguments.campaign, txn_id)
    sqs = boto3.client("sqs", region_name=os.environ.get("AWS_DEFAULT_REGION", "ap-northeast-1"))
    queue_url = sqs.get_queue_url(QueueName=CONVERSION_QUEUE)["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody=body,
                     MessageAttributes={"signature": {"DataType": "String", "StringValue": signature}})
    print(f"sent {txn_id}")

    # Results arrive on your own queue; match them to your transactions by partner_txn_id.
    result_url = sqs.get_queue_url(QueueName=partner["result_queue"])["QueueUrl"]
    deadline = time.monotonic() + arguments.wait_seconds
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=result_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            result = json.loads(message["Body"])
            sqs.delete_message(QueueUrl=result_url, ReceiptHandle=message["ReceiptHandle"])
            if result["partner_txn_id"] == txn_id:
                print(json.dumps(result, ensure_ascii=False))
                return 0 if result["status"] == "credited" else 1
    print("no result yet: it will arrive on the result queue", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
