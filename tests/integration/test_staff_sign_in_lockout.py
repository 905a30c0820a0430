"""Staff sign-in lockout through the Chalice app on DynamoDB Local, and the audit of refused sign-ins.

Five failures in a row lock a staff id for fifteen minutes (`429 staff_sign_in_locked`, `Retry-After`,
the minutes in the message), even against the right password; a success clears the count; an unknown
id is counted and answered the same way; twenty parallel attempts get no more than five passwords
checked (the conditional updates of `DynamoStaffStore.count_sign_in_attempt`); and every refusal is in
the audit log with its real reason, the id as typed and the counter terminal.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from tests.conftest import REGION
from tests.world import STAFF_PASSWORD

pytestmark = pytest.mark.integration

WRONG = "not the password"
LOCKED_MESSAGE = "サインインに続けて5回失敗したため、この職員IDを一時的にロックしています。あと{}分たってから、もう一度お試しください。"


@pytest.fixture
def frozen_clock(http):
    """The API's clock, held at a whole second the test moves on by hand."""
    from chalicelib.api import dependencies

    class Clock:
        now = int(time.time())

        def __call__(self):
            return self.now

    clock = Clock()
    dependencies.override(clock=clock)
    return clock


def _sign_in(http, staff_id: str, password: str, counter_terminal_id: str | None = None):
    body = {"staff_id": staff_id, "password": password}
    if counter_terminal_id:
        body["counter_terminal_id"] = counter_terminal_id
    return http.client.http.post("/v1/staff/sessions", headers={"Content-Type": "application/json"},
                                 body=json.dumps(body).encode())


def _seen(response) -> tuple:
    """Everything a caller can tell from a refusal but its request id."""
    error = response.json_body["error"]
    return response.status_code, error["code"], error["message"], response.headers.get("Retry-After")


def _staff_id(http, role: str = "operator") -> str:
    return f"{role}-{http.world.home_code}-{http.world.staff_suffix}"


def _failures(scope: str, actor: str) -> list[dict]:
    from chalicelib.storage.identity import DynamoIdentityStore

    events = DynamoIdentityStore(REGION).audit_events(scope, limit=1000)
    return sorted((e for e in events if e["actor"] == actor and e["action"] == "staff_sign_in_failed"),
                  key=lambda e: e["occurred_at"])


def test_sign_in__five_failures_in_a_row__lock_the_id_with_retry_after_and_the_wait_in_the_message(http, frozen_clock):
    staff_id = _staff_id(http)
    answers = [_seen(_sign_in(http, staff_id, WRONG)) for _ in range(5)]
    assert [answer[0] for answer in answers[:4]] == [401] * 4
    assert answers[4] == (429, "staff_sign_in_locked", LOCKED_MESSAGE.format(15), "900")
    frozen_clock.now += 61
    assert _seen(_sign_in(http, staff_id, STAFF_PASSWORD)) == (429, "staff_sign_in_locked", LOCKED_MESSAGE.format(14), "839")


def test_sign_in__after_the_lock_ends__the_right_password_signs_in(http, frozen_clock):
    staff_id = _staff_id(http)
    for _ in range(5):
        _sign_in(http, staff_id, WRONG)
    frozen_clock.now += 899
    assert _sign_in(http, staff_id, STAFF_PASSWORD).status_code == 429
    frozen_clock.now += 1
    assert _sign_in(http, staff_id, STAFF_PASSWORD).status_code == 201


def test_sign_in__success__resets_the_count_and_removes_the_stored_attempts(http, frozen_clock):
    from chalicelib.storage.models import StaffSessionModel
    from chalicelib.storage.staff import ATTEMPTS_PREFIX

    staff_id = _staff_id(http)
    assert [_sign_in(http, staff_id, WRONG).status_code for _ in range(4)] == [401] * 4
    stored = StaffSessionModel.get(ATTEMPTS_PREFIX + staff_id, consistent_read=True)
    assert (stored.attempts, stored.locked_until) == (4, None)
    # It disappears by itself: the table's TTL attribute, after the window and a lock's length.
    assert stored.expires_at == frozen_clock.now + 30 * 60
    assert _sign_in(http, staff_id, STAFF_PASSWORD).status_code == 201
    with pytest.raises(StaffSessionModel.DoesNotExist):
        StaffSessionModel.get(ATTEMPTS_PREFIX + staff_id, consistent_read=True)
    assert [_sign_in(http, staff_id, WRONG).status_code for _ in range(5)] == [401] * 4 + [429]


def test_sign_in__unknown_id__is_counted_locked_and_answered_like_a_known_one(http, frozen_clock):
    staff_id, nobody = _staff_id(http), f"nobody-{uuid.uuid4().hex[:8]}"
    known = [_seen(_sign_in(http, staff_id, WRONG)) for _ in range(6)]
    unknown = [_seen(_sign_in(http, nobody, WRONG)) for _ in range(6)]
    assert known == unknown
    assert [status for status, *_ in known] == [401] * 4 + [429] * 2


def test_sign_in__twenty_parallel_wrong_attempts__check_no_more_than_five_passwords(http, dynamo_staff_store, monkeypatch):
    from chalicelib import errors
    from chalicelib.services import staff
    from chalicelib.storage.identity import DynamoIdentityStore

    staff_id = _staff_id(http)
    checked, outcomes, guard = [], [], threading.Lock()
    original = staff.password_matches

    def counted(password, stored):
        with guard:
            checked.append(password)
        return original(password, stored)

    monkeypatch.setattr(staff, "password_matches", counted)
    audit = DynamoIdentityStore(REGION).audit
    dynamo_staff_store.get_staff(staff_id)  # the connection is opened before the threads share it
    start = threading.Barrier(20)

    def attacker():
        start.wait()
        try:
            staff.sign_in(dynamo_staff_store, staff_id, WRONG, time.time, "counter-7", audit=audit)
        except errors.DomainError as refusal:
            with guard:
                outcomes.append(refusal.code)

    threads = [threading.Thread(target=attacker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) == 5
    assert sorted(outcomes) == sorted(["staff_authentication_failed"] * 4 + ["staff_sign_in_locked"] * 16)
    with pytest.raises(errors.StaffSignInLocked):
        staff.sign_in(dynamo_staff_store, staff_id, STAFF_PASSWORD, time.time, audit=audit)
    reasons = [event["details"]["reason"] for event in _failures(http.world.home_code, f"staff:{staff_id}")]
    assert sorted(reasons) == ["locked"] * 16 + ["wrong_password"] * 5


def test_sign_in__refusals__are_audited_with_reason_id_as_typed_and_counter_terminal(http, frozen_clock):
    staff_id, unknown = _staff_id(http, "viewer"), f"nobody-{uuid.uuid4().hex[:8]}"
    for _ in range(5):
        _sign_in(http, staff_id, WRONG, "madoguchi-2")
    _sign_in(http, staff_id, STAFF_PASSWORD, "madoguchi-2")
    _sign_in(http, unknown, WRONG, "madoguchi-3")
    known = _failures(http.world.home_code, f"staff:{staff_id}")
    assert [(e["counter_terminal_id"], e["details"]["reason"], e["details"]["attempt"]) for e in known] == (
        [("madoguchi-2", "wrong_password", n) for n in range(1, 6)] + [("madoguchi-2", "locked", 0)])
    assert known[4]["details"]["locked_until"] == known[5]["details"]["locked_until"]
    # An id that does not exist belongs to no municipality: its attempts are in the platform's log.
    guessed = _failures("platform", f"staff:{unknown}")
    assert [(e["counter_terminal_id"], e["details"]["reason"]) for e in guessed] == [("madoguchi-3", "unknown_staff_id")]
    assert _failures(http.world.home_code, f"staff:{unknown}") == []


def test_sign_in__individual_number_as_staff_id__is_refused_before_anything_is_counted_or_logged(http, table_snapshot):
    before = table_snapshot()
    response = _sign_in(http, "123456789018", WRONG, "counter-1")
    assert response.status_code == 400 and response.json_body["error"]["code"] == "individual_number_forbidden"
    assert table_snapshot() == before
