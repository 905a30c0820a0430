"""The identity side of the platform on DynamoDB: MyKey IDs, cards, challenges, facility links, audit.

Registration is one transaction (the MyKey ID and the card, each guarded by `attribute_not_exists`, and
the challenge consumed); suspension and renewal move card statuses under conditions, so two operators
acting at once cannot leave a card half-changed.
"""
from __future__ import annotations

import time
import uuid

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from chalicelib.domain.time import posted_at
from chalicelib.services import ports
from chalicelib.storage.conditional import save_if_absent
from chalicelib.storage.models import (
    AuditEventModel,
    CardModel,
    ChallengeModel,
    FacilityLinkModel,
    MykeyModel,
    ResidentSessionModel,
)

_CONDITION_FAILED = "ConditionalCheckFailedException"


def utc_now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def card_from_model(item: CardModel) -> ports.Card:
    return ports.Card(item.certificate_key, item.mykey_id, item.status, item.registered_at, item.status_changed_at)


def read_card(certificate_key: str) -> ports.Card | None:
    try:
        return card_from_model(CardModel.get(certificate_key, consistent_read=True))
    except CardModel.DoesNotExist:
        return None


def read_mykey(mykey_id: str) -> ports.Mykey | None:
    try:
        item = MykeyModel.get(mykey_id, consistent_read=True)
    except MykeyModel.DoesNotExist:
        return None
    return ports.Mykey(item.mykey_id, item.status, item.home_municipality_code, item.registered_at, item.status_changed_at)


def write_card(card: ports.Card) -> None:
    CardModel(
        card.certificate_key, mykey_id=card.mykey_id, status=card.status,
        registered_at=card.registered_at or utc_now_text(), status_changed_at=card.status_changed_at,
    ).save()


def write_mykey(mykey: ports.Mykey) -> None:
    MykeyModel(
        mykey.mykey_id, status=mykey.status, home_municipality_code=mykey.home_municipality_code,
        registered_at=mykey.registered_at, status_changed_at=mykey.status_changed_at,
    ).save()


class MykeyTaken(Exception):
    pass


class CardAlreadyKnown(Exception):
    def __init__(self, card: ports.Card):
        super().__init__(card.certificate_key)
        self.card = card


class DynamoIdentityStore:
    def __init__(self, region: str):
        self._connection = Connection(region=region)

    # -- challenges --------------------------------------------------------------------------------------

    def put_challenge(self, challenge_id: str, purpose: str, challenge: str, expires_at: int) -> None:
        ChallengeModel(challenge_id, purpose=purpose, challenge=challenge, expires_at=expires_at).save()

    def take_challenge(self, challenge_id: str, purpose: str, now: float) -> str | None:
        """Use up a challenge: its value if it exists for this purpose and has not expired, else None.

        The conditional delete is what makes it single-use: of two requests racing with the same
        challenge, only one deletes it.
        """
        try:
            item = ChallengeModel.get(challenge_id, consistent_read=True)
        except ChallengeModel.DoesNotExist:
            return None
        if item.purpose != purpose or item.expires_at <= int(now):
            return None
        try:
            item.delete(condition=ChallengeModel.challenge_id.exists())
        except DeleteError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return None
            raise
        return item.challenge

    # -- portal sign-in requests (a code shown in the browser, answered by the card elsewhere) ------

    def put_sign_in_request(self, code: str, challenge: str, poll_secret_hash: str, expires_at: int) -> bool:
        return save_if_absent(ChallengeModel(code, purpose="portal_sign_in", challenge=challenge, expires_at=expires_at,
                                             poll_secret_hash=poll_secret_hash))

    def get_sign_in_request(self, code: str):
        try:
            item = ChallengeModel.get(code, consistent_read=True)
        except ChallengeModel.DoesNotExist:
            return None
        return item if item.purpose == "portal_sign_in" else None

    def approve_sign_in_request(self, code: str, mykey_id: str, now: int) -> bool:
        """Only once, only while unexpired: a second card cannot take over an approved request."""
        condition = ((ChallengeModel.purpose == "portal_sign_in") & ChallengeModel.approved_mykey_id.does_not_exist()
                     & (ChallengeModel.expires_at > now))
        try:
            ChallengeModel(code).update(actions=[ChallengeModel.approved_mykey_id.set(mykey_id)], condition=condition)
        except UpdateError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return False
            raise
        return True

    def take_approved_sign_in(self, code: str, poll_secret_hash: str, now: int) -> str | None:
        """The approved MyKey ID, once, to the browser holding the secret; the request is gone after."""
        request = self.get_sign_in_request(code)
        if (request is None or request.approved_mykey_id is None or request.poll_secret_hash != poll_secret_hash
                or request.expires_at <= now):
            return None
        try:
            request.delete(condition=ChallengeModel.approved_mykey_id.exists())
        except DeleteError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return None
            raise
        return request.approved_mykey_id

    def set_home_municipality(self, mykey_id: str, municipality_code: str) -> None:
        MykeyModel(mykey_id).update(actions=[MykeyModel.home_municipality_code.set(municipality_code)],
                                    condition=MykeyModel.mykey_id.exists())

    # -- cards and MyKey IDs -----------------------------------------------------------------------------

    get_card = staticmethod(read_card)
    get_mykey = staticmethod(read_mykey)

    def cards_of_mykey(self, mykey_id: str) -> list[ports.Card]:
        keys = [item.certificate_key for item in CardModel.by_mykey.query(mykey_id)]
        return [card_from_model(item) for item in CardModel.batch_get(keys)] if keys else []

    def register(self, mykey: ports.Mykey, card: ports.Card) -> None:
        """Create the MyKey ID and bind the card to it, both or neither."""
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.save(
                    MykeyModel(mykey.mykey_id, status=mykey.status, home_municipality_code=mykey.home_municipality_code,
                               registered_at=mykey.registered_at),
                    condition=MykeyModel.mykey_id.does_not_exist(),
                )
                transaction.save(
                    CardModel(card.certificate_key, mykey_id=card.mykey_id, status=card.status, registered_at=card.registered_at),
                    condition=CardModel.certificate_key.does_not_exist(),
                    return_values="ALL_OLD",
                )
        except TransactWriteError as error:
            reasons = error.cancellation_reasons
            if len(reasons) > 1 and reasons[1] is not None and reasons[1].code == "ConditionalCheckFailed":
                raise CardAlreadyKnown(card_from_model(CardModel.from_raw_data(reasons[1].raw_item))) from error
            if reasons and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed":
                raise MykeyTaken(mykey.mykey_id) from error
            raise

    def bind_card(self, card: ports.Card, allowed_previous_mykey: str) -> ports.Card | None:
        """Put the card as given unless it is bound to another MyKey ID; returns what was there before."""
        previous = read_card(card.certificate_key)
        condition = CardModel.certificate_key.does_not_exist() | (CardModel.mykey_id == allowed_previous_mykey)
        try:
            CardModel(card.certificate_key, mykey_id=card.mykey_id, status=card.status,
                      registered_at=card.registered_at, status_changed_at=card.status_changed_at).save(condition=condition)
        except PutError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                raise CardAlreadyKnown(read_card(card.certificate_key)) from error
            raise
        return previous

    def set_card_status(self, certificate_key: str, status: str, only_if_status_in: tuple[str, ...] | None = None) -> bool:
        condition = CardModel.certificate_key.exists()
        if only_if_status_in:
            condition &= CardModel.status.is_in(*only_if_status_in)
        try:
            CardModel(certificate_key).update(
                actions=[CardModel.status.set(status), CardModel.status_changed_at.set(utc_now_text())], condition=condition
            )
        except UpdateError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return False
            raise
        return True

    def put_revoked_card(self, certificate_key: str) -> bool:
        """Record a revoked certificate nobody has registered, so that it can never be. False if known."""
        return save_if_absent(CardModel(certificate_key, mykey_id=None, status=ports.CARD_REVOKED,
                                        registered_at=utc_now_text(), status_changed_at=utc_now_text()))

    def set_mykey_status(self, mykey_id: str, status: str) -> None:
        MykeyModel(mykey_id).update(
            actions=[MykeyModel.status.set(status), MykeyModel.status_changed_at.set(utc_now_text())],
            condition=MykeyModel.mykey_id.exists(),
        )

    # -- facility links ----------------------------------------------------------------------------------

    def put_link(self, mykey_id: str, facility_id: str, local_id: str, linked_at: str) -> str | None:
        """Link, unless a different local ID is linked already: then return that one and change nothing."""
        condition = FacilityLinkModel.mykey_id.does_not_exist() | (FacilityLinkModel.local_id == local_id)
        try:
            FacilityLinkModel(mykey_id, facility_id, local_id=local_id, linked_at=linked_at).save(condition=condition)
        except PutError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                existing = self.get_link(mykey_id, facility_id)
                return existing.local_id if existing else None
            raise
        return None

    def get_link(self, mykey_id: str, facility_id: str):
        try:
            return FacilityLinkModel.get(mykey_id, facility_id, consistent_read=True)
        except FacilityLinkModel.DoesNotExist:
            return None

    def list_links(self, mykey_id: str) -> list:
        return list(FacilityLinkModel.query(mykey_id, consistent_read=True))

    def delete_link(self, mykey_id: str, facility_id: str) -> bool:
        try:
            FacilityLinkModel(mykey_id, facility_id).delete(condition=FacilityLinkModel.mykey_id.exists())
        except DeleteError as error:
            if error.cause_response_code == _CONDITION_FAILED:
                return False
            raise
        return True

    # -- audit -------------------------------------------------------------------------------------------

    def audit(self, scope: str, action: str, actor: str, mykey_id: str | None = None,
              counter_terminal_id: str | None = None, details: dict | None = None) -> None:
        occurred_at = posted_at(time.time())
        AuditEventModel(
            scope, f"{occurred_at}#{uuid.uuid4().hex[:12]}", action=action, actor=actor, mykey_id=mykey_id,
            counter_terminal_id=counter_terminal_id, details=details or {},
        ).save()

    def audit_events(self, scope: str, limit: int = 200) -> list[dict]:
        events = AuditEventModel.query(scope, scan_index_forward=False, limit=limit)
        return [
            {
                "occurred_at": event.event_key.split("#")[0],
                "action": event.action,
                "actor": event.actor,
                "counter_terminal_id": event.counter_terminal_id,
                "mykey_id": event.mykey_id,
                "details": event.details.as_dict() if hasattr(event.details, "as_dict") else dict(event.details or {}),
            }
            for event in events
        ]

    # -- resident sessions -------------------------------------------------------------------------------

    def put_resident_session(self, session_key: str, mykey_id: str, last_seen_at: int, expires_at: int) -> None:
        ResidentSessionModel(session_key, mykey_id=mykey_id, last_seen_at=last_seen_at, expires_at=expires_at).save()

    def get_resident_session(self, session_key: str):
        try:
            return ResidentSessionModel.get(session_key, consistent_read=True)
        except ResidentSessionModel.DoesNotExist:
            return None

    def touch_resident_session(self, session_key: str, last_seen_at: int) -> None:
        ResidentSessionModel(session_key).update(actions=[ResidentSessionModel.last_seen_at.set(last_seen_at)])

    def delete_resident_session(self, session_key: str) -> None:
        ResidentSessionModel(session_key).delete()
