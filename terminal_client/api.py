"""HTTP calls to the platform, each signed with the terminal's Ed25519 key (docs/CONTRACTS.md#terminal-signature)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from terminal_client.signing import request_headers

SEND_ATTEMPTS = 3
TIMEOUT_SECONDS = 10


class Unreachable(Exception):
    """No answer from the server: the request may or may not have been processed."""


class ApiClient:
    def __init__(self, base_url: str, terminal_id: str, private_key, retry_pause_seconds: float = 1.0):
        self.base_url = base_url.rstrip("/")
        self.terminal_id = terminal_id
        self._private_key = private_key
        self._retry_pause_seconds = retry_pause_seconds

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None,
             signed: bool = True) -> tuple[int, dict]:
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        all_headers = dict(headers or {})
        if signed:
            all_headers.update(request_headers(self._private_key, self.terminal_id, method, path, raw))
        elif raw:
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=raw or None, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                text = response.read().decode("utf-8")
                return response.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8")
            try:
                return error.code, json.loads(text) if text else {}
            except json.JSONDecodeError:
                return error.code, {"error": {"code": "http_error", "message": text[:200]}}
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            raise Unreachable(str(error)) from error

    def call_with_retries(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        """The same body again after a lost answer, each time with a fresh request signature."""
        for attempt in range(SEND_ATTEMPTS):
            try:
                return self.call(method, path, body)
            except Unreachable:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                time.sleep(self._retry_pause_seconds * (attempt + 1))
        raise AssertionError("unreachable")
