import pytest

from chalicelib.domain.accounts import account_valid, compile_account_pattern, luhn_valid, pattern_matches


@pytest.mark.parametrize("number", ["4539578763621486", "79927398713", "0000000000000000"])
def test_luhn__valid_numbers(number):
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4539578763621487", "79927398710", "4539a78763621486", "", "7"])
def test_luhn__one_digit_off_or_not_digits__is_invalid(number):
    assert not luhn_valid(number)


def test_account__must_match_the_pattern_and_the_check_digit():
    assert account_valid("4539578763621486", "[0-9]{16}", "luhn")
    assert not account_valid("79927398713", "[0-9]{16}", "luhn")  # Luhn-valid but the wrong length
    assert not account_valid("4539578763621486\n", "[0-9]{16}", "luhn")
    assert account_valid("AB-123", "[A-Z]{2}-[0-9]{3}", "none")


SUPPORTED_PATTERNS = ["[0-9]{16}", "[A-Z]{2}-[0-9]{3}", "^\\d{4,8}$", "AB\\d*", "[^ ]+", "x?y+z{0,2}", "[a-c\\-]{1,}",
                      ".{3}", "\\w+\\.\\d", "[0-9]{3}[0-9]{0,5}[0-9]?"]
ACCOUNTS = ["4539578763621486", "AB-123", "1234", "123456789", "AB", "AB123", "x y", "yyzz", "xyzzz", "a-c", "ab\n",
            "", "abc", "ab_1.2", "A.1", "12345678901", "123"]


@pytest.mark.parametrize("pattern", SUPPORTED_PATTERNS)
def test_account_pattern__matches_exactly_as_python_re_fullmatch(pattern):
    import re

    for account in ACCOUNTS:
        assert pattern_matches(pattern, account) == bool(re.fullmatch(pattern, account)), (pattern, account)


@pytest.mark.parametrize("pattern", ["(0+)+1", "(a|aa)*b", "a|b", "(\\d{4})", "[0-9", "a{2,1}", "*a", "a**", "\\", "\\q",
                                     "a{x}", "", "a" * 201])
def test_account_pattern__groups_alternation_and_malformed_patterns__are_refused(pattern):
    with pytest.raises(ValueError):
        compile_account_pattern(pattern)


def test_account__against_patterns_that_backtrack_exponentially_in_re__is_decided_at_once():
    # `(0+)+1` is refused as a pattern; its group-free cousins are matched without backtracking.
    assert not pattern_matches("0*0*0*0*0*0*0*0*0*0*0*0*1", "0" * 64)
    assert pattern_matches("0*0*0*0*0*0*0*0*0*0*0*0*1", "0" * 63 + "1")
    assert not account_valid("0" * 65, "0*", "none")  # longer than any account number
    assert not account_valid("0000", "(0+)+1", "none")  # a programme stored before the restriction sends nothing
