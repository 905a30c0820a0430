"""A municipality's point programme: its settings, checked once here, and changes to them.

The same checks serve the onboarding stack (a municipality's first settings), the staff API (an
approver changing them later) and the local onboarding command, so a programme can never hold a limit
the payment path would trip over (a PIN-free limit above the per-operation maximum, say).

Changing the annual budget moves the difference into the budget counters in the same transaction that
changes the programme, guarded by the total read before, so two staff changing the budget at once
cannot both apply their difference.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from chalicelib import errors
from chalicelib.domain import identifiers, lots
from chalicelib.services import ports
from chalicelib.services.ledger import budget_counter_id

SETTINGS_FIELDS = ("point_name", "expiry_rule", "pin_free_limit", "max_amount", "approval_threshold", "budget_total")
MAX_BUDGET_POINTS = 10**12
DEFAULT_BUDGET_SHARDS = 8


def _text(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > max_length:
        raise errors.ValidationFailed(f"{field} は{max_length}文字以内の文字列で指定してください。", field=field)
    identifiers.refuse_individual_number_in_text(value, field)
    return value.strip()


def _whole_number(value: Any, field: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise errors.ValidationFailed(f"{field} は {minimum}〜{maximum} の整数で指定してください。", field=field)
    return value


def expiry_rule(value: Any) -> dict:
    """`{"kind": "fiscal_year_end"}` or `{"kind": "months_after_grant", "months": 1..60}`."""
    if not isinstance(value, dict):
        raise errors.ValidationFailed("expiry_rule はオブジェクトで指定してください。", field="expiry_rule")
    kind = value.get("kind")
    if kind == lots.FISCAL_YEAR_END and set(value) == {"kind"}:
        return {"kind": kind}
    if kind == lots.MONTHS_AFTER_GRANT and set(value) == {"kind", "months"}:
        return {"kind": kind, "months": _whole_number(value["months"], "expiry_rule.months", 1, 60)}
    raise errors.ValidationFailed(
        "expiry_rule は {\"kind\": \"fiscal_year_end\"} か {\"kind\": \"months_after_grant\", \"months\": 12} の形です。",
        field="expiry_rule",
    )


def check_settings(settings: dict) -> dict:
    """Every settings field checked, and the limits consistent with each other."""
    checked = {
        "point_name": _text(settings["point_name"], "point_name", 40),
        "expiry_rule": expiry_rule(settings["expiry_rule"]),
        "pin_free_limit": _whole_number(settings["pin_free_limit"], "pin_free_limit", 0, identifiers.MAX_AMOUNT),
        "max_amount": _whole_number(settings["max_amount"], "max_amount", 1, identifiers.MAX_AMOUNT),
        "approval_threshold": _whole_number(settings["approval_threshold"], "approval_threshold", 1, MAX_BUDGET_POINTS),
        "budget_total": _whole_number(settings["budget_total"], "budget_total", 0, MAX_BUDGET_POINTS),
    }
    if checked["pin_free_limit"] > checked["max_amount"]:
        raise errors.ValidationFailed("PINなしで使える上限は、1回の上限以下にしてください。", field="pin_free_limit")
    return checked


def settings_of(municipality: ports.Municipality) -> dict:
    return {
        "municipality_code": municipality.code,
        "name": municipality.name,
        **{name: getattr(municipality, name) for name in SETTINGS_FIELDS},
    }


def new_municipality(code: str, name: str, settings: dict) -> ports.Municipality:
    checked = check_settings(settings)
    return ports.Municipality(
        code=identifiers.municipality_code(code), name=_text(name, "name", 40),
        budget_shards=DEFAULT_BUDGET_SHARDS, **checked,
    )


def change_settings(store, code: str, changes: dict) -> tuple[dict, dict]:
    """Apply `changes` (any of SETTINGS_FIELDS) to a programme; returns the settings before and after."""
    unknown = sorted(set(changes) - set(SETTINGS_FIELDS))
    if unknown:
        raise errors.ValidationFailed(f"変更できない項目です: {', '.join(unknown)}", field=unknown[0])
    current = store.get_municipality(code)
    if current is None:
        raise errors.MunicipalityNotFound()
    checked = check_settings({**{name: getattr(current, name) for name in SETTINGS_FIELDS}, **changes})
    updated = dataclasses.replace(current, **checked)
    delta = updated.budget_total - current.budget_total
    budget_write = None
    if delta > 0:
        budget_write = ports.CounterWrite(budget_counter_id(code, 0), delta, "at_least", 0)
    elif delta < 0:
        # A cut comes out of the shard with the most left; it may never take a shard below zero.
        shard_ids = [budget_counter_id(code, shard) for shard in range(current.budget_shards)]
        remaining = store.get_counters(shard_ids)
        fullest = max(shard_ids, key=lambda shard_id: remaining[shard_id])
        if remaining[fullest] < -delta:
            raise errors.BudgetReductionTooLarge()
        budget_write = ports.CounterWrite(fullest, delta, "at_least", -delta)
    try:
        store.update_municipality(updated, expected_budget_total=current.budget_total, budget=budget_write)
    except (ports.CounterConditionFailed, ports.WriteContention) as failure:
        raise errors.ConcurrentUpdate() from failure
    return settings_of(current), settings_of(updated)
