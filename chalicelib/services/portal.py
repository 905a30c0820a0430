"""The resident portal: sign-in with the card from any browser, and what the resident may see and change.

The browser asks for a sign-in request and shows its one-time code (and a QR code of it). On a reader at
home, or an NFC phone, the resident's card signs the request's challenge with its user-authentication
key, which needs the PIN (`MYKEY-CHALLENGE-V1\\nportal_sign_in\\n{code}\\n{challenge}`). The browser,
which alone holds the request's poll secret, then collects a short resident session. A stolen code is
useless without the card and its PIN, and a stolen poll secret is useless without the card's answer.
"""
from __future__ import annotations

import base64
import hashlib
import io
import secrets
from typing import Callable

from chalicelib import errors
from chalicelib.auth.cards import CardAuthority
from chalicelib.domain import identifiers
from chalicelib.domain import lots as lot_rules
from chalicelib.domain.time import japan_date
from chalicelib.services import identity, ports

Clock = Callable[[], float]
PORTAL_SIGN_IN = "portal_sign_in"
SIGN_IN_TTL_SECONDS = 300


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _qr_svg(text: str) -> str:
    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="svg", scale=6, dark="#000000", light="#ffffff", xmldecl=False,
                                     svgns=True, title="サインイン用コード")
    return buffer.getvalue().decode()


def start_sign_in(store, clock: Clock) -> dict:
    now = int(clock())
    poll_secret = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    for _ in range(5):
        code = identifiers.new_mykey_id()  # same easy-to-read alphabet: no 0/O, 1/I confusion
        if store.put_sign_in_request(code, challenge, _hash(poll_secret), now + SIGN_IN_TTL_SECONDS):
            return {"code": code, "poll_secret": poll_secret, "expires_at": now + SIGN_IN_TTL_SECONDS,
                    "qr_svg": _qr_svg(f"MPC-SIGNIN:{code}")}
    raise errors.ConcurrentUpdate()


def challenge_for(store, code: str, clock: Clock) -> dict:
    request = store.get_sign_in_request(code)
    if request is None or request.expires_at <= int(clock()) or request.approved_mykey_id:
        raise errors.ChallengeInvalid()
    return {"code": code, "challenge": request.challenge, "expires_at": int(request.expires_at),
            "message_to_sign": identity.challenge_message(PORTAL_SIGN_IN, code, request.challenge).decode()}


def answer_with_card(store, authority: CardAuthority, code: str, certificate_der: bytes, signature: bytes, clock: Clock) -> dict:
    now = clock()
    request = store.get_sign_in_request(code)
    if request is None or request.expires_at <= int(now) or request.approved_mykey_id:
        raise errors.ChallengeInvalid()
    verified = authority.verify_certificate(certificate_der, now)
    authority.verify_signature(verified, identity.challenge_message(PORTAL_SIGN_IN, code, request.challenge), signature)
    card = store.get_card(verified.certificate_key)
    if card is None:
        raise errors.CardUnknown()
    identity.refuse_unusable_card(card)
    if not store.approve_sign_in_request(code, card.mykey_id, int(now)):
        raise errors.ChallengeInvalid()
    return {"code": code, "status": "approved"}


def collect_session(store, code: str, poll_secret: str, clock: Clock) -> dict:
    """`waiting` until the card has answered; then, once, the resident session for this browser."""
    now = int(clock())
    request = store.get_sign_in_request(code)
    if request is None or request.poll_secret_hash != _hash(poll_secret) or request.expires_at <= now:
        raise errors.ChallengeInvalid()
    if request.approved_mykey_id is None:
        return {"status": "waiting"}
    mykey_id = store.take_approved_sign_in(code, _hash(poll_secret), now)
    if mykey_id is None:
        raise errors.ChallengeInvalid()
    token = secrets.token_urlsafe(32)
    store.put_resident_session(identity._session_key(token), mykey_id, now, now + identity.RESIDENT_SESSION_MAX_SECONDS)
    return {"status": "signed_in", "token": token, "mykey_id": mykey_id,
            "idle_timeout_seconds": identity.RESIDENT_SESSION_IDLE_SECONDS}


def balances(ledger_store, mykey_id: str, clock: Clock) -> list[dict]:
    """Every municipality's points the resident holds, with what expires within 30 days."""
    today = japan_date(clock())
    result = []
    for wallet in ledger_store.list_wallets(mykey_id):
        if wallet.municipality_code == ports.RESERVE:
            continue
        municipality = ledger_store.get_municipality(wallet.municipality_code)
        live = lot_rules.usable(wallet.lots, today)
        result.append({
            "municipality_code": wallet.municipality_code,
            "municipality_name": municipality.name if municipality else wallet.municipality_code,
            "point_name": municipality.point_name if municipality else "",
            "balance": lot_rules.total(live),
            "expiring_within_30_days": lot_rules.expiring_within(live, today, 30),
            "next_expires_on": lot_rules.next_expiry(live),
        })
    return result


def set_home_municipality(store, ledger_store, mykey: ports.Mykey, municipality_code: str) -> dict:
    if ledger_store.get_municipality(municipality_code) is None:
        raise errors.MunicipalityNotFound()
    store.set_home_municipality(mykey.mykey_id, municipality_code)
    store.audit(municipality_code, "home_municipality", "resident", mykey.mykey_id,
                details={"previous": mykey.home_municipality_code})
    return {"mykey_id": mykey.mykey_id, "home_municipality_code": municipality_code}
