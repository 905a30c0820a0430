"""The My Key Platform: MyKey IDs from cards, facility links, suspension, revocation, renewal.

The platform holds an ID table and nothing more (docs/ARCHITECTURE.md#what-it-is): which certificate (by keyed hash) belongs to
which MyKey ID, and which facility-local IDs are linked to it. Lookups answer from that table and write
nothing, so no usage history exists anywhere. Changes to an identity (registration, links, suspension,
reinstatement, feeds) leave an audit event naming who acted and from which counter terminal.

A card proves itself by signing a one-time server challenge with its user-authentication key (which
needs the PIN): `MYKEY-CHALLENGE-V1\\n{purpose}\\n{challenge_id}\\n{challenge}`.
"""
from __future__ import annotations

import base64
import csv
import io
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors
from chalicelib.auth.cards import CardAuthority, VerifiedCertificate
from chalicelib.domain import identifiers
from chalicelib.services import ports

Clock = Callable[[], float]

REGISTRATION, RESIDENT_SIGN_IN, REINSTATEMENT = "registration", "resident_sign_in", "reinstatement"
PURPOSES = (REGISTRATION, RESIDENT_SIGN_IN, REINSTATEMENT)
CHALLENGE_TTL_SECONDS = 300
MYKEY_REGENERATIONS = 3
RESIDENT_SESSION_IDLE_SECONDS = 300
RESIDENT_SESSION_MAX_SECONDS = 1800
PLATFORM_SCOPE = "platform"
FACILITY_KINDS = ("public_facility", "shopping_district")

_CARD_REFUSALS = {
    ports.CARD_SUSPENDED: errors.CardSuspended,
    ports.CARD_REVOKED: errors.CardRevoked,
    ports.CARD_SUPERSEDED: errors.CardSuperseded,
}


def refuse_unusable_card(card: ports.Card) -> None:
    """Every use of a card goes through here: suspended, revoked and renewed cards are refused."""
    refusal = _CARD_REFUSALS.get(card.status)
    if refusal is not None:
        raise refusal()
    if card.mykey_id is None:
        raise errors.CardUnknown()


def challenge_message(purpose: str, challenge_id: str, challenge: str) -> bytes:
    return f"MYKEY-CHALLENGE-V1\n{purpose}\n{challenge_id}\n{challenge}".encode("utf-8")


@dataclass(frozen=True)
class Actor:
    """Who changes an identity: a staff member at a counter terminal, a resident, a facility terminal."""

    name: str
    counter_terminal_id: str | None = None
    scope: str | None = None  # the staff member's municipality or the platform


@dataclass(frozen=True)
class CardResponse:
    challenge_id: str
    certificate_der: bytes
    signature: bytes


def _now_text(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


# -- challenges -----------------------------------------------------------------------------------------


def issue_challenge(store, purpose: str, clock: Clock) -> dict:
    if purpose not in PURPOSES:
        raise errors.ValidationFailed(f"purpose は {', '.join(PURPOSES)} のいずれかです。", field="purpose")
    challenge_id = str(uuid.uuid4())
    challenge = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    expires_at = int(clock()) + CHALLENGE_TTL_SECONDS
    store.put_challenge(challenge_id, purpose, challenge, expires_at)
    return {"challenge_id": challenge_id, "purpose": purpose, "challenge": challenge, "expires_at": expires_at,
            "message_to_sign": challenge_message(purpose, challenge_id, challenge).decode()}


def _verified_response(store, authority: CardAuthority, purpose: str, response: CardResponse, now: float) -> VerifiedCertificate:
    challenge = store.take_challenge(response.challenge_id, purpose, now)
    if challenge is None:
        raise errors.ChallengeInvalid()
    verified = authority.verify_certificate(response.certificate_der, now)
    authority.verify_signature(verified, challenge_message(purpose, response.challenge_id, challenge), response.signature)
    return verified


# -- registration ---------------------------------------------------------------------------------------


def register(store, ledger_store, authority: CardAuthority, response: CardResponse, home_municipality_code: str,
             preferred_mykey_id: str | None, actor: Actor, clock: Clock) -> tuple[ports.Mykey, bool]:
    """Issue a MyKey ID for a card, or return the one it already has. Returns (MyKey, newly created)."""
    now = clock()
    verified = _verified_response(store, authority, REGISTRATION, response, now)
    existing = store.get_card(verified.certificate_key)
    if existing is not None:
        refuse_unusable_card(existing)
        return store.get_mykey(existing.mykey_id), False
    if ledger_store.get_municipality(home_municipality_code) is None:
        raise errors.MunicipalityNotFound()
    candidates = [preferred_mykey_id] if preferred_mykey_id else [
        identifiers.new_mykey_id() for _ in range(1 + MYKEY_REGENERATIONS)
    ]
    from chalicelib.storage.identity import CardAlreadyKnown, MykeyTaken

    for candidate in candidates:
        mykey = ports.Mykey(candidate, "active", home_municipality_code, _now_text(now))
        card = ports.Card(verified.certificate_key, candidate, ports.CARD_ACTIVE, _now_text(now))
        try:
            store.register(mykey, card)
        except MykeyTaken:
            continue
        except CardAlreadyKnown as known:
            # Registered by a concurrent request with the same card: one MyKey ID per certificate.
            refuse_unusable_card(known.card)
            return store.get_mykey(known.card.mykey_id), False
        store.audit(home_municipality_code, "registration", actor.name, candidate, actor.counter_terminal_id,
                    {"chosen_by_resident": bool(preferred_mykey_id)})
        return mykey, True
    if preferred_mykey_id:
        raise errors.MykeyIdTaken()
    raise errors.MykeyIdUnavailable()


# -- resident sessions ----------------------------------------------------------------------------------


def _session_key(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def resident_sign_in(store, authority: CardAuthority, response: CardResponse, clock: Clock) -> tuple[str, ports.Mykey]:
    now = clock()
    verified = _verified_response(store, authority, RESIDENT_SIGN_IN, response, now)
    card = store.get_card(verified.certificate_key)
    if card is None:
        raise errors.CardUnknown()
    refuse_unusable_card(card)
    token = secrets.token_urlsafe(32)
    store.put_resident_session(_session_key(token), card.mykey_id, int(now), int(now) + RESIDENT_SESSION_MAX_SECONDS)
    return token, store.get_mykey(card.mykey_id)


def resident_session(store, token: str | None, clock: Clock) -> ports.Mykey:
    """The signed-in resident's MyKey; a suspended MyKey ends every session at once."""
    if not token:
        raise errors.ResidentAuthenticationFailed()
    now = int(clock())
    session = store.get_resident_session(_session_key(token))
    if session is None:
        raise errors.ResidentAuthenticationFailed()
    if now - int(session.last_seen_at) > RESIDENT_SESSION_IDLE_SECONDS or now >= int(session.expires_at):
        store.delete_resident_session(session.session_key)
        raise errors.ResidentAuthenticationFailed("一定時間操作がなかったためサインアウトしました。")
    mykey = store.get_mykey(session.mykey_id)
    if mykey is None or mykey.status != "active":
        store.delete_resident_session(session.session_key)
        raise errors.CardSuspended()
    store.touch_resident_session(session.session_key, now)
    return mykey


def resident_sign_out(store, token: str) -> None:
    store.delete_resident_session(_session_key(token))


# -- facility links -------------------------------------------------------------------------------------


def _facility(ledger_store, terminal: ports.Terminal) -> ports.Merchant:
    merchant = ledger_store.get_merchant(terminal.merchant_id)
    if merchant is None or not merchant.active or merchant.kind not in FACILITY_KINDS:
        raise errors.FacilityLinksNotOffered()
    return merchant


def _card_holder(store, authority: CardAuthority, certificate_der: bytes, now: float) -> str:
    verified = authority.verify_certificate(certificate_der, now)
    card = store.get_card(verified.certificate_key)
    if card is None:
        raise errors.CardUnknown()
    refuse_unusable_card(card)
    return card.mykey_id


def link_facility(store, ledger_store, authority, terminal: ports.Terminal, certificate_der: bytes, local_id: str,
                  clock: Clock) -> dict:
    now = clock()
    facility = _facility(ledger_store, terminal)
    mykey_id = _card_holder(store, authority, certificate_der, now)
    linked_at = _now_text(now)
    other = store.put_link(mykey_id, facility.merchant_id, local_id, linked_at)
    if other is not None:
        raise errors.FacilityLinkExists()
    store.audit(facility.municipality_code, "facility_link", f"terminal:{terminal.terminal_id}", mykey_id,
                details={"facility_id": facility.merchant_id})
    return {"facility_id": facility.merchant_id, "facility_name": facility.name, "local_id": local_id}


def look_up_facility_link(store, ledger_store, authority, terminal: ports.Terminal, certificate_der: bytes,
                          clock: Clock) -> dict:
    """This facility's local ID for the card, and nothing else; writes nothing, so no visit is recorded."""
    facility = _facility(ledger_store, terminal)
    mykey_id = _card_holder(store, authority, certificate_der, clock())
    link = store.get_link(mykey_id, facility.merchant_id)
    if link is None:
        raise errors.FacilityLinkNotFound()
    return {"facility_id": facility.merchant_id, "local_id": link.local_id}


def unlink_facility(store, ledger_store, authority, terminal: ports.Terminal, certificate_der: bytes, clock: Clock) -> dict:
    facility = _facility(ledger_store, terminal)
    mykey_id = _card_holder(store, authority, certificate_der, clock())
    if not store.delete_link(mykey_id, facility.merchant_id):
        raise errors.FacilityLinkNotFound()
    store.audit(facility.municipality_code, "facility_unlink", f"terminal:{terminal.terminal_id}", mykey_id,
                details={"facility_id": facility.merchant_id})
    return {"facility_id": facility.merchant_id, "removed": True}


def resident_links(store, ledger_store, mykey: ports.Mykey) -> list[dict]:
    links = store.list_links(mykey.mykey_id)
    facilities = ledger_store.get_merchants(link.facility_id for link in links)
    return [
        {
            "facility_id": link.facility_id,
            "facility_name": facilities[link.facility_id].name if link.facility_id in facilities else None,
            "local_id": link.local_id,
            "linked_at": link.linked_at,
        }
        for link in links
    ]


def resident_remove_link(store, mykey: ports.Mykey, facility_id: str) -> None:
    if not store.delete_link(mykey.mykey_id, facility_id):
        raise errors.FacilityLinkNotFound()
    store.audit(mykey.home_municipality_code, "facility_unlink", "resident", mykey.mykey_id,
                details={"facility_id": facility_id})


# -- suspension and reinstatement -----------------------------------------------------------------------


def suspend(store, mykey_id: str, reason: str, actor: Actor) -> dict:
    """"One phone call stops the service": the MyKey and every usable card of it are suspended."""
    mykey = store.get_mykey(mykey_id)
    if mykey is None:
        raise errors.MykeyIdUnknown()
    store.set_mykey_status(mykey_id, "suspended")
    suspended_cards = 0
    for card in store.cards_of_mykey(mykey_id):
        if store.set_card_status(card.certificate_key, ports.CARD_SUSPENDED, only_if_status_in=(ports.CARD_ACTIVE,)):
            suspended_cards += 1
    store.audit(actor.scope or mykey.home_municipality_code, "suspension", actor.name, mykey_id,
                actor.counter_terminal_id, {"reason": reason, "cards": suspended_cards})
    return {"mykey_id": mykey_id, "status": "suspended", "suspended_cards": suspended_cards}


def reinstate(store, authority: CardAuthority, mykey_id: str, response: CardResponse, actor: Actor, clock: Clock) -> dict:
    """At a counter, after checking the resident in person: bind the card they hold and reopen the MyKey.

    A new card (after a lost one) is bound to the existing MyKey ID, keeping balances and links; the
    lost card stays suspended. A card bound to someone else, revoked or renewed away is refused.
    """
    now = clock()
    mykey = store.get_mykey(mykey_id)
    if mykey is None:
        raise errors.MykeyIdUnknown()
    if mykey.status != "suspended":
        # A working MyKey gets new cards through J-LIS renewal, never a second card at a counter.
        raise errors.MykeyNotSuspended()
    verified = _verified_response(store, authority, REINSTATEMENT, response, now)
    existing = store.get_card(verified.certificate_key)
    if existing is not None:
        if existing.status in (ports.CARD_REVOKED, ports.CARD_SUPERSEDED):
            refuse_unusable_card(existing)
        if existing.mykey_id != mykey_id:
            raise errors.CardRegisteredElsewhere()
    from chalicelib.storage.identity import CardAlreadyKnown

    card = ports.Card(verified.certificate_key, mykey_id, ports.CARD_ACTIVE,
                      existing.registered_at if existing else _now_text(now), _now_text(now))
    try:
        store.bind_card(card, allowed_previous_mykey=mykey_id)
    except CardAlreadyKnown as error:
        raise errors.CardRegisteredElsewhere() from error
    store.set_mykey_status(mykey_id, "active")
    store.audit(actor.scope or mykey.home_municipality_code, "reinstatement", actor.name, mykey_id,
                actor.counter_terminal_id, {"new_card": existing is None})
    return {"mykey_id": mykey_id, "status": "active", "new_card": existing is None}


# -- feeds from J-LIS -----------------------------------------------------------------------------------


def _serial(text: str, line: int) -> int:
    cleaned = text.strip().replace(":", "").replace(" ", "").lower().removeprefix("0x")
    try:
        value = int(cleaned, 16)
    except ValueError as error:
        raise errors.FeedInvalid(f"{line} 行目のシリアル番号を読み取れません: {text!r}") from error
    if value <= 0:
        raise errors.FeedInvalid(f"{line} 行目のシリアル番号が正しくありません。")
    return value


def _csv_rows(content: str, columns: tuple[str, ...]) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(content.lstrip("\ufeff")))
    try:
        if reader.fieldnames is None or any(column not in reader.fieldnames for column in columns):
            raise errors.FeedInvalid(f"CSV の見出しに {', '.join(columns)} が必要です。")
        return [(index + 2, row) for index, row in enumerate(reader)]
    except csv.Error as error:  # a field longer than the csv module reads, a stray quote
        raise errors.FeedInvalid(f"CSV の形式が正しくありません（{reader.line_num} 行目）。") from error


def import_revocations(store, authority: CardAuthority, feed_format: str, content: bytes, actor: Actor) -> dict:
    """Mark revoked certificates: registered cards stop working; unknown ones can never be registered.

    `csv`: a `serial_number` column (hexadecimal), certificates of any CA in the trust store.
    `crl`: a DER certificate revocation list, accepted only if a CA in the trust store signed it.
    """
    if feed_format == "csv":
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as error:
            raise errors.FeedInvalid("CSV は UTF-8 で送ってください。") from error
        keys = [
            authority.certificate_keys(_serial(row["serial_number"] or "", line))
            for line, row in _csv_rows(text, ("serial_number",))
        ]
    elif feed_format == "crl":
        keys = [[key] for key in authority.revoked_keys_from_crl(content)]
    else:
        raise errors.ValidationFailed("format は csv または crl です。", field="format")
    counts = {"revoked_registered": 0, "recorded_unregistered": 0, "already_revoked": 0}
    for candidate_keys in keys:
        outcome = _revoke_one(store, candidate_keys)
        counts[outcome] += 1
    store.audit(PLATFORM_SCOPE, "revocation_import", actor.name, None, actor.counter_terminal_id,
                {"format": feed_format, **counts})
    return counts


def _revoke_one(store, candidate_keys: list[str]) -> str:
    for key in candidate_keys:
        card = store.get_card(key)
        if card is None:
            continue
        if card.status == ports.CARD_REVOKED:
            return "already_revoked"
        store.set_card_status(key, ports.CARD_REVOKED)
        return "revoked_registered"
    recorded = [store.put_revoked_card(key) for key in candidate_keys]
    return "recorded_unregistered" if any(recorded) else "already_revoked"


def import_renewals(store, authority: CardAuthority, content: bytes, new_issuer_sha256: str | None, actor: Actor) -> dict:
    """Old → new certificate links from J-LIS: the new certificate takes over the MyKey ID, the old stops.

    Balances and facility links belong to the MyKey ID, so they carry over untouched. CSV columns:
    `old_serial_number`, `new_serial_number` (hexadecimal). The new certificates' CA is named by the
    SHA-256 fingerprint of its certificate when the trust store holds more than one.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise errors.FeedInvalid("CSV は UTF-8 で送ってください。") from error
    new_issuer = authority.issuer_for_renewals(new_issuer_sha256)
    # The whole feed is read before anything changes: a bad row refuses the feed, never half of it.
    pairs = [
        (_serial(row["old_serial_number"] or "", line), _serial(row["new_serial_number"] or "", line))
        for line, row in _csv_rows(text, ("old_serial_number", "new_serial_number"))
    ]
    counts = {"renewed": 0, "unknown": 0, "already_renewed": 0, "refused": 0}
    for old_serial, new_serial in pairs:
        new_key = authority.certificate_key_for(new_issuer, new_serial)
        old_card = next((card for key in authority.certificate_keys(old_serial) if (card := store.get_card(key))), None)
        if old_card is None or old_card.mykey_id is None:
            counts["unknown"] += 1
            continue
        if old_card.status == ports.CARD_REVOKED:
            counts["refused"] += 1
            continue
        new_card = store.get_card(new_key)
        if new_card is not None and new_card.mykey_id == old_card.mykey_id and old_card.status == ports.CARD_SUPERSEDED:
            counts["already_renewed"] += 1
            continue
        mykey = store.get_mykey(old_card.mykey_id)
        status = ports.CARD_SUSPENDED if mykey is not None and mykey.status == "suspended" else ports.CARD_ACTIVE
        from chalicelib.storage.identity import CardAlreadyKnown

        try:
            store.bind_card(ports.Card(new_key, old_card.mykey_id, status, old_card.registered_at), old_card.mykey_id)
        except CardAlreadyKnown:
            counts["refused"] += 1  # the new certificate is already someone else's: never merge identities
            continue
        store.set_card_status(old_card.certificate_key, ports.CARD_SUPERSEDED)
        counts["renewed"] += 1
    store.audit(PLATFORM_SCOPE, "renewal_import", actor.name, None, actor.counter_terminal_id, counts)
    return counts
