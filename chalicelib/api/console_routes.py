"""The staff console: one Japanese HTML page for municipal staff, served by the app itself.

The page (`chalicelib/web/console.html`) carries its script and styles inline and loads nothing from
elsewhere: no framework, no CDN, no plug-in, no card reader — any modern browser at a counter will do.
It calls the existing staff JSON API on the same origin with the session's bearer token, which it keeps
in memory only.

The Content-Security-Policy admits exactly the page's own inline script and style (by their SHA-256
hashes, computed from the file when it is first served), API calls to the same origin, and `data:`/
`blob:` images; nothing else may load, no form may submit anywhere, and no other site may frame it.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from chalice import Blueprint, Response

from chalicelib.api.http import endpoint

console_api = Blueprint(__name__)

PAGE_PATH = Path(__file__).resolve().parent.parent / "web" / "console.html"
_INLINE = {"script": re.compile(r"<script>(.*?)</script>", re.DOTALL), "style": re.compile(r"<style>(.*?)</style>", re.DOTALL)}


def _hashes(page: str, element: str) -> str:
    sources = []
    for content in _INLINE[element].findall(page):
        digest = base64.b64encode(hashlib.sha256(content.encode("utf-8")).digest()).decode("ascii")
        sources.append(f"'sha256-{digest}'")
    return " ".join(sources) or "'none'"


@functools.lru_cache(maxsize=1)
def _page() -> tuple[str, str]:
    page = PAGE_PATH.read_text(encoding="utf-8")
    policy = "; ".join((
        "default-src 'none'",
        f"script-src {_hashes(page, 'script')}",
        f"style-src {_hashes(page, 'style')}",
        "img-src data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ))
    return page, policy


@console_api.route("/console", methods=["GET"])
@endpoint(console_api)
def console_page():
    page, policy = _page()
    return Response(body=page, status_code=200, headers={
        "Content-Type": "text/html; charset=utf-8",
        # Only the page's own inline script and style, and calls to this origin: no CDN, no plug-in.
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    })
