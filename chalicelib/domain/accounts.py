"""Destination account numbers of transfer-out programmes: the format and the check digit.

A programme states the pattern of its account numbers (a regular expression) and their check-digit
rule, so that a mistyped number is refused before any point is held.
"""
from __future__ import annotations

import re

CHECK_DIGIT_RULES = ("luhn", "none")


def luhn_valid(number: str) -> bool:
    if not (number.isascii() and number.isdigit()) or len(number) < 2:
        return False
    total = 0
    for position, character in enumerate(reversed(number)):
        digit = int(character)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def account_valid(account: str, pattern: str, check_digit: str) -> bool:
    if not isinstance(account, str) or not re.fullmatch(pattern, account):
        return False
    if check_digit == "luhn":
        return luhn_valid(account)
    return check_digit == "none"
