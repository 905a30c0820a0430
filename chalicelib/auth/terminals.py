"""Request signatures (docs/CONTRACTS.md#terminal-signature, #operator-signature, #partner-signature).

Every terminal call carries `X-Terminal-Id`, `X-Timestamp`, `X-Nonce` and `X-Signature`, an Ed25519
signature with the key registered for the terminal over
`POINTS-TERMINAL-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n{hex SHA-256 of the raw body}`.
Point-management companies (`X-Operator-Id`, `POINTS-OPERATOR-V1`) and partners (`X-Partner-Id`,
`POINTS-PARTNER-V1`, either of their keys during a key change) sign the same way (`authenticate_signed`).
The nonce is recorded only after the signature checks out, so nobody can burn a terminal's nonces with
forged requests; it is kept (with a TTL) past the time window in which its timestamp would be accepted.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re

from chalicelib import errors
from chalicelib.services import ports

_NONCE = re.compile(r"[0-9a-fA-F]{32}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
CLOCK_SKEW_SECONDS = 300


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes,
                    prefix: str = "POINTS-TERMINAL-V1") -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return f"{prefix}\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{body_hash}".encode("utf-8")


def signed_path(context_path: str, stage: str | None) -> str:
    """The path as the terminal signed it: from `/v1`, without API Gateway's stage prefix."""
    if stage and context_path.startswith(f"/{stage}/"):
        return context_path[len(stage) + 1:]
    return context_path


def authenticate(
    store: ports.LedgerStore, method: str, path: str, headers, body: bytes, now: float
) -> ports.Terminal:
    """A terminal request (docs/CONTRACTS.md#terminal-signature): `X-Terminal-Id` and `POINTS-TERMINAL-V1`."""
    return authenticate_signed(
        store, method, path, headers, body, now, "X-Terminal-Id", "POINTS-TERMINAL-V1", store.get_terminal,
        errors.TerminalAuthenticationFailed, "端末",
    )


def authenticate_signed(store, method: str, path: str, headers, body: bytes, now: float, id_header: str, prefix: str,
                        look_up, refusal: type[errors.DomainError], who: str):
    """The request-signature check shared by terminals, point-management companies and partners.

    `look_up(id)` returns the signer (with `active`, and `public_keys` - one key, or two while the signer
    changes keys - or else the single `public_key` of records written before rotation existed) or None; a
    signature by any of its keys verifies. Nonces are namespaced by the signer's id, so two signers never
    collide.
    """
    def header(name: str) -> str:
        value = headers.get(name) or headers.get(name.lower())
        if not value:
            raise refusal(f"{name} ヘッダーがありません。")
        return value

    signer_id = header(id_header)
    timestamp = header("X-Timestamp")
    nonce = header("X-Nonce")
    signature_text = header("X-Signature")
    if not _TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > CLOCK_SKEW_SECONDS:
        raise refusal(f"{who}の時刻がずれています。時刻を合わせてください。")
    if not _NONCE.fullmatch(nonce):
        raise refusal("X-Nonce は32桁の16進数で指定してください。")
    signer = look_up(signer_id) if len(signer_id) <= 64 else None
    if signer is None or not _field(signer, "active"):
        raise refusal(f"この{who}は登録されていないか、停止されています。")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (ValueError, binascii.Error) as error:
        raise refusal(f"{who}の署名を確認できませんでした。") from error
    message = request_message(method, path, timestamp, nonce, body, prefix)
    if not signed_by_any(_public_keys(signer), signature, message):
        raise refusal(f"{who}の署名を確認できませんでした。")
    if not store.use_nonce(f"{signer_id}#{nonce.lower()}", int(timestamp) + 2 * CLOCK_SKEW_SECONDS):
        raise refusal("同じリクエストが再送されました（nonce 使用済み）。")
    return signer


def _field(signer, name: str):
    return signer[name] if isinstance(signer, dict) else getattr(signer, name)


def _public_keys(signer) -> list[str]:
    """The signer's active keys: `public_keys` where the record has them (partners), else `public_key`."""
    keys = signer.get("public_keys") if isinstance(signer, dict) else getattr(signer, "public_keys", None)
    return list(keys) if keys else [_field(signer, "public_key")]


def signed_by_any(public_keys_base64: list[str], signature: bytes, message: bytes) -> bool:
    """Whether any of the keys (base64 of raw Ed25519 public keys) verifies the signature: a signer has two
    while it changes keys. Partners' SQS messages are checked with it too (chalicelib/services/conversions.py)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    for public_key_base64 in public_keys_base64:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_base64)).verify(signature, message)
            return True
        except (InvalidSignature, ValueError, TypeError, binascii.Error):
            # One unusable key (a malformed record) must not hide that the other one verifies.
            continue
    return False
