"""Settings read from the environment, once, on first use, and the card-hash secret from Secrets Manager.

Nothing here runs at import time: Lambda cold start stays cheap and tests can set the environment
before the first request. `get_settings()` is the cached getter; `reset_settings()` exists for tests
that change the environment between cases.

No secret is ever read from the environment (docs/DEPLOYMENT.md): the environment names the Secrets
Manager secret (`CARD_HASH_SECRET_ID`), and `card_hash_secret()` reads its value through Powertools
Parameters when the card authority needs it. Locally the same code reads it from the local cloud's Secrets
Manager endpoint (moto), which `AWS_ENDPOINT_URL_SECRETS_MANAGER` points boto3 at.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    table_prefix: str
    region: str
    # PEM bundle of the CA certificates that issue card user-authentication certificates.
    card_trust_store_path: str
    # Name or ARN of the Secrets Manager secret keying the hash under which certificate serials are
    # stored (docs/CONTRACTS.md#card-certificates); the value itself is read by `card_hash_secret()`, never from the environment.
    card_hash_secret_id: str
    staff_session_idle_seconds: int
    terminal_clock_skew_seconds: int
    card_signature_max_age_seconds: int
    # How long a container trusts the programme, merchant and terminal settings it read (see
    # chalicelib/storage/cache.py); 0 turns the container cache off.
    container_cache_seconds: float = 30.0


class ConfigurationError(RuntimeError):
    """The deployment lacks something the platform needs to run (an operator's mistake, not a user's)."""


# How long a container keeps the card-hash secret before asking Secrets Manager again. The key itself never
# changes: rotating it would orphan every certificate hash already stored, so nobody rotates it. The TTL
# exists so that a container notices, within minutes, a secret that was deleted or disabled (or access to it
# revoked) and stops hashing with a key the platform no longer holds.
CARD_HASH_SECRET_MAX_AGE_SECONDS = 300


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(
        table_prefix=os.environ.get("POINTS_TABLE_PREFIX", "points-dev-"),
        region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "ap-northeast-1",
        card_trust_store_path=os.environ.get("CARD_TRUST_STORE", ""),
        card_hash_secret_id=os.environ.get("CARD_HASH_SECRET_ID", ""),
        staff_session_idle_seconds=int(os.environ.get("STAFF_SESSION_IDLE_SECONDS", "900")),
        terminal_clock_skew_seconds=300,
        card_signature_max_age_seconds=600,
        container_cache_seconds=float(os.environ.get("CONTAINER_CACHE_SECONDS", "30")),
    )


def reset_settings() -> None:
    get_settings.cache_clear()


@functools.lru_cache(maxsize=4)
def secrets_provider(region: str):
    """One Powertools Secrets Manager provider per region and container: its cache is what the TTL applies to."""
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from botocore.config import Config

    return SecretsProvider(boto_config=Config(region_name=region))


def card_hash_secret(settings: Settings) -> bytes:
    """The card-hash secret's value, from Secrets Manager, cached for CARD_HASH_SECRET_MAX_AGE_SECONDS."""
    secret_id = settings.card_hash_secret_id
    if not secret_id:
        raise ConfigurationError(
            "CARD_HASH_SECRET_ID is not set: name the Secrets Manager secret holding the card-hash secret "
            "(the platform cannot hash certificate serials without it)"
        )
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        value = secrets_provider(settings.region).get(secret_id, max_age=CARD_HASH_SECRET_MAX_AGE_SECONDS)
    except GetParameterError as error:
        raise ConfigurationError(
            f"the card-hash secret {secret_id!r} could not be read from Secrets Manager: {error}"
        ) from error
    secret = value.encode("utf-8") if isinstance(value, str) else value
    if not secret:
        raise ConfigurationError(f"the card-hash secret {secret_id!r} in Secrets Manager is empty")
    return secret


def reset_secrets() -> None:
    """Forget every provider and the values they cached (tests that change endpoints or secrets)."""
    secrets_provider.cache_clear()
