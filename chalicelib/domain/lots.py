"""Expiry lots: how a wallet knows which of its points expire when.

A wallet holds its balance as lots, a mapping of expiry date (ISO `YYYY-MM-DD`, the last day the points
may be used) to points. Payments spend the soonest-expiring lots first; refunds give points back to the
lots the payment took them from, latest expiry first; the expiry job removes lots whose date has passed.
All functions are pure and return new mappings, so the storage layer can write the result in one
conditional update.
"""
from __future__ import annotations

import calendar
import datetime as dt

from chalicelib import errors

Lots = dict[str, int]

FISCAL_YEAR_END = "fiscal_year_end"
MONTHS_AFTER_GRANT = "months_after_grant"


def total(lots: Lots) -> int:
    return sum(lots.values())


def add(lots: Lots, expires_on: str, amount: int) -> Lots:
    result = dict(lots)
    result[expires_on] = result.get(expires_on, 0) + amount
    return result


def consume(lots: Lots, amount: int) -> tuple[Lots, Lots]:
    """Take `amount` points, soonest expiry first. Returns (remaining lots, points taken per lot)."""
    if total(lots) < amount:
        raise errors.InsufficientBalance()
    remaining = dict(lots)
    taken: Lots = {}
    still_needed = amount
    for expires_on in sorted(remaining):
        if still_needed == 0:
            break
        portion = min(remaining[expires_on], still_needed)
        if portion <= 0:
            continue
        taken[expires_on] = portion
        remaining[expires_on] -= portion
        still_needed -= portion
    return {day: points for day, points in remaining.items() if points > 0}, taken


def spend(lots: Lots, amount: int, today: dt.date) -> tuple[Lots, Lots]:
    """Take `amount` from the lots still usable today, soonest expiry first.

    Lots past their last day are not spendable but stay in the wallet until the expiry job posts them,
    so they are kept in the result. Returns (all remaining lots, points taken per lot).
    """
    remaining_usable, taken = consume(usable(lots, today), amount)
    return {**expired(lots, today), **remaining_usable}, taken


def restore(lots: Lots, taken_by_payment: Lots, already_refunded: int, amount: int) -> tuple[Lots, Lots]:
    """Give back `amount` points of a payment whose earlier refunds came to `already_refunded`.

    Refunds walk the payment's lots from the latest expiry to the soonest, so that the resident gets the
    longest-lived points back first, and successive partial refunds continue where the last one stopped.
    Points keep their original expiry date.
    """
    order = sorted(taken_by_payment, reverse=True)
    returned: Lots = {}
    skip = already_refunded
    still_to_return = amount
    for expires_on in order:
        available = taken_by_payment[expires_on]
        skipped_here = min(skip, available)
        skip -= skipped_here
        available -= skipped_here
        portion = min(available, still_to_return)
        if portion > 0:
            returned[expires_on] = portion
            still_to_return -= portion
    if still_to_return:
        raise errors.RefundExceedsPayment()
    result = dict(lots)
    for expires_on, points in returned.items():
        result[expires_on] = result.get(expires_on, 0) + points
    return result, returned


def usable(lots: Lots, today: dt.date) -> Lots:
    """Lots still usable on `today` (their last day is today or later)."""
    return {day: points for day, points in lots.items() if dt.date.fromisoformat(day) >= today and points > 0}


def expired(lots: Lots, today: dt.date) -> Lots:
    """Lots whose last day of use is before `today`."""
    return {day: points for day, points in lots.items() if dt.date.fromisoformat(day) < today and points > 0}


def next_expiry(lots: Lots) -> str | None:
    live = [day for day, points in lots.items() if points > 0]
    return min(live) if live else None


def expiring_within(lots: Lots, today: dt.date, days: int = 30) -> int:
    horizon = today + dt.timedelta(days=days)
    return sum(points for day, points in lots.items() if today <= dt.date.fromisoformat(day) <= horizon)


def expiry_date(rule: dict, granted_on: dt.date) -> str:
    """The expiry of points granted on `granted_on` under a programme's expiry rule.

    `fiscal_year_end`: 31 March ending the Japanese fiscal year of the grant.
    `months_after_grant`: the last day of the month `months` months after the grant's month.
    """
    kind = rule.get("kind", FISCAL_YEAR_END)
    if kind == FISCAL_YEAR_END:
        year = granted_on.year if granted_on.month <= 3 else granted_on.year + 1
        return dt.date(year, 3, 31).isoformat()
    if kind == MONTHS_AFTER_GRANT:
        months = int(rule["months"])
        month_index = granted_on.month - 1 + months
        year, month = granted_on.year + month_index // 12, month_index % 12 + 1
        return dt.date(year, month, calendar.monthrange(year, month)[1]).isoformat()
    raise errors.ValidationFailed("有効期限の規則が正しくありません。", field="expiry_rule")
