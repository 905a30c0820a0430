"""Registering municipalities, merchants, terminals and cards (the platform operator's side).

Issue-level flows (the onboarding stack, the staff console, card registration) build on these; the local
cloud's seed and the tests use them directly.
"""
from __future__ import annotations

from chalicelib.domain import identifiers
from chalicelib.services import ports
from chalicelib.services.ledger import budget_counter_id

MERCHANT_KINDS = ("shop", "large_store", "public_facility", "shopping_district")


def register_municipality(store, municipality: ports.Municipality) -> None:
    """Store the programme and split its budget evenly over its shards (the remainder to shard 0)."""
    identifiers.municipality_code(municipality.code)
    if municipality.budget_shards < 1:
        raise ValueError("budget_shards must be at least 1")
    store.put_municipality(municipality)
    share, remainder = divmod(municipality.budget_total, municipality.budget_shards)
    for shard in range(municipality.budget_shards):
        store.put_counter(budget_counter_id(municipality.code, shard), share + (remainder if shard == 0 else 0))


def register_merchant(store, merchant: ports.Merchant) -> None:
    identifiers.plain_identifier(merchant.merchant_id, "merchant_id")
    if merchant.kind not in MERCHANT_KINDS:
        raise ValueError(f"merchant kind must be one of {MERCHANT_KINDS}")
    for code in merchant.accepted_municipalities:
        identifiers.municipality_code(code, "accepted_municipalities")
    store.put_merchant(merchant)


def register_terminal(store, terminal: ports.Terminal) -> None:
    identifiers.plain_identifier(terminal.terminal_id, "terminal_id")
    store.put_terminal(terminal)


def register_card(store, certificate_key: str, mykey_id: str, home_municipality_code: str, registered_at: str) -> None:
    """Bind a seeded test card to a MyKey ID directly; residents register through the challenge flow."""
    mykey_id = identifiers.mykey_id(mykey_id)
    store.put_mykey(ports.Mykey(mykey_id, "active", identifiers.municipality_code(home_municipality_code), registered_at))
    store.put_card(ports.Card(certificate_key, mykey_id, ports.CARD_ACTIVE, registered_at))


# -- tenants ------------------------------------------------------------------------------------------


def onboard_municipality(store, staff_store, audit, code: str, name: str, settings: dict,
                         first_staff_id: str, first_staff_password: str) -> dict:
    """Register a municipality as a tenant, or bring an existing one's programme to `settings`.

    What the onboarding stack's custom resource and the local `python -m tools.onboard` both call. A
    first run creates the programme, its budget and the first staff member (an approver). Later runs
    change only the programme: an existing staff account keeps its password, so re-deploying the stack
    never resets what staff have since done.
    """
    from chalicelib import errors
    from chalicelib.services import programme
    from chalicelib.services.staff import APPROVER, MIN_PASSWORD_LENGTH, StaffAccount, hash_password

    municipality = programme.new_municipality(code, name, settings)
    staff_id = identifiers.plain_identifier(first_staff_id, "first_staff_id")
    existing_staff = staff_store.get_staff(staff_id)
    if existing_staff is not None and existing_staff.municipality_code != municipality.code:
        raise errors.StaffIdTaken()
    if existing_staff is None and (not isinstance(first_staff_password, str) or len(first_staff_password) < MIN_PASSWORD_LENGTH):
        raise errors.ValidationFailed(f"最初の職員のパスワードは{MIN_PASSWORD_LENGTH}文字以上にしてください。",
                                      field="first_staff_password")
    if store.get_municipality(municipality.code) is None:
        register_municipality(store, municipality)
        action = "tenant_registered"
    else:
        programme.change_settings(store, municipality.code, {name: getattr(municipality, name) for name in programme.SETTINGS_FIELDS})
        action = "tenant_updated"
    if existing_staff is None:
        staff_store.put_staff(StaffAccount(staff_id, municipality.code, APPROVER, hash_password(first_staff_password)))
    audit(municipality.code, action, "system:onboarding", details={"first_staff_id": staff_id, **programme.settings_of(municipality)})
    return programme.settings_of(municipality)
