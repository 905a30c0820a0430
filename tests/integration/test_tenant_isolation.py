"""Tenant isolation: every staff endpoint of a municipality, called with another municipality's credentials.

The routes come from the app itself, so an endpoint added later is covered without touching this file.
Each call must answer 403 `staff_forbidden`, write nothing to any table (DynamoDB Local, compared item
by item), and read nothing of the municipality (every store call is recorded; only the caller's own
session and account may be looked at). The same call made by the municipality's own approver is the
control: it must not be refused as forbidden, or the 403 would prove nothing.
"""
from __future__ import annotations

import base64
import uuid

import pytest

import app as application
from chalicelib.api import dependencies as deps

pytestmark = pytest.mark.integration

MUNICIPALITY_PREFIX = "/v1/municipalities/{code}"
STAFF_ROUTES = sorted(
    (path, method)
    for path, methods in application.app.routes.items() if path.startswith(MUNICIPALITY_PREFIX)
    for method in methods
)
CALLER_LOOKUPS = {("staff_store", "get_session"), ("staff_store", "get_staff")}


def test_staff_routes__cover_every_administration_area():
    covered = {path[len(MUNICIPALITY_PREFIX):].split("/")[1] for path, _ in STAFF_ROUTES}
    assert {"programme", "budget", "merchants", "terminals", "grants", "grant-batches", "approvals", "reports",
            "audit-events", "staff", "residents"} <= covered


class Recorder:
    """Wraps a store and writes down every method called on it."""

    def __init__(self, name: str, inner, calls: list):
        self._name, self._inner, self._calls = name, inner, calls

    def __getattr__(self, attribute):
        value = getattr(self._inner, attribute)
        if callable(value):
            def recorded(*arguments, **keywords):
                self._calls.append((self._name, attribute))
                return value(*arguments, **keywords)
            return recorded
        return value


def _body(path: str, method: str, world) -> dict | None:
    """A request that would change something if it were allowed."""
    if method == "GET":
        return None
    public_key = base64.b64encode(bytes(range(32))).decode()
    bodies = {
        "/grants": {"grant_id": str(uuid.uuid4()), "mykey_id": "ABCD2345", "amount": 100, "reason": "越境テスト"},
        "/grant-batches": {"file_name": "x.csv", "content_base64": base64.b64encode(
            "申請番号,マイキーID,ポイント,付与理由\r\nX-1,ABCD2345,100,越境\r\n".encode()).decode()},
        "/merchants": {"merchant_id": f"intruder-{uuid.uuid4().hex[:8]}", "name": "侵入商店", "kind": "shop"},
        "/terminals": {"terminal_id": f"intruder-{uuid.uuid4().hex[:8]}", "public_key": public_key},
        "/staff": {"staff_id": f"intruder-{uuid.uuid4().hex[:8]}", "role": "approver"},
        "/programme": {"pin_free_limit": 0},
        "/reject": {"note": "越境"},
    }
    for suffix, body in bodies.items():
        if path.endswith(suffix):
            return body
    return {}


def _fill(path: str, world, code: str) -> str:
    return (path.replace("{code}", code)
            .replace("{merchant_id}", world.shop.merchant_id)
            .replace("{terminal_id}", world.shop.terminal_id)
            .replace("{approval_id}", str(uuid.uuid4()))
            .replace("{batch_id}", str(uuid.uuid4()))
            .replace("{mykey_id}", "ABCD2345")
            .replace("{staff_id}", f"viewer-{code}-{world.staff_suffix}"))


@pytest.mark.parametrize("path,method", STAFF_ROUTES, ids=[f"{m} {p}" for p, m in STAFF_ROUTES])
def test_staff_of_another_municipality__is_refused_with_nothing_read_or_written(http, table_snapshot, path, method):
    world = http.world
    intruder = http.sign_in("approver", code=world.other_code)
    owner = http.sign_in("approver")
    target = _fill(path, world, world.home_code)
    body = _body(path, method, world)

    calls: list = []
    stores = {name: Recorder(name, getter(), calls) for name, getter in (
        ("ledger_store", deps.get_ledger_store), ("staff_store", deps.get_staff_store),
        ("identity_store", deps.get_identity_store), ("grant_batch_store", deps.get_grant_batch_store),
        ("grant_batch_queue", deps.get_grant_batch_queue))}
    deps.override(**stores)
    before = table_snapshot()
    response = http.staff(intruder, method, target, body)
    after = table_snapshot()

    assert response.status_code == 403, response.body
    assert response.json_body["error"]["code"] == "staff_forbidden"
    assert after == before
    assert set(calls) <= CALLER_LOOKUPS, calls

    # The control: the municipality's own approver is not refused as forbidden by the same route.
    control = http.staff(owner, method, target, body)
    assert control.status_code != 403 or control.json_body["error"]["code"] != "staff_forbidden", control.body
