"""Staff accounts and sessions on DynamoDB (`StaffStore`)."""
from __future__ import annotations

from chalicelib.services.staff import StaffAccount, StaffSession
from chalicelib.storage.conditional import save_if_absent
from chalicelib.storage.models import StaffModel, StaffSessionModel


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
