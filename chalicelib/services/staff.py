"""Municipal staff sign-in, sessions and roles.

Staff sign in with their id and password and receive a session token; the token is stored only as its
SHA-256 hash. A session ends on sign-out, after `idle_seconds` without a request (shared counter
terminals are the main cause of misdirected points when staff forget to sign out), and after eight
hours whatever happens. Each session is scoped to the staff member's one municipality and role, and
works the same under `chalice local` and behind API Gateway because it is checked inside the function.

Guessing passwords is slowed down per staff id: `SIGN_IN_LIMITS.max_attempts` (5) sign-ins in a row that
fail, the first of them less than `window_seconds` (15 minutes) ago, lock the id for `lock_seconds` (15
minutes), during which even the right password is refused with `staff_sign_in_locked` and the time to
wait. A successful sign-in clears the count. Every attempt is counted in storage *before* its password
is checked, by a conditional update, so parallel requests cannot get more than five passwords checked
before the lock. An id that does not exist is counted, locked and answered exactly like one that does,
and every refused sign-in is written to the audit log with its real reason (which only the audit shows).
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Callable, Protocol

from chalicelib import errors

VIEWER, OPERATOR, APPROVER = "viewer", "operator", "approver"
CALL_CENTRE, PLATFORM_OPERATOR = "call_centre", "platform_operator"
ROLES = (VIEWER, OPERATOR, APPROVER)
# Platform staff (the call centre, the platform operator) belong to no municipality.
PLATFORM = "platform"
PLATFORM_ROLES = (CALL_CENTRE, PLATFORM_OPERATOR)
_ROLE_RANK = {VIEWER: 0, OPERATOR: 1, APPROVER: 2}
SESSION_MAX_SECONDS = 8 * 3600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class StaffAccount:
    staff_id: str
    municipality_code: str
    role: str
    password_hash: str
    active: bool = True


@dataclass(frozen=True)
class StaffSession:
    session_key: str
    staff_id: str
    municipality_code: str
    role: str
    last_seen_at: int
    expires_at: int
    # The shared counter terminal the session was opened on, recorded in every audit event.
    counter_terminal_id: str | None = None


@dataclass(frozen=True)
class SignInLimits:
    """How many sign-ins in a row may fail, within how long, and how long the staff id is then locked."""

    max_attempts: int = 5
    window_seconds: int = 15 * 60
    lock_seconds: int = 15 * 60

    def __post_init__(self):
        # The first attempt of a run only starts it; the lock is taken by a later one.
        if self.max_attempts < 2:
            raise ValueError("max_attempts must be at least 2")


SIGN_IN_LIMITS = SignInLimits()


@dataclass(frozen=True)
class SignInAttempt:
    """One sign-in attempt as the store counted it.

    `number` is the attempt's place in the current run of attempts (1 to `max_attempts`): the password may
    be checked. It is 0 when the attempt was refused without a check: the id is locked until
    `locked_until`, or (`locked_until` None) the count stayed contended by parallel attempts. The last
    attempt allowed also carries `locked_until`: the lock has started and only its success lifts it.
    """

    number: int
    locked_until: int | None = None


class StaffStore(Protocol):
    def get_staff(self, staff_id: str) -> StaffAccount | None: ...
    def put_staff(self, account: StaffAccount) -> None: ...
    def count_sign_in_attempt(self, staff_id: str, now: int, limits: SignInLimits) -> SignInAttempt: ...
    def clear_sign_in_attempts(self, staff_id: str) -> None: ...
    def put_session(self, session: StaffSession) -> None: ...
    def get_session(self, session_key: str) -> StaffSession | None: ...
    def touch_session(self, session_key: str, last_seen_at: int) -> None: ...
    def delete_session(self, session_key: str) -> None: ...


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = hash_password(password, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(expected, digest_hex)


def session_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


SIGN_IN_FAILED = "staff_sign_in_failed"
# Why a sign-in was refused, for the audit log only: the caller always hears the same answer.
WRONG_PASSWORD, UNKNOWN_STAFF_ID, DISABLED, LOCKED, CONTENDED = (
    "wrong_password", "unknown_staff_id", "disabled", "locked", "contended")


@functools.lru_cache(maxsize=1)
def _decoy_password_hash() -> str:
    """A hash no password matches, checked for unknown ids so that they take as long as known ones."""
    return hash_password(secrets.token_urlsafe(24))


def _locked(limits: SignInLimits, locked_until: int, now: int) -> errors.StaffSignInLocked:
    wait = max(locked_until - now, 1)
    return errors.StaffSignInLocked(
        f"サインインに続けて{limits.max_attempts}回失敗したため、この職員IDを一時的にロックしています。"
        f"あと{math.ceil(wait / 60)}分たってから、もう一度お試しください。",
        retry_after_seconds=wait,
    )


def sign_in(store: StaffStore, staff_id: str, password: str, clock: Callable[[], float],
            counter_terminal_id: str | None = None, *, audit: Callable[..., None],
            limits: SignInLimits = SIGN_IN_LIMITS) -> tuple[str, StaffSession]:
    """A new session for `staff_id`, or a refusal that is the same whether the id exists or not.

    `audit` is the identity store's `audit(scope, action, actor, mykey_id, counter_terminal_id, details)`;
    `staff_id` and `counter_terminal_id` have been validated (no Individual Number reaches the log).
    """
    now = int(clock())
    # Counted first: a password is only ever checked within the limit, however many requests run at once.
    attempt = store.count_sign_in_attempt(staff_id, now, limits)
    account = store.get_staff(staff_id)
    # Attempts on an existing account go to its municipality's log; guesses at unknown ids to the platform's.
    scope, actor = (account.municipality_code if account else PLATFORM), f"staff:{staff_id}"

    def refused(reason: str, locked_until: int | None = None) -> None:
        details = {"reason": reason, "attempt": attempt.number}
        if locked_until is not None:
            from chalicelib.domain.time import posted_at

            details["locked_until"] = posted_at(locked_until)
        audit(scope, SIGN_IN_FAILED, actor, None, counter_terminal_id, details)

    if attempt.number == 0:
        refused(LOCKED if attempt.locked_until else CONTENDED, attempt.locked_until)
        if attempt.locked_until:
            raise _locked(limits, attempt.locked_until, now)
        raise errors.StaffAuthenticationFailed("職員IDまたはパスワードが正しくありません。")
    # An unknown id costs one scrypt too, so the time taken does not tell which staff ids exist.
    matches = password_matches(password, account.password_hash if account else _decoy_password_hash())
    if account is None or not account.active or not matches:
        refused(UNKNOWN_STAFF_ID if account is None else DISABLED if not account.active else WRONG_PASSWORD,
                attempt.locked_until)
        if attempt.locked_until:
            raise _locked(limits, attempt.locked_until, now)
        # The same refusal whether the id or the password is wrong: no hint about which staff ids exist.
        raise errors.StaffAuthenticationFailed("職員IDまたはパスワードが正しくありません。")
    store.clear_sign_in_attempts(staff_id)
    token = secrets.token_urlsafe(32)
    session = StaffSession(
        session_key=session_key(token),
        staff_id=account.staff_id,
        municipality_code=account.municipality_code,
        role=account.role,
        last_seen_at=now,
        expires_at=now + SESSION_MAX_SECONDS,
        counter_terminal_id=counter_terminal_id,
    )
    store.put_session(session)
    # Who was signed in at which counter, and when: the trail that shared counter terminals need.
    audit(session.municipality_code, "staff_sign_in", f"staff:{session.staff_id}", None, counter_terminal_id)
    return token, session


def authenticate(store: StaffStore, token: str | None, idle_seconds: int, clock: Callable[[], float],
                 touch: bool = True) -> StaffSession:
    """The session behind `token`, if it is live and its account still enabled.

    With `touch=False` the caller records the activity itself (`touch_session`) once the request is
    allowed: a refused request is not activity and writes nothing.
    """
    if not token:
        raise errors.StaffAuthenticationFailed()
    now = int(clock())
    session = store.get_session(session_key(token))
    if session is None:
        raise errors.StaffAuthenticationFailed()
    if now - session.last_seen_at > idle_seconds or now >= session.expires_at:
        store.delete_session(session.session_key)
        raise errors.StaffAuthenticationFailed("一定時間操作がなかったためサインアウトしました。もう一度サインインしてください。")
    account = store.get_staff(session.staff_id)
    # A disabled account's open sessions end at once, not when they would have timed out.
    if account is None or not account.active:
        store.delete_session(session.session_key)
        raise errors.StaffAuthenticationFailed()
    if touch:
        store.touch_session(session.session_key, now)
    return session


def touch_session(store: StaffStore, session: StaffSession, clock: Callable[[], float]) -> None:
    store.touch_session(session.session_key, int(clock()))


def authorize(session: StaffSession, municipality_code: str, minimum_role: str) -> None:
    """Staff act only on their own municipality, and only with a role at least `minimum_role`."""
    if session.municipality_code != municipality_code:
        raise errors.StaffForbidden("他の自治体のデータにはアクセスできません。")
    if _ROLE_RANK.get(session.role, -1) < _ROLE_RANK[minimum_role]:
        raise errors.StaffForbidden()


def authorize_platform(session: StaffSession, roles: tuple[str, ...]) -> None:
    if session.municipality_code != PLATFORM or session.role not in roles:
        raise errors.StaffForbidden()


def authorize_for_resident(session: StaffSession, home_municipality_code: str, platform_roles: tuple[str, ...]) -> None:
    """Platform staff with one of `platform_roles` act for any resident; municipal operators for their own."""
    if session.municipality_code == PLATFORM:
        authorize_platform(session, platform_roles)
    else:
        authorize(session, home_municipality_code, OPERATOR)


MIN_PASSWORD_LENGTH = 12


def change_password(store: StaffStore, session: StaffSession, current_password: str, new_password: str) -> None:
    """A staff member replaces their password (the first one was handed over by someone else)."""
    account = store.get_staff(session.staff_id)
    if account is None or not password_matches(current_password, account.password_hash):
        raise errors.StaffAuthenticationFailed("現在のパスワードが正しくありません。")
    if len(new_password) < MIN_PASSWORD_LENGTH or new_password == current_password:
        raise errors.ValidationFailed(f"新しいパスワードは現在と異なる{MIN_PASSWORD_LENGTH}文字以上にしてください。",
                                      field="new_password")
    store.set_password(account.staff_id, hash_password(new_password))


def sign_out(store: StaffStore, token: str) -> None:
    store.delete_session(session_key(token))
