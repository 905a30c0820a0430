"""The local stack's `chalice local` turns Nagle's algorithm off and answers unknown methods with 405
(see tools/localcloud/chalice_local.py)."""
from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading

import pytest

import chalice.cli
import chalice.config
import chalice.local

from tools.localcloud import chalice_local


def test_chalice_local__serves_with_nagle_off_and_passes_its_arguments_on(monkeypatch):
    seen = {}
    monkeypatch.setattr(chalice.local.ChaliceRequestHandler, "disable_nagle_algorithm", False)
    monkeypatch.delattr(chalice.local.ChaliceRequestHandler, "__getattr__", raising=False)
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


@pytest.fixture
def local_server(monkeypatch):
    """`chalice local`'s own server and request handler, configured as the module does, on a free port."""
    monkeypatch.setattr(chalice.local.ChaliceRequestHandler, "disable_nagle_algorithm", False)
    monkeypatch.delattr(chalice.local.ChaliceRequestHandler, "__getattr__", raising=False)
    chalice_local.configure_request_handler()
    app = chalice.Chalice(app_name="method-test")

    @app.route("/v1/health", methods=["GET"])
    def health():
        return {"status": "ok"}

    server = chalice.local.create_local_server(app, chalice.config.Config.create(chalice_app=app, stage="dev"),
                                               "127.0.0.1", 0)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server.server.server_address[1]
    server.server.shutdown()
    server.server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize("method,path", [("PROPFIND", "/v1/health"), ("FOO", "/v1/payments"), ("TRACE", "/v1/health")])
def test_chalice_local__unknown_method__answers_405_with_the_json_error_body(local_server, method, path):
    connection = http.client.HTTPConnection("127.0.0.1", local_server, timeout=10)
    try:
        connection.request(method, path, body=b"{}", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read().decode("utf-8"))
    finally:
        connection.close()
    assert response.status == 405
    assert response.getheader("Content-Type") == "application/json"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == "method_not_allowed" and body["error"]["message"] == "この HTTP メソッドは使えません。"
    assert response.getheader("X-Request-Id") == body["error"]["request_id"]


def test_chalice_local__known_method__is_still_served_by_the_app(local_server):
    connection = http.client.HTTPConnection("127.0.0.1", local_server, timeout=10)
    try:
        connection.request("GET", "/v1/health")
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    finally:
        connection.close()
