"""Terminal request signatures (DESIGN §5).

Every terminal call carries `X-Terminal-Id`, `X-Timestamp`, `X-Nonce` and `X-Signature`, an Ed25519
signature with the key registered for the terminal over
`POINTS-TERMINAL-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n{hex SHA-256 of the raw body}`.
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


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return f"POINTS-TERMINAL-V1\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{body_hash}".encode("utf-8")


def signed_path(context_path: str, stage: str | None) -> str:
    """The path as the terminal signed it: from `/v1`, without API Gateway's stage prefix."""
    if stage and context_path.startswith(f"/{stage}/"):
        return context_path[len(stage) + 1:]
    return context_path


def _header(headers, name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise errors.TerminalAuthenticationFailed(f"{name} ヘッダーがありません。")
    return value


def authenticate(
    store: ports.LedgerStore, method: str, path: str, headers, body: bytes, now: float
) -> ports.Terminal:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    terminal_id = _header(headers, "X-Terminal-Id")
    timestamp = _header(headers, "X-Timestamp")
    nonce = _header(headers, "X-Nonce")
    signature_text = _header(headers, "X-Signature")
    if not _TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > CLOCK_SKEW_SECONDS:
        raise errors.TerminalAuthenticationFailed("端末の時刻がずれています。時刻を合わせてください。")
    if not _NONCE.fullmatch(nonce):
        raise errors.TerminalAuthenticationFailed("X-Nonce は32桁の16進数で指定してください。")
    terminal = store.get_terminal(terminal_id) if len(terminal_id) <= 64 else None
    if terminal is None or not terminal.active:
        raise errors.TerminalAuthenticationFailed("この端末は登録されていないか、停止されています。")
    try:
        signature = base64.b64decode(signature_text, validate=True)
        public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(terminal.public_key))
        public_key.verify(signature, request_message(method, path, timestamp, nonce, body))
    except (InvalidSignature, ValueError, binascii.Error) as error:
        raise errors.TerminalAuthenticationFailed("端末の署名を確認できませんでした。") from error
    if not store.use_nonce(f"{terminal_id}#{nonce.lower()}", int(timestamp) + 2 * CLOCK_SKEW_SECONDS):
        raise errors.TerminalAuthenticationFailed("同じリクエストが再送されました（nonce 使用済み）。")
    return terminal
