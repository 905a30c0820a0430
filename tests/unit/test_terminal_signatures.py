"""Terminal request signatures against the in-memory store: every refusal is the same 401 code."""
import pytest

from chalicelib import errors
from chalicelib.auth import terminals
from terminal_client.signing import request_headers
from tests.fakes import FakeLedgerStore
from tests.world import NOW, build_world


@pytest.fixture
def world():
    return build_world(FakeLedgerStore(), seed=11)


def _headers(world, **overrides):
    headers = request_headers(world.shop.private_key, world.shop.terminal_id, "POST", "/v1/payments", b"{}", timestamp=int(NOW))
    headers.update(overrides)
    return headers


def test_valid_signature__returns_the_terminal_and_spends_the_nonce(world):
    headers = _headers(world)
    terminal = terminals.authenticate(world.store, "POST", "/v1/payments", headers, b"{}", NOW)
    assert terminal.terminal_id == world.shop.terminal_id
    assert f"{world.shop.terminal_id}#{headers['X-Nonce']}" in world.store.nonces
    with pytest.raises(errors.TerminalAuthenticationFailed):
        terminals.authenticate(world.store, "POST", "/v1/payments", headers, b"{}", NOW)


@pytest.mark.parametrize("timestamp", ["²", "1e9", "-1795000000", " 1795000000", "1795000000\n"])
def test_malformed_timestamp__is_refused_not_a_server_error(world, timestamp):
    with pytest.raises(errors.TerminalAuthenticationFailed):
        terminals.authenticate(world.store, "POST", "/v1/payments", _headers(world, **{"X-Timestamp": timestamp}), b"{}", NOW)
    assert world.store.nonces == {}


def test_body_changed_after_signing__is_refused(world):
    with pytest.raises(errors.TerminalAuthenticationFailed):
        terminals.authenticate(world.store, "POST", "/v1/payments", _headers(world), b'{"amount":1}', NOW)
    assert world.store.nonces == {}


def test_signature_of_another_terminal__is_refused(world):
    forged = request_headers(world.facility.private_key, world.shop.terminal_id, "POST", "/v1/payments", b"{}", timestamp=int(NOW))
    with pytest.raises(errors.TerminalAuthenticationFailed):
        terminals.authenticate(world.store, "POST", "/v1/payments", forged, b"{}", NOW)
