"""Destination account numbers of transfer-out programmes: the format and the check digit.

A programme states the pattern of its account numbers and their check-digit rule, so that a mistyped
number is refused before any point is held.

The pattern is written in a small subset of regular-expression syntax, matched here in time bounded by
the pattern's length times the account's length squared: literal characters, `.`, `\\d`, `\\w`, escaped
punctuation and character classes (`[0-9A-Z-]`, `[^ ]`), each optionally followed by `?`, `*`, `+`, `{n}`
or `{m,n}`, matched against the whole account. Groups and alternation are refused: with them, Python's
backtracking `re` takes exponential time on patterns such as `(0+)+1` — a staff member's pattern and an
operator's account number together could hold a Lambda for its whole timeout on every request.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

CHECK_DIGIT_RULES = ("luhn", "none")
MAX_PATTERN_LENGTH = 200
MAX_ACCOUNT_LENGTH = 64
_UNBOUNDED = MAX_ACCOUNT_LENGTH


@dataclass(frozen=True)
class _Atom:
    characters: frozenset[str] | None  # None: any character but a line break (`.`)
    negated: bool
    minimum: int
    maximum: int

    def accepts(self, character: str) -> bool:
        if self.characters is None:
            return character != "\n"
        return (character in self.characters) != self.negated


_CLASS_ESCAPES = {"d": frozenset(string.digits), "w": frozenset(string.ascii_letters + string.digits + "_")}


def compile_account_pattern(pattern: str) -> tuple[_Atom, ...]:
    """The pattern's atoms; ValueError when it is not in the supported subset."""
    if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_PATTERN_LENGTH:
        raise ValueError(f"a pattern of 1 to {MAX_PATTERN_LENGTH} characters")
    if pattern.startswith("^"):
        pattern = pattern[1:]
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1]
    atoms: list[_Atom] = []
    position = 0
    while position < len(pattern):
        character = pattern[position]
        if character in "()|":
            raise ValueError("groups and alternation are not supported")
        if character in "?*+{":
            raise ValueError("a quantifier with nothing to repeat")
        if character == "[":
            characters, negated, position = _character_class(pattern, position + 1)
        elif character == "\\":
            characters, position = _escape(pattern, position + 1), position + 2
            negated = False
        elif character == ".":
            characters, negated, position = None, False, position + 1
        else:
            characters, negated, position = frozenset(character), False, position + 1
        minimum, maximum, position = _quantifier(pattern, position)
        atoms.append(_Atom(characters, negated, minimum, maximum))
    return tuple(atoms)


def _escape(pattern: str, position: int) -> frozenset[str]:
    if position >= len(pattern):
        raise ValueError("a pattern may not end with a backslash")
    escaped = pattern[position]
    if escaped in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[escaped]
    if escaped.isascii() and not escaped.isalnum():
        return frozenset(escaped)
    raise ValueError(f"unsupported escape \\{escaped}")


def _character_class(pattern: str, position: int) -> tuple[frozenset[str], bool, int]:
    negated = position < len(pattern) and pattern[position] == "^"
    position += negated
    members: set[str] = set()
    first = True
    while True:
        if position >= len(pattern):
            raise ValueError("an unclosed character class")
        character = pattern[position]
        if character == "]" and not first:
            return frozenset(members), negated, position + 1
        first = False
        if character == "\\":
            members |= _escape(pattern, position + 1)
            position += 2
            continue
        if position + 2 < len(pattern) and pattern[position + 1] == "-" and pattern[position + 2] != "]":
            end = pattern[position + 2]
            if end == "\\" or ord(end) < ord(character):
                raise ValueError("a character range out of order")
            members |= {chr(code) for code in range(ord(character), ord(end) + 1)}
            position += 3
            continue
        members.add(character)
        position += 1


def _quantifier(pattern: str, position: int) -> tuple[int, int, int]:
    if position >= len(pattern):
        return 1, 1, position
    symbol = pattern[position]
    if symbol == "?":
        return 0, 1, position + 1
    if symbol == "*":
        return 0, _UNBOUNDED, position + 1
    if symbol == "+":
        return 1, _UNBOUNDED, position + 1
    if symbol != "{":
        return 1, 1, position
    end = pattern.find("}", position)
    if end < 0:
        raise ValueError("an unclosed {m,n}")
    low, comma, high = pattern[position + 1:end].partition(",")
    if not (low.isascii() and low.isdigit()) or (comma and high and not (high.isascii() and high.isdigit())):
        raise ValueError("{n} or {m,n} with decimal digits")
    minimum = int(low)
    maximum = (int(high) if high else _UNBOUNDED) if comma else minimum
    if maximum < minimum or minimum > MAX_ACCOUNT_LENGTH:
        raise ValueError("{m,n} with m ≤ n")
    if end + 1 < len(pattern) and pattern[end + 1] in "?*+{":
        raise ValueError("a repeated quantifier")
    return minimum, min(maximum, _UNBOUNDED), end + 1


def pattern_matches(pattern: str, account: str) -> bool:
    """Whether the whole account matches the pattern; positions reachable after each atom, no backtracking."""
    atoms = compile_account_pattern(pattern)
    if len(account) > MAX_ACCOUNT_LENGTH:
        return False
    reachable = {0}
    for atom in atoms:
        following: set[int] = set()
        for start in reachable:
            if atom.minimum == 0:
                following.add(start)
            taken = 0
            while taken < atom.maximum and start + taken < len(account) and atom.accepts(account[start + taken]):
                taken += 1
                if taken >= atom.minimum:
                    following.add(start + taken)
        if not following:
            return False
        reachable = following
    return len(account) in reachable


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
    if not isinstance(account, str):
        return False
    try:
        if not pattern_matches(pattern, account):
            return False
    except ValueError:
        return False  # a programme stored before patterns were restricted: nothing can be sent to it
    if check_digit == "luhn":
        return luhn_valid(account)
    return check_digit == "none"
