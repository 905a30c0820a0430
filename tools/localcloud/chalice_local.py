"""`chalice local`, with Nagle's algorithm off on every connection it accepts.

Chalice's development server answers with two writes, the status line and headers first and the body
after. On a kept-alive connection (the terminal client keeps one open, as it would to API Gateway) the
second small write waits for the client's delayed ACK: about 40 ms added to every response, measured on
these machines (44 ms for `GET /v1/health` against 1.4 ms with `TCP_NODELAY`). API Gateway has no such
stall, so the local stack should not have it either; `disable_nagle_algorithm` is the standard library's
switch (`socketserver.StreamRequestHandler`) for exactly this.

It also answers an HTTP method that no route can have (`PROPFIND`, `FOO`, `TRACE`) as API Gateway does,
with 405, and in the API's own error body (`{"error": {"code", "message", "request_id"}}`, as
`chalicelib.api.http.error_response` shapes it). Python's `http.server` would answer such a method
with an HTML 501 page, which no client of this API expects.

    python -m tools.localcloud.chalice_local local --host 127.0.0.1 --port 8000 --no-autoreload
"""
from __future__ import annotations

import json
import sys
import uuid

METHOD_NOT_ALLOWED_CODE = "method_not_allowed"
METHOD_NOT_ALLOWED_MESSAGE = "この HTTP メソッドは使えません。"


def answer_method_not_allowed(handler) -> None:
    """405 with the error body, for a request whose method the server has no `do_<METHOD>` for."""
    request_id = str(uuid.uuid4())
    body = json.dumps({"error": {"code": METHOD_NOT_ALLOWED_CODE, "message": METHOD_NOT_ALLOWED_MESSAGE,
                                 "request_id": request_id}}, ensure_ascii=False).encode("utf-8")
    # A body the method may have carried is not read: the connection is closed instead of resynchronised.
    handler.close_connection = True
    handler.send_response(405)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("X-Request-Id", request_id)
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _unknown_method(handler, name: str):
    # `BaseHTTPRequestHandler` looks `do_<METHOD>` up with hasattr() and answers 501 when it is missing.
    if name.startswith("do_"):
        return lambda: answer_method_not_allowed(handler)
    raise AttributeError(name)


def configure_request_handler() -> None:
    """Nagle off and unknown methods answered with 405, on the request handler `chalice local` uses."""
    import chalice.local

    chalice.local.ChaliceRequestHandler.disable_nagle_algorithm = True
    chalice.local.ChaliceRequestHandler.__getattr__ = _unknown_method


def main(arguments: list[str]) -> int:
    from chalice.cli import main as chalice_main

    configure_request_handler()
    sys.argv = ["chalice", *arguments]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
