"""Identifier and amount rules of DESIGN §3.

Every identifier that enters the system passes through here. The Individual Number (個人番号) check runs
on every identifier field: the platform must never accept or store one, even by mistake in a field
meant for something else.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid

from chalicelib import errors

MYKEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
MYKEY_ID_LENGTH = 8
_MYKEY_PATTERN = re.compile(f"^[{MYKEY_ALPHABET}]{{{MYKEY_ID_LENGTH}}}$")
_MUNICIPALITY_PATTERN = re.compile(r"^[0-9]{6}$")
_TWELVE_DIGITS = re.compile(r"^[0-9]{12}$")
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

MIN_AMOUNT = 1
MAX_AMOUNT = 1_000_000


def municipality_check_digit(first_five: str) -> int:
    weighted = sum(int(digit) * weight for digit, weight in zip(first_five, (6, 5, 4, 3, 2)))
    # 11 − (sum mod 11), keeping only the last digit: 10 becomes 0 and 11 becomes 1.
    return (11 - weighted % 11) % 10


def individual_number_check_digit(first_eleven: str) -> int:
    remainder = 0
    for position in range(1, 12):
        digit = int(first_eleven[11 - position])
        weight = position + 1 if position <= 6 else position - 5
        remainder += digit * weight
    remainder %= 11
    return 0 if remainder <= 1 else 11 - remainder


def looks_like_individual_number(value: object) -> bool:
    text = str(value).strip() if value is not None else ""
    return bool(_TWELVE_DIGITS.fullmatch(text)) and individual_number_check_digit(text[:11]) == int(text[11])


def refuse_individual_number(value: object, field: str) -> None:
    if looks_like_individual_number(value):
        raise errors.IndividualNumberForbidden(field=field)


def municipality_code(value: object, field: str = "municipality_code") -> str:
    refuse_individual_number(value, field)
    if not isinstance(value, str) or not _MUNICIPALITY_PATTERN.fullmatch(value):
        raise errors.InvalidMunicipalityCode(field=field)
    if municipality_check_digit(value[:5]) != int(value[5]):
        raise errors.InvalidMunicipalityCode(field=field)
    return value


def mykey_id(value: object, field: str = "mykey_id") -> str:
    refuse_individual_number(value, field)
    if not isinstance(value, str):
        raise errors.InvalidMykeyId(field=field)
    normalised = value.strip().upper()
    if not _MYKEY_PATTERN.fullmatch(normalised):
        raise errors.InvalidMykeyId(field=field)
    return normalised


def new_mykey_id() -> str:
    return "".join(secrets.choice(MYKEY_ALPHABET) for _ in range(MYKEY_ID_LENGTH))


def is_operation_id(value: object) -> bool:
    return isinstance(value, str) and bool(_CANONICAL_UUID.fullmatch(value))


def operation_id(value: object, field: str) -> str:
    """A client-generated idempotency key: a lower-case canonical UUID."""
    refuse_individual_number(value, field)
    if not isinstance(value, str) or not _CANONICAL_UUID.fullmatch(value):
        raise errors.ValidationFailed(f"{field} は小文字の UUID で指定してください。", field=field)
    uuid.UUID(value)
    return value


def amount(value: object, maximum: int = MAX_AMOUNT, field: str = "amount") -> int:
    # bool is an int subclass in Python; JSON true must not pass as 1 point.
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidAmount("ポイント数は整数で指定してください。", field=field)
    if value < MIN_AMOUNT or value > min(maximum, MAX_AMOUNT):
        raise errors.InvalidAmount(
            f"ポイント数は {MIN_AMOUNT} 以上 {min(maximum, MAX_AMOUNT)} 以下で指定してください。", field=field
        )
    return value


def plain_identifier(value: object, field: str, max_length: int = 64) -> str:
    """Identifiers chosen by people (merchant ids, terminal ids, staff ids)."""
    refuse_individual_number(value, field)
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}" % (max_length - 1), value):
        raise errors.ValidationFailed(f"{field} の形式が正しくありません。", field=field)
    return value



def ascii_digits(value: object, max_length: int = 18) -> bool:
    """Only 0-9, at most `max_length` of them: `str.isdigit` also accepts "²" and "①", which int() refuses."""
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isascii() and value.isdigit()


def iso_date(value: object, field: str) -> str:
    refuse_individual_number(value, field)
    try:
        # Years 2000-2999 only: dates far outside would overflow the report and expiry arithmetic.
        if isinstance(value, str) and len(value) == 10 and value[:1] == "2":
            return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        pass
    raise errors.ValidationFailed(f"{field} は YYYY-MM-DD 形式の日付で指定してください。", field=field)
