"""The byte strings a terminal signs (docs/CONTRACTS.md#terminal-signature, #card-signature), kept free of any server code.

`request_headers` signs one HTTP request with the terminal's Ed25519 key; `payment_message` is what the
card signs (with its PIN) for a payment above the PIN-free limit. The server rebuilds the same bytes;
a test compares the two implementations byte for byte.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import time


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return f"POINTS-TERMINAL-V1\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{body_hash}".encode("utf-8")


def payment_message(transfer_id: str, terminal_id: str, municipality_code: str, amount: int, signed_at: int) -> bytes:
    return (
        f"JPKI-PAYMENT-V1\n{transfer_id}\n{terminal_id}\n{municipality_code}\n{amount}\n{signed_at}".encode("utf-8")
    )


def request_headers(
    private_key, terminal_id: str, method: str, path: str, body: bytes,
    timestamp: int | None = None, nonce: str | None = None,
) -> dict[str, str]:
    """Headers for one request; a fresh nonce each call, so a retry is a new request with the same body."""
    timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    signature = private_key.sign(request_message(method, path, timestamp_text, nonce, body))
    return {
        "X-Terminal-Id": terminal_id,
        "X-Timestamp": timestamp_text,
        "X-Nonce": nonce,
        "X-Signature": base64.b64encode(signature).decode("ascii"),
        "Content-Type": "application/json",
    }


def load_ed25519_private_key(base64_raw: str):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(base64_raw))


def new_terminal_key() -> tuple[str, str]:
    """A new terminal key pair as (private, public), each base64 of the raw 32 bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(private).decode(), base64.b64encode(public).decode()
