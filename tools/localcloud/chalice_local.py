"""`chalice local`, with Nagle's algorithm off on every connection it accepts.

Chalice's development server answers with two writes, the status line and headers first and the body
after. On a kept-alive connection (the terminal client keeps one open, as it would to API Gateway) the
second small write waits for the client's delayed ACK: about 40 ms added to every response, measured on
these machines (44 ms for `GET /v1/health` against 1.4 ms with `TCP_NODELAY`). API Gateway has no such
stall, so the local stack should not have it either; `disable_nagle_algorithm` is the standard library's
switch (`socketserver.StreamRequestHandler`) for exactly this.

    python -m tools.localcloud.chalice_local local --host 127.0.0.1 --port 8000 --no-autoreload
"""
from __future__ import annotations

import sys


def main(arguments: list[str]) -> int:
    import chalice.local
    from chalice.cli import main as chalice_main

    chalice.local.ChaliceRequestHandler.disable_nagle_algorithm = True
    sys.argv = ["chalice", *arguments]
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
