"""What a municipality's staff administer: merchants, their terminals, and the staff accounts themselves.

Every function takes the municipality the caller is scoped to and refuses to touch anything that
belongs to another one; a merchant or terminal of another municipality is reported as not found, so the
answer does not even confirm that the id exists.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from chalicelib import errors
from chalicelib.domain import identifiers
from chalicelib.services import onboarding, ports
from chalicelib.services.staff import APPROVER, ROLES, StaffAccount, hash_password

MERCHANT_KIND_NAMES = {"shop": "商店", "large_store": "大型店", "public_facility": "公共施設", "shopping_district": "商店街"}


@dataclass(frozen=True)
class MerchantCommand:
    municipality_code: str
    merchant_id: str
    name: str
    kind: str


@dataclass(frozen=True)
class TerminalCommand:
    municipality_code: str
    merchant_id: str
    terminal_id: str
    public_key: str
    label: str | None


def _name(value, field: str, max_length: int = 60) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > max_length:
        raise errors.ValidationFailed(f"{field} は{max_length}文字以内で入力してください。", field=field)
    identifiers.refuse_individual_number_in_text(value, field)
    return value.strip()


def merchant_view(merchant: ports.Merchant) -> dict:
    return {
        "merchant_id": merchant.merchant_id, "name": merchant.name, "kind": merchant.kind,
        "kind_name": MERCHANT_KIND_NAMES.get(merchant.kind, merchant.kind),
        "municipality_code": merchant.municipality_code,
        "accepted_municipalities": sorted(merchant.accepted_municipalities), "active": merchant.active,
    }


def terminal_view(terminal: ports.Terminal) -> dict:
    return {"terminal_id": terminal.terminal_id, "merchant_id": terminal.merchant_id, "label": terminal.label,
            "public_key": terminal.public_key, "active": terminal.active}


def own_merchant(store, municipality_code: str, merchant_id: str) -> ports.Merchant:
    merchant = store.get_merchant(identifiers.plain_identifier(merchant_id, "merchant_id"))
    if merchant is None or merchant.municipality_code != municipality_code:
        raise errors.MerchantNotFound()
    return merchant


def register_merchant(store, command: MerchantCommand, registered_at: str) -> tuple[ports.Merchant, bool]:
    """A new merchant accepting this municipality's points; the same request again changes nothing.

    Returns the merchant and whether it was created now.
    """
    merchant_id = identifiers.plain_identifier(command.merchant_id, "merchant_id")
    identifiers.refuse_individual_number(merchant_id, "merchant_id")
    if command.kind not in onboarding.MERCHANT_KINDS:
        raise errors.ValidationFailed(f"kind は {', '.join(onboarding.MERCHANT_KINDS)} のいずれかです。", field="kind")
    merchant = ports.Merchant(merchant_id, _name(command.name, "name"), command.kind, command.municipality_code,
                              frozenset({command.municipality_code}))
    if store.create_merchant(merchant, registered_at):
        return merchant, True
    existing = store.get_merchant(merchant_id)
    if existing is not None and (existing.municipality_code, existing.name, existing.kind) == (
            merchant.municipality_code, merchant.name, merchant.kind):
        return existing, False
    raise errors.MerchantIdTaken()


def disable_merchant(store, municipality_code: str, merchant_id: str) -> ports.Merchant:
    merchant = own_merchant(store, municipality_code, merchant_id)
    store.set_merchant_active(merchant.merchant_id, False)
    return merchant


def register_terminal(store, command: TerminalCommand, registered_at: str) -> tuple[ports.Terminal, bool]:
    merchant = own_merchant(store, command.municipality_code, command.merchant_id)
    if not merchant.active:
        raise errors.MerchantDisabled()
    terminal_id = identifiers.plain_identifier(command.terminal_id, "terminal_id")
    identifiers.refuse_individual_number(terminal_id, "terminal_id")
    label = _name(command.label, "label", 40) if command.label is not None else None
    terminal = ports.Terminal(terminal_id, merchant.merchant_id, command.public_key, True, label)
    if store.create_terminal(terminal, registered_at):
        return terminal, True
    existing = store.get_terminal(terminal_id)
    if existing is not None and (existing.merchant_id, existing.public_key) == (terminal.merchant_id, terminal.public_key):
        return existing, False
    raise errors.TerminalIdTaken()


def disable_terminal(store, municipality_code: str, terminal_id: str) -> ports.Terminal:
    terminal = store.get_terminal(identifiers.plain_identifier(terminal_id, "terminal_id"))
    if terminal is None:
        raise errors.TerminalNotFound()
    merchant = store.get_merchant(terminal.merchant_id)
    if merchant is None or merchant.municipality_code != municipality_code:
        raise errors.TerminalNotFound()
    store.set_terminal_active(terminal.terminal_id, False)
    return terminal


def create_staff(staff_store, municipality_code: str, staff_id: str, role: str, created_at: str) -> tuple[StaffAccount, str]:
    """A new staff account with a random first password, shown once to the approver who created it."""
    staff_id = identifiers.plain_identifier(staff_id, "staff_id")
    identifiers.refuse_individual_number(staff_id, "staff_id")
    if role not in ROLES:
        raise errors.ValidationFailed(f"role は {', '.join(ROLES)} のいずれかです。", field="role")
    password = secrets.token_urlsafe(12)
    account = StaffAccount(staff_id, municipality_code, role, hash_password(password))
    if not staff_store.create_staff(account, created_at):
        raise errors.StaffIdTaken()
    return account, password


def disable_staff(staff_store, municipality_code: str, staff_id: str, acting_staff_id: str) -> StaffAccount:
    account = staff_store.get_staff(identifiers.plain_identifier(staff_id, "staff_id"))
    if account is None or account.municipality_code != municipality_code:
        raise errors.StaffNotFound()
    if account.staff_id == acting_staff_id:
        raise errors.ValidationFailed("自分自身のアカウントは無効にできません。", field="staff_id")
    if account.role == APPROVER and sum(
            1 for other in staff_store.staff_of_municipality(municipality_code)
            if other["role"] == APPROVER and other["active"] and other["staff_id"] != account.staff_id) == 0:
        raise errors.ValidationFailed("承認者が一人もいなくなるため無効にできません。", field="staff_id")
    staff_store.set_staff_active(account.staff_id, False)
    return account
