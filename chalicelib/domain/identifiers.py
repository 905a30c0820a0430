"""Identifier and amount rules of docs/CONTRACTS.md#identifiers.

Every identifier that enters the system passes through here. The Individual Number (個人番号) checks
run on every field: the platform must never accept or store one, even by mistake in a field meant for
something else. Identifier fields are refused when their whole value is one
(`looks_like_individual_number`); free text (reasons, notes, names, labels, CSV cells) is searched for
one anywhere inside it (`contains_individual_number`); partners' transaction ids, identifiers they make
up, are searched for one written as a person would (`identifier_holds_individual_number`).
"""
from __future__ import annotations

import datetime as dt
import re
import secrets
import unicodedata
import uuid

from chalicelib import errors

MYKEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
MYKEY_ID_LENGTH = 8
_MYKEY_PATTERN = re.compile(f"^[{MYKEY_ALPHABET}]{{{MYKEY_ID_LENGTH}}}$")
_MUNICIPALITY_PATTERN = re.compile(r"^[0-9]{6}$")
# How people write a number in groups: one space, or one hyphen, dash or dot with at most a space on either
# side. After NFKC the full-width forms (０-９, －, the ideographic space) are already ASCII; the dashes that
# NFKC keeps are listed, and so is ー (the katakana long vowel mark), which the IME gives for "-" typed
# in kana mode and which reads as a hyphen between digits.
_DASHES = "\\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc"
_SEPARATOR = rf"(?:\s?[{_DASHES}.]\s?|\s)"
_DIGIT_CHAIN = re.compile(rf"[0-9]+(?:{_SEPARATOR}[0-9]+)*")
_DIGIT_GROUP = re.compile(r"[0-9]+")
# A UUID quoted in text (a grant id in a note): its last group is 12 hex digits, all digits in about one
# UUID in 280 (0.625 ** 12); it is an identifier, not a number a person wrote.
_UUID_IN_TEXT = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
INDIVIDUAL_NUMBER_DIGITS = 12
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


def _is_individual_number(digits: str) -> bool:
    return (len(digits) == INDIVIDUAL_NUMBER_DIGITS and digits.isascii() and digits.isdigit()
            and individual_number_check_digit(digits[:11]) == int(digits[11]))


def _normalised(text: str) -> str:
    """NFKC (full-width digits, hyphens and spaces to ASCII), then any other script's decimal digits to 0-9."""
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    return "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)


def looks_like_individual_number(value: object) -> bool:
    """The rule for identifier fields: the whole value, spaces around it aside, is an Individual Number.

    Written plain (`123456789018`), in groups (`1234 5678 9018`, `1234-5678-9018`, `1234.5678.9018`) or
    in full-width digits: twelve digits in all whose last is the My Number check digit (docs/CONTRACTS.md#individual-number). A
    value with anything else in it (a UUID, a MyKey ID, a base64 certificate) is left to the field's own
    format check: a UUID's last group is twelve digits in one UUID in about 280, and searching inside
    identifiers would refuse one in ten of those (one UUID in about 2,800).
    """
    if value is None:
        return False
    text = _normalised(str(value)).strip()
    if not _DIGIT_CHAIN.fullmatch(text):
        return False
    return _is_individual_number("".join(_DIGIT_GROUP.findall(text)))


def contains_individual_number(value: object) -> bool:
    """The rule for free text: an Individual Number written anywhere inside it.

    After normalisation (`_normalised`), the text is cut into chains of digit groups joined by one
    separator each (a space, or a hyphen, dash, ー or dot with at most a space either side). Any run of
    consecutive whole groups of a chain holding twelve digits whose last is the check digit is refused:
    「個人番号 123456789018 の方」, 「1234-5678-9018」, 「１２３４　５６７８　９０１８」, and also
    「2026-11-27 123456789018」 (the date and the number form one chain, the number is a run of it).

    Groups are never split: a number of thirteen digits or more written without separators (a corporate
    number, a JAN code, a bank's branch and account together) is not searched for a twelve-digit part.
    Every such number holds two or more twelve-digit windows and about one in five would be refused for
    nothing, while a person writing a My Number writes it whole, alone or in 4-4-4. A UUID quoted in the
    text is skipped, for the reason given in `looks_like_individual_number`. A phone number (10 or 11
    digits) or a date alone never reaches twelve digits.
    """
    if not isinstance(value, str) or not value:
        return False
    text = _UUID_IN_TEXT.sub("/", _normalised(value))
    for chain in _DIGIT_CHAIN.finditer(text):
        groups = _DIGIT_GROUP.findall(chain.group())
        for first in range(len(groups)):
            digits = ""
            for group in groups[first:]:
                digits += group
                if len(digits) >= INDIVIDUAL_NUMBER_DIGITS:
                    break
            if _is_individual_number(digits):
                return True
    return False


def identifier_holds_individual_number(value: object) -> bool:
    """The rule for identifiers a partner makes up (transaction ids), between the two above.

    Refused: the whole value is an Individual Number; a word of it (split at spaces) is one
    (「order 123456789018」); or one is written in groups anywhere in it (「order-1234-5678-9018」, two or
    more whole digit groups joined by separators holding the twelve digits). Left alone: a bare run of
    twelve digits inside a longer id (「JAL202612010001」, 「order-202612010001」). Machine ids hold
    such runs all the time (order and reservation numbers, dates with counters), and one in ten ends in a
    valid check digit: refusing them would refuse one partner transaction in ten for nothing, for good.
    """
    if not isinstance(value, str) or not value:
        return False
    text = _UUID_IN_TEXT.sub("/", _normalised(value))
    if looks_like_individual_number(text) or any(looks_like_individual_number(word) for word in text.split()):
        return True
    for chain in _DIGIT_CHAIN.finditer(text):
        groups = _DIGIT_GROUP.findall(chain.group())
        for first in range(len(groups)):
            digits, count = "", 0
            for group in groups[first:]:
                digits, count = digits + group, count + 1
                if len(digits) >= INDIVIDUAL_NUMBER_DIGITS:
                    break
            if count >= 2 and _is_individual_number(digits):
                return True
    return False


def refuse_individual_number(value: object, field: str) -> None:
    """Identifier fields: refused when the whole value is an Individual Number."""
    if looks_like_individual_number(value):
        raise errors.IndividualNumberForbidden(field=field)


def refuse_individual_number_in_text(value: object, field: str) -> None:
    """Free-text fields: refused when an Individual Number is written anywhere inside them."""
    if contains_individual_number(value):
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
