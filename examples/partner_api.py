"""A small client for the partner read API of the Municipal Point Cloud: each request signed with the
partner's Ed25519 key (`POINTS-PARTNER-V1`), sent with the standard library, its JSON answer parsed.

    from partner_api import PartnerApi
    api = PartnerApi.from_partner_file("partner.json", "https://<api id>.execute-api.ap-northeast-1.amazonaws.com/v/")
    page = api.conversion_inquiries(date="2026-12-01")           # this partner's decisions that Japan day
    answer = api.conversion_inquiries(partner_txn_ids=["t-1"])    # or up to 100 transactions by id
    statement = api.statement("2026-12")                          # or api.statement("2026-12", csv=True)

The signed text is `POINTS-PARTNER-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n{hex SHA-256 of the body}`,
where PATH starts at `/v1` (without the base URL's stage `/v/`, without the query string). Every request
gets a fresh timestamp and nonce: a retry is a new request with the same body. See docs/PARTNERS.md §15.
Needs only cryptography.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNATURE_PREFIX = "POINTS-PARTNER-V1"
INQUIRY_PATH = "/v1/partner/conversion-inquiries"
MAX_IDS_PER_INQUIRY = 100

# transport(method, url, headers, body) -> (HTTP status, answer bytes). The default sends with urllib;
# tests pass their own to reach an application in-process.
Transport = Callable[[str, str, dict, bytes], tuple[int, bytes]]


class PartnerApiError(Exception):
    """A non-2xx answer: `code`, `message` and `field` come from the platform's error body."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None, field: str | None = None):
        super().__init__(f"HTTP {status} {code}: {message}" + (f" (field {field})" if field else "")
                         + (f" (request_id {request_id})" if request_id else ""))
        self.status, self.code, self.message, self.request_id, self.field = status, code, message, request_id, field


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{SIGNATURE_PREFIX}\n{method.upper()}\n{path}\n{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}".encode("utf-8")


def urllib_transport(timeout_seconds: float = 30) -> Transport:
    def send(method: str, url: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(url, method=method, headers=headers, data=body if body else None)
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:  # a 4xx or 5xx still has the platform's error body
            return error.code, error.read()

    return send


class PartnerApi:
    def __init__(self, base_url: str, partner_id: str, private_key_base64: str, transport: Transport | None = None):
        self.base_url = base_url.rstrip("/")
        self.partner_id = partner_id
        self._key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(private_key_base64))
        self._transport = transport or urllib_transport()

    @classmethod
    def from_partner_file(cls, path: str, base_url: str, transport: Transport | None = None) -> "PartnerApi":
        with open(path, encoding="utf-8") as handle:
            partner = json.load(handle)
        return cls(base_url, partner["partner_id"], partner["private_key"], transport)

    def headers(self, method: str, path: str, body: bytes, timestamp: int | None = None,
                nonce: str | None = None) -> dict[str, str]:
        """The four signature headers (and the content type); a fresh timestamp and nonce unless given."""
        timestamp, nonce = str(int(time.time()) if timestamp is None else timestamp), nonce or secrets.token_hex(16)
        signature = self._key.sign(request_message(method, path, timestamp, nonce, body))
        return {"X-Partner-Id": self.partner_id, "X-Timestamp": timestamp, "X-Nonce": nonce,
                "X-Signature": base64.b64encode(signature).decode("ascii"), "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: dict | None = None, query: dict | None = None,
             text: bool = False) -> dict | str:
        """Send one signed request: its parsed JSON answer (with `text`, the answer as text), or PartnerApiError."""
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        status, answer = self._transport(method.upper(), url, self.headers(method, path, raw), raw)
        if not 200 <= status < 300:
            raise _error(status, answer)
        return answer.decode("utf-8") if text else json.loads(answer.decode("utf-8"))

    def conversion_inquiries(self, *, date: str | None = None, cursor: str | None = None,
                             partner_txn_ids: list[str] | None = None) -> dict:
        """One page of a Japan day's decisions (pass the previous page's `cursor` for the next), or the
        outcome of 1–100 transactions by id (`unknown` for one the platform never received)."""
        if partner_txn_ids is not None:
            return self.call("POST", INQUIRY_PATH, {"partner_txn_ids": list(partner_txn_ids)})
        return self.call("POST", INQUIRY_PATH, {"date": date, "cursor": cursor})

    def day_conversions(self, date: str) -> list[dict]:
        """Every decision of that Japan day, all pages."""
        conversions, cursor = [], None
        while True:
            page = self.conversion_inquiries(date=date, cursor=cursor)
            conversions.extend(page["conversions"])
            cursor = page.get("cursor")
            if not cursor:
                return conversions

    def statement(self, month: str, csv: bool = False) -> dict | str:
        """The monthly statement (`YYYY-MM`): JSON, or the CSV text for Excel (its BOM kept: write it as it is)."""
        if csv:
            return self.call("GET", f"/v1/partner/statements/{month}", query={"format": "csv"}, text=True)
        return self.call("GET", f"/v1/partner/statements/{month}")


def _error(status: int, answer: bytes) -> PartnerApiError:
    try:
        error = json.loads(answer.decode("utf-8"))["error"]
        return PartnerApiError(status, error["code"], error["message"], error.get("request_id"), error.get("field"))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        # Not the platform's error body (a proxy or API Gateway answering): show what came back.
        return PartnerApiError(status, "unexpected_answer", answer[:200].decode("utf-8", "replace"))
