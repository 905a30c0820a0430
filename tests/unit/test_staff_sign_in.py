"""Staff sign-in lockout and the audit of refused sign-ins, on the in-memory staff store.

Five sign-ins in a row that fail for one staff id lock it for fifteen minutes (the fifth already answers
the lockout); a success clears the count; an unknown id is counted, locked and answered like a known one;
every refusal is audited with its real reason. The DynamoDB store's conditional updates are exercised
by tests/integration/test_staff_sign_in_lockout.py.
"""
from __future__ import annotations

import threading

import pytest

from chalicelib import errors
from chalicelib.services import staff
from tests.fakes import FakeStaffStore

PASSWORD = "correct horse battery staple"
START = 1_800_000_000
# scrypt at its real cost takes a noticeable moment per check; these tests are about counting, not hashing.
CHEAP_SCRYPT = {"n": 2**4, "r": 8, "p": 1}


class Clock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


class AuditLog(list):
    def __call__(self, scope, action, actor, mykey_id=None, counter_terminal_id=None, details=None):
        self.append({"scope": scope, "action": action, "actor": actor, "counter_terminal_id": counter_terminal_id,
                     "details": details})


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch):
    monkeypatch.setattr(staff, "_SCRYPT", CHEAP_SCRYPT)
    staff._decoy_password_hash.cache_clear()
    yield
    staff._decoy_password_hash.cache_clear()


@pytest.fixture
def password_hash():
    return staff.hash_password(PASSWORD)


@pytest.fixture
def store(password_hash):
    store = FakeStaffStore()
    store.put_staff(staff.StaffAccount("clerk-1", "252034", staff.OPERATOR, password_hash))
    return store


def _attempt(store, audit, clock, staff_id="clerk-1", password="wrong password", counter="counter-3"):
    """The refusal a sign-in raised, or the session it opened."""
    try:
        return staff.sign_in(store, staff_id, password, clock, counter, audit=audit)[1]
    except errors.DomainError as refusal:
        return refusal


def _answer(outcome) -> tuple:
    """What the caller sees of a refusal: status, code, message and the Retry-After seconds."""
    return outcome.status, outcome.code, outcome.message, outcome.details.get("retry_after_seconds")


def test_sign_in__fifth_failure_in_a_row__locks_the_id_and_says_to_wait_fifteen_minutes(store):
    audit, clock = AuditLog(), Clock()
    answers = [_answer(_attempt(store, audit, clock)) for _ in range(5)]
    assert answers[:4] == [(401, "staff_authentication_failed", "職員IDまたはパスワードが正しくありません。", None)] * 4
    assert answers[4] == (429, "staff_sign_in_locked",
                          "サインインに続けて5回失敗したため、この職員IDを一時的にロックしています。"
                          "あと15分たってから、もう一度お試しください。", 900)


def test_sign_in__right_password_while_locked__is_refused_with_the_time_left(store):
    audit, clock = AuditLog(), Clock()
    for _ in range(5):
        _attempt(store, audit, clock)
    clock.now = START + 61
    refusal = _attempt(store, audit, clock, password=PASSWORD)
    assert _answer(refusal) == (429, "staff_sign_in_locked",
                                "サインインに続けて5回失敗したため、この職員IDを一時的にロックしています。"
                                "あと14分たってから、もう一度お試しください。", 839)
    assert store.sessions == {}
    clock.now = START + 899
    assert "あと1分たってから" in _attempt(store, audit, clock, password=PASSWORD).message


def test_sign_in__once_the_lock_has_ended__the_right_password_works_and_clears_the_count(store):
    audit, clock = AuditLog(), Clock()
    for _ in range(5):
        _attempt(store, audit, clock)
    clock.now = START + 900
    session = _attempt(store, audit, clock, password=PASSWORD)
    assert isinstance(session, staff.StaffSession) and session.staff_id == "clerk-1"
    assert store.sign_in_attempts == {}


def test_sign_in__success__clears_the_count_of_earlier_failures(store):
    audit, clock = AuditLog(), Clock()
    for _ in range(4):
        _attempt(store, audit, clock)
    assert isinstance(_attempt(store, audit, clock, password=PASSWORD), staff.StaffSession)
    # Four more failures are four in a row again, not eight: still no lock.
    assert [_attempt(store, audit, clock).code for _ in range(4)] == ["staff_authentication_failed"] * 4
    assert _attempt(store, audit, clock).code == "staff_sign_in_locked"


def test_sign_in__failures_spread_over_more_than_fifteen_minutes__start_counting_again(store):
    audit, clock = AuditLog(), Clock()
    for _ in range(4):
        _attempt(store, audit, clock)
    clock.now = START + 15 * 60
    assert [_attempt(store, audit, clock).code for _ in range(4)] == ["staff_authentication_failed"] * 4
    assert [event["details"]["attempt"] for event in audit] == [1, 2, 3, 4, 1, 2, 3, 4]


def test_sign_in__unknown_or_disabled_id__is_answered_and_locked_exactly_like_a_known_one(store, password_hash):
    store.put_staff(staff.StaffAccount("clerk-2", "252034", staff.OPERATOR, password_hash, active=False))
    audit, clock = AuditLog(), Clock()
    known = [_answer(_attempt(store, audit, clock, "clerk-1")) for _ in range(6)]
    unknown = [_answer(_attempt(store, audit, clock, "nobody-here")) for _ in range(6)]
    disabled = [_answer(_attempt(store, audit, clock, "clerk-2", PASSWORD)) for _ in range(6)]
    assert known == unknown == disabled
    assert [code for _, code, _, _ in known] == ["staff_authentication_failed"] * 4 + ["staff_sign_in_locked"] * 2


def test_sign_in__unknown_id__costs_a_password_check_like_a_known_one(store, password_hash, monkeypatch):
    checked = []
    original = staff.password_matches
    monkeypatch.setattr(staff, "password_matches", lambda password, stored: checked.append(stored) or original(password, stored))
    audit, clock = AuditLog(), Clock()
    _attempt(store, audit, clock, "nobody-here")
    _attempt(store, audit, clock, "clerk-1")
    assert len(checked) == 2 and checked[0].startswith("scrypt$") and checked[0] != password_hash


def test_sign_in__every_refusal__is_audited_with_its_real_reason_terminal_and_attempt(store, password_hash):
    store.put_staff(staff.StaffAccount("clerk-2", "252034", staff.OPERATOR, password_hash, active=False))
    audit, clock = AuditLog(), Clock()
    for _ in range(5):
        _attempt(store, audit, clock, "clerk-1")
    _attempt(store, audit, clock, "clerk-1", PASSWORD)
    _attempt(store, audit, clock, "nobody-here", counter="counter-9")
    _attempt(store, audit, clock, "clerk-2", PASSWORD, counter=None)
    assert {event["action"] for event in audit} == {"staff_sign_in_failed"}
    assert [(e["scope"], e["actor"], e["counter_terminal_id"], e["details"]["reason"], e["details"]["attempt"]) for e in audit] == (
        [("252034", "staff:clerk-1", "counter-3", "wrong_password", n) for n in range(1, 6)]
        + [("252034", "staff:clerk-1", "counter-3", "locked", 0),
           ("platform", "staff:nobody-here", "counter-9", "unknown_staff_id", 1),
           ("252034", "staff:clerk-2", None, "disabled", 1)])
    # The failure that started the lock and the attempt refused by it both say until when (UTC).
    assert audit[4]["details"]["locked_until"] == audit[5]["details"]["locked_until"] == "2027-01-15T08:15:00.000Z"
    assert "locked_until" not in audit[3]["details"]
    assert "wrong password" not in repr(audit) and PASSWORD not in repr(audit)  # no typed password is kept


def test_sign_in__success__is_audited_with_the_counter_terminal(store):
    audit, clock = AuditLog(), Clock()
    _attempt(store, audit, clock, password=PASSWORD, counter="madoguchi-1")
    assert audit == [{"scope": "252034", "action": "staff_sign_in", "actor": "staff:clerk-1",
                      "counter_terminal_id": "madoguchi-1", "details": None}]


def test_sign_in__twenty_parallel_wrong_attempts__check_at_most_five_passwords(store, monkeypatch):
    checked = []
    original = staff.password_matches
    monkeypatch.setattr(staff, "password_matches", lambda password, stored: checked.append(1) or original(password, stored))
    audit, clock = AuditLog(), Clock()
    start = threading.Barrier(20)
    outcomes = []

    def attacker():
        start.wait()
        outcomes.append(_attempt(store, audit, clock).code)

    threads = [threading.Thread(target=attacker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) == 5
    assert sorted(outcomes) == sorted(["staff_authentication_failed"] * 4 + ["staff_sign_in_locked"] * 16)
    assert _attempt(store, audit, clock, password=PASSWORD).code == "staff_sign_in_locked"


def test_sign_in_limits__fewer_than_two_attempts__are_refused():
    with pytest.raises(ValueError):
        staff.SignInLimits(max_attempts=1)
