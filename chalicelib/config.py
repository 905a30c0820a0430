"""Settings read from the environment, once, on first use.

Nothing here runs at import time: Lambda cold start stays cheap and tests can set the environment
before the first request. `get_settings()` is the cached getter; `reset_settings()` exists for tests
that change the environment between cases.
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
    # Secret for the keyed hash under which certificate serials are stored (DESIGN §3).
    card_hash_secret: bytes
    staff_session_idle_seconds: int
    terminal_clock_skew_seconds: int
    card_signature_max_age_seconds: int
    # How long a container trusts the programme, merchant and terminal settings it read (see
    # chalicelib/storage/cache.py); 0 turns the container cache off.
    container_cache_seconds: float = 30.0


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    secret = os.environ.get("CARD_HASH_SECRET", "")
    if not secret:
        raise RuntimeError("CARD_HASH_SECRET is not set: the platform cannot hash certificate serials")
    return Settings(
        table_prefix=os.environ.get("POINTS_TABLE_PREFIX", "points-dev-"),
        region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "ap-northeast-1",
        card_trust_store_path=os.environ.get("CARD_TRUST_STORE", ""),
        card_hash_secret=secret.encode("utf-8"),
        staff_session_idle_seconds=int(os.environ.get("STAFF_SESSION_IDLE_SECONDS", "900")),
        terminal_clock_skew_seconds=300,
        card_signature_max_age_seconds=600,
        container_cache_seconds=float(os.environ.get("CONTAINER_CACHE_SECONDS", "30")),
    )


def reset_settings() -> None:
    get_settings.cache_clear()
