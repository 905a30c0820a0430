"""Staff accounts, sessions and the count of sign-in attempts on DynamoDB (`StaffStore`)."""
from __future__ import annotations

from pynamodb.exceptions import UpdateError

from chalicelib.services.staff import SignInAttempt, SignInLimits, StaffAccount, StaffSession
from chalicelib.storage.conditional import save_if_absent
from chalicelib.storage.models import StaffModel, StaffSessionModel

# The attempts item lives in the sessions table under a key no token hash can take (those are hex digits).
ATTEMPTS_PREFIX = "sign-in-attempts#"


class DynamoStaffStore:
    def get_staff(self, staff_id: str) -> StaffAccount | None:
        try:
            item = StaffModel.get(staff_id, consistent_read=True)
        except StaffModel.DoesNotExist:
            return None
        return StaffAccount(item.staff_id, item.municipality_code, item.role, item.password_hash, bool(item.active))

    def put_staff(self, account: StaffAccount) -> None:
        StaffModel(
            account.staff_id,
            municipality_code=account.municipality_code,
            role=account.role,
            password_hash=account.password_hash,
            active=account.active,
        ).save()

    def create_staff(self, account: StaffAccount, created_at: str) -> bool:
        """A new account unless the id is taken (in any municipality); False when it is."""
        return save_if_absent(StaffModel(
            account.staff_id, municipality_code=account.municipality_code, role=account.role,
            password_hash=account.password_hash, active=account.active, created_at=created_at,
        ))

    def set_staff_active(self, staff_id: str, active: bool) -> None:
        StaffModel(staff_id).update(actions=[StaffModel.active.set(active)], condition=StaffModel.staff_id.exists())

    def set_password(self, staff_id: str, password_hash: str) -> None:
        StaffModel(staff_id).update(actions=[StaffModel.password_hash.set(password_hash)],
                                    condition=StaffModel.staff_id.exists())

    def staff_of_municipality(self, municipality_code: str) -> list[dict]:
        return [
            {"staff_id": item.staff_id, "role": item.role, "active": bool(item.active), "created_at": item.created_at}
            for item in StaffModel.by_municipality.query(municipality_code)
        ]

    def put_session(self, session: StaffSession) -> None:
        StaffSessionModel(
            session.session_key,
            staff_id=session.staff_id,
            municipality_code=session.municipality_code,
            role=session.role,
            last_seen_at=session.last_seen_at,
            expires_at=session.expires_at,
            counter_terminal_id=session.counter_terminal_id,
        ).save()

    def get_session(self, session_key: str) -> StaffSession | None:
        try:
            item = StaffSessionModel.get(session_key, consistent_read=True)
        except StaffSessionModel.DoesNotExist:
            return None
        return StaffSession(
            item.session_key, item.staff_id, item.municipality_code, item.role,
            int(item.last_seen_at), int(item.expires_at), item.counter_terminal_id,
        )

    def touch_session(self, session_key: str, last_seen_at: int) -> None:
        StaffSessionModel(session_key).update(actions=[StaffSessionModel.last_seen_at.set(last_seen_at)])

    def delete_session(self, session_key: str) -> None:
        StaffSessionModel(session_key).delete()

    def count_sign_in_attempt(self, staff_id: str, now: int, limits: SignInLimits) -> SignInAttempt:
        """Count one attempt for `staff_id`, or refuse it while the id is locked.

        Each step is one conditional update that holds only in the state it was chosen for (the next
        number below the limit, the last one, or a new run), so parallel attempts are counted one by one
        and at most `limits.max_attempts` are ever let through before the lock: a request whose update
        lost a race reads the item again and takes the next step. Losing every round (only when other
        attempts keep clearing and restarting the count) refuses the attempt, unchecked.
        """
        item_class = StaffSessionModel
        key = ATTEMPTS_PREFIX + staff_id
        floor = now - limits.window_seconds
        expires_at = now + limits.window_seconds + limits.lock_seconds
        live_run = item_class.locked_until.does_not_exist() & (item_class.window_started_at > floor)
        for _ in range(limits.max_attempts + 2):
            try:
                seen = item_class.get(key, consistent_read=True)
            except item_class.DoesNotExist:
                seen = None
            if seen is not None and seen.locked_until is not None and seen.locked_until > now:
                return SignInAttempt(0, int(seen.locked_until))
            item = item_class(key)
            try:
                if seen is None or seen.locked_until is not None or seen.window_started_at <= floor:
                    # No run yet, one whose first attempt is too old, or a lock that has ended: start again.
                    item.update(
                        actions=[item_class.attempts.set(1), item_class.window_started_at.set(now),
                                 item_class.locked_until.remove(), item_class.expires_at.set(expires_at)],
                        condition=(item_class.attempts.does_not_exist()
                                   | (item_class.locked_until.does_not_exist() & (item_class.window_started_at <= floor))
                                   | (item_class.locked_until <= now)),
                    )
                    return SignInAttempt(1)
                if seen.attempts < limits.max_attempts - 1:
                    item.update(actions=[item_class.attempts.add(1), item_class.expires_at.set(expires_at)],
                                condition=live_run & (item_class.attempts < limits.max_attempts - 1))
                    return SignInAttempt(int(item.attempts))
                # The last attempt allowed locks the id at once; only its own success lifts the lock.
                locked_until = now + limits.lock_seconds
                item.update(actions=[item_class.attempts.set(limits.max_attempts), item_class.locked_until.set(locked_until),
                                     item_class.expires_at.set(max(expires_at, locked_until))],
                            condition=live_run & (item_class.attempts == limits.max_attempts - 1))
                return SignInAttempt(limits.max_attempts, locked_until)
            except UpdateError as error:
                if error.cause_response_code != "ConditionalCheckFailedException":
                    raise
        return SignInAttempt(0)

    def clear_sign_in_attempts(self, staff_id: str) -> None:
        StaffSessionModel(ATTEMPTS_PREFIX + staff_id).delete()
