"""Cached getters for what the routes need: the stores, the card authority, the clock.

Nothing is created at import time (Chalice's `get_app_db()` pattern): the first request builds each
object once per Lambda container. Tests replace them with `override()` and undo it with `reset()`.
"""
from __future__ import annotations

import time
from typing import Any, Callable

_overrides: dict[str, Any] = {}
_cache: dict[str, Any] = {}


def _get(name: str, build: Callable[[], Any]) -> Any:
    if name in _overrides:
        return _overrides[name]
    if name not in _cache:
        _cache[name] = build()
    return _cache[name]


def _build_ledger_store():
    from chalicelib.config import get_settings
    from chalicelib.storage.dynamo import DynamoLedgerStore
    from chalicelib.storage.models import bind_models

    settings = get_settings()
    bind_models(settings.table_prefix, settings.region)
    return DynamoLedgerStore(settings.region, cache_seconds=settings.container_cache_seconds)


def get_ledger_store():
    return _get("ledger_store", _build_ledger_store)


def get_staff_store():
    def build():
        from chalicelib.storage.staff import DynamoStaffStore

        get_ledger_store()  # binds the models to this stage's tables
        return DynamoStaffStore()

    return _get("staff_store", build)


def get_identity_store():
    def build():
        from chalicelib.config import get_settings
        from chalicelib.storage.identity import DynamoIdentityStore

        get_ledger_store()  # binds the models to this stage's tables
        return DynamoIdentityStore(get_settings().region)

    return _get("identity_store", build)


def get_grant_batch_store():
    def build():
        from chalicelib.storage.grants import DynamoGrantStore

        get_ledger_store()  # binds the models to this stage's tables
        return DynamoGrantStore(get_settings().region)

    return _get("grant_batch_store", build)


class SqsGrantBatchQueue:
    """Sends one message per chunk of an upload to the grant-batch queue, ten per SQS call."""

    def send_chunks(self, municipality_code: str, batch_id: str, chunk_numbers: list[int]) -> None:
        import json

        from chalicelib.api.grant_batch_handlers import GRANT_BATCH_QUEUE

        url = queue_url(GRANT_BATCH_QUEUE)
        for start in range(0, len(chunk_numbers), 10):
            entries = [
                {"Id": str(number), "MessageBody": json.dumps(
                    {"municipality_code": municipality_code, "batch_id": batch_id, "chunk_number": number})}
                for number in chunk_numbers[start:start + 10]
            ]
            response = get_sqs_client().send_message_batch(QueueUrl=url, Entries=entries)
            if response.get("Failed"):
                # Whatever was not sent is sent again by the next approval or upload retry; say so loudly.
                raise RuntimeError(f"grant batch chunks not queued: {[entry['Id'] for entry in response['Failed']]}")


def get_grant_batch_queue():
    return _get("grant_batch_queue", SqsGrantBatchQueue)


def get_sqs_client():
    def build():
        import boto3

        from chalicelib.config import get_settings

        return boto3.client("sqs", region_name=get_settings().region)

    return _get("sqs_client", build)


_queue_urls: dict[str, str] = {}


def queue_url(queue_name: str) -> str:
    """A queue's URL by name, looked up once per container."""
    if queue_name not in _queue_urls:
        _queue_urls[queue_name] = get_sqs_client().get_queue_url(QueueName=queue_name)["QueueUrl"]
    return _queue_urls[queue_name]


def reset_queue_urls() -> None:
    _queue_urls.clear()


def get_card_authority():
    def build():
        from chalicelib.auth.cards import authority_from_settings
        from chalicelib.config import get_settings

        return authority_from_settings(get_settings())

    return _get("card_authority", build)


def get_hash_secret() -> Callable[[], bytes]:
    """The keyed-hash secret (the card-hash secret in Secrets Manager, cached with its TTL), as a function:
    what must never be stored in clear (a refused partner transaction id that may be an Individual Number)
    is stored as an HMAC under it. Tests override it with `override(hash_secret=lambda: b"...")`."""
    def build():
        from chalicelib.config import card_hash_secret, get_settings

        return lambda: card_hash_secret(get_settings())

    return _get("hash_secret", build)


def get_settings():
    from chalicelib.config import get_settings as settings

    return _get("settings", settings)


def get_clock() -> Callable[[], float]:
    return _get("clock", lambda: time.time)


def override(**replacements: Any) -> None:
    _overrides.update(replacements)


def reset() -> None:
    _overrides.clear()
    _cache.clear()
    _queue_urls.clear()
