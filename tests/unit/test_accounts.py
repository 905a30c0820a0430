import pytest

from chalicelib.domain.accounts import account_valid, luhn_valid


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
