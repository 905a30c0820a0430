"""The local stack's `chalice local` turns Nagle's algorithm off (see tools/localcloud/chalice_local.py)."""
from __future__ import annotations

import socket
import socketserver

import chalice.cli
import chalice.local

from tools.localcloud import chalice_local


def test_chalice_local__serves_with_nagle_off_and_passes_its_arguments_on(monkeypatch):
    seen = {}
    monkeypatch.setattr(chalice.local.ChaliceRequestHandler, "disable_nagle_algorithm", False)
    monkeypatch.setattr(chalice.cli, "main", lambda: seen.setdefault("argv", list(chalice_local.sys.argv)) and 0)

    assert chalice_local.main(["local", "--port", "8123", "--no-autoreload"]) == 0

    assert chalice.local.ChaliceRequestHandler.disable_nagle_algorithm is True
    assert seen["argv"] == ["chalice", "local", "--port", "8123", "--no-autoreload"]


def test_request_handler__with_nagle_off__sets_tcp_nodelay_on_the_connection(monkeypatch):
    # The switch the module flips is the standard library's: StreamRequestHandler.setup() applies it.
    monkeypatch.setattr(chalice.local.ChaliceRequestHandler, "disable_nagle_algorithm", True)
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        handler = object.__new__(chalice.local.ChaliceRequestHandler)
        handler.request, handler.connection = accepted, accepted
        socketserver.StreamRequestHandler.setup(handler)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        client.close()
        accepted.close()
    finally:
        listener.close()
