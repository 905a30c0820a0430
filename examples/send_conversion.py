"""Send one signed point conversion to the Municipal Point Cloud, and wait for its result.

This is what a partner company (card issuer, airline, carrier) runs, in essence. See docs/PARTNERS.md.

    python examples/send_conversion.py --partner-file partner.json --mykey-id ABCD2345 --partner-points 1000 \\
        [--municipality 252034] [--campaign CODE] [--txn-id ID] [--conversion-queue-url URL]

`partner.json` holds {"partner_id", "private_key" (base64 of the raw 32-byte Ed25519 key), and either
"result_queue_url" (production: the URL the platform operator gives you) or "result_queue" (its name)}.
`--conversion-queue-url` is the platform's queue URL given at onboarding
(https://sqs.ap-northeast-1.amazonaws.com/<platform account>/points-partner-conversions); without it the
queue is looked up by name in your own account and region, as in the local cloud (so is "result_queue":
in production give both URLs). boto3 uses your usual AWS credentials and region; for the local cloud set
AWS_ENDPOINT_URL_SQS (make run prints it).
Needs only boto3 and cryptography.

Several senders may wait on the same result queue at once: each deletes only its own result and hands
every other one straight back to the queue, so no sender loses another's result. (A system sending many
conversions would rather run one reader of the result queue that records every result it gets.)
Each message is kept in an outbox file before it is sent, so running again with the same --txn-id sends the
same bytes (a redelivery, answered with the first outcome), never a new message under a decided id.
Exit status: 0 credited, 1 rejected, 2 no result within --wait-seconds (it will still arrive) or no
AWS credentials, 3 partner_txn_conflict (another message was decided under this id; its outcome stands).
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
from botocore.exceptions import NoCredentialsError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONVERSION_QUEUE = "points-partner-conversions"
# After a receive that held only other transactions' results, pause a little so that whoever waits for
# them can take them (and so the queue is not polled in a tight loop).
OTHERS_ONLY_PAUSE_SECONDS = 0.2


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


def result_queue_url(sqs, partner: dict) -> str:
    if partner.get("result_queue_url"):
        return partner["result_queue_url"]
    return sqs.get_queue_url(QueueName=partner["result_queue"])["QueueUrl"]


def wait_for_result(sqs, queue_url: str, txn_id: str, wait_seconds: float) -> dict | None:
    """This transaction's result, deleted from the queue; None if it did not come in time.

    Results are matched by partner_txn_id. Another transaction's result is made visible again at once
    (visibility timeout 0) rather than deleted: it belongs to whoever sent that transaction."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        mine = None
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in messages:
            try:
                result = json.loads(message["Body"])
            except ValueError:
                result = None
            if isinstance(result, dict) and result.get("partner_txn_id") == txn_id:
                # The same result may arrive more than once (same content): delete every copy we hold.
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                mine = result
            else:
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=0)
        if mine is not None:
            return mine
        if messages:
            time.sleep(OTHERS_ONLY_PAUSE_SECONDS)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partner-file", required=True)
    parser.add_argument("--mykey-id", required=True)
    parser.add_argument("--partner-points", type=int, required=True)
    parser.add_argument("--municipality", default=None, help="omit for the resident's reserve account")
    parser.add_argument("--campaign", default=None)
    parser.add_argument("--txn-id", default=None,
                        help="your own unique transaction id (default: a new UUID); an id already in the outbox is "
                             "sent again with its stored bytes, whatever the other arguments say")
    parser.add_argument("--outbox", default=None,
                        help="where each message is kept before it is sent (default: <partner_id>-outbox.jsonl "
                             "beside the partner file)")
    parser.add_argument("--conversion-queue-url", default=None,
                        help=f"the platform's queue URL given at onboarding (default: look up {CONVERSION_QUEUE} by name)")
    parser.add_argument("--wait-seconds", type=float, default=30)
    arguments = parser.parse_args(argv)

    with open(arguments.partner_file, encoding="utf-8") as handle:
        partner = json.load(handle)
    txn_id = arguments.txn_id or str(uuid.uuid4())
    outbox = arguments.outbox or os.path.join(os.path.dirname(os.path.abspath(arguments.partner_file)),
                                              f"{partner['partner_id']}-outbox.jsonl")
    body, signature = stored_or_new(outbox, txn_id, lambda: signed_message(
        partner, arguments.mykey_id, arguments.partner_points, arguments.municipality, arguments.campaign, txn_id))
    try:
        # A session of its own: boto3's default session is not safe to share between threads.
        sqs = boto3.session.Session().client("sqs", region_name=os.environ.get("AWS_DEFAULT_REGION", "ap-northeast-1"))
        queue_url = arguments.conversion_queue_url or sqs.get_queue_url(QueueName=CONVERSION_QUEUE)["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=body,
                         MessageAttributes={"signature": {"DataType": "String", "StringValue": signature}})
        print(f"sent {txn_id}")
        result = wait_for_result(sqs, result_queue_url(sqs, partner), txn_id, arguments.wait_seconds)
    except NoCredentialsError:
        print("no AWS credentials: set them as for any AWS tool (for the local cloud any value will do: "
              "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local)", file=sys.stderr)
        return 2
    if result is None:
        print("no result yet: it will arrive on the result queue", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    if result["reason"] == "partner_txn_conflict":
        # Not this transaction's outcome: another message was sent under its id; the first one stands.
        print("partner_txn_conflict: this id was decided for another message, whose outcome stands "
              "(ask the read API by id); this message was not converted", file=sys.stderr)
        return 3
    return 0 if result["status"] == "credited" else 1


def stored_or_new(outbox: str, txn_id: str, make) -> tuple[str, str]:
    """The message kept for this transaction id, or a new one, kept before it is first sent: a resend
    must be the same bytes, or the platform answers partner_txn_conflict (docs/PARTNERS.md §12-13)."""
    if os.path.exists(outbox):
        with open(outbox, encoding="utf-8") as handle:
            for line in handle:
                kept = json.loads(line)
                if kept["partner_txn_id"] == txn_id:
                    print(f"resending the kept message of {txn_id} ({outbox})", file=sys.stderr)
                    return kept["body"], kept["signature"]
    body, signature = make()
    with open(outbox, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"partner_txn_id": txn_id, "body": body, "signature": signature}, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return body, signature


if __name__ == "__main__":
    sys.exit(main())
