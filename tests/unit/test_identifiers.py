import pytest

from chalicelib import errors
from chalicelib.domain import identifiers


@pytest.mark.parametrize("code", ["252034", "131164", "203211", "131016"])
def test_municipality_code__published_codes__are_accepted(code):
    assert identifiers.municipality_code(code) == code


@pytest.mark.parametrize("code", ["252035", "131160", "20321", "2032111", "abcdef", 252034, None])
def test_municipality_code__wrong_check_digit_or_shape__is_refused(code):
    with pytest.raises(errors.InvalidMunicipalityCode):
        identifiers.municipality_code(code)


def test_municipality_check_digit__remainders_ten_and_eleven__keep_last_digit():
    # Find five-digit prefixes whose weighted sum is 0 or 1 mod 11: check digits 1 (11 → 1) and 0 (10 → 0).
    found = {}
    for prefix in range(10000, 10100):
        text = str(prefix)
        weighted = sum(int(d) * w for d, w in zip(text, (6, 5, 4, 3, 2))) % 11
        found.setdefault(weighted, text)
    assert identifiers.municipality_check_digit(found[0]) == 1
    assert identifiers.municipality_check_digit(found[1]) == 0


def _valid_individual_number(first_eleven: str) -> str:
    return first_eleven + str(identifiers.individual_number_check_digit(first_eleven))


def test_individual_number__valid_check_digit__is_refused_in_every_identifier_field():
    number = _valid_individual_number("12345678901")
    for parse in (
        lambda v: identifiers.municipality_code(v),
        lambda v: identifiers.mykey_id(v),
        lambda v: identifiers.operation_id(v, "transfer_id"),
        lambda v: identifiers.plain_identifier(v, "staff_id"),
        lambda v: identifiers.iso_date(v, "expires_on"),
    ):
        with pytest.raises(errors.IndividualNumberForbidden):
            parse(number)


def test_individual_number__known_example__has_expected_check_digit():
    # 123456789018 is the example number used in published My Number check-digit explanations.
    assert identifiers.individual_number_check_digit("12345678901") == 8
    assert identifiers.looks_like_individual_number("123456789018")
    assert not identifiers.looks_like_individual_number("123456789017")


def test_twelve_digits_with_wrong_check_digit__is_not_called_an_individual_number():
    number = _valid_individual_number("98765432109")
    wrong = number[:11] + str((int(number[11]) + 1) % 10)
    assert not identifiers.looks_like_individual_number(wrong)
    with pytest.raises(errors.InvalidMykeyId):
        identifiers.mykey_id(wrong)


@pytest.mark.parametrize("value", ["abcd2345", "ABCD2345", " abcd2345 "])
def test_mykey_id__any_case__is_stored_upper_case(value):
    assert identifiers.mykey_id(value) == "ABCD2345"


@pytest.mark.parametrize("value", ["ABCD1234", "ABCDO234", "ABCDI234", "ABC2345", "ABCDE23456", "", 12345678])
def test_mykey_id__outside_alphabet_or_length__is_refused(value):
    with pytest.raises(errors.InvalidMykeyId):
        identifiers.mykey_id(value)


def test_new_mykey_id__uses_only_the_alphabet():
    for _ in range(200):
        assert identifiers.mykey_id(identifiers.new_mykey_id())


@pytest.mark.parametrize("value", [0, -1, 1_000_001, 1.5, "500", True, None])
def test_amount__outside_bounds_or_not_integer__is_refused(value):
    with pytest.raises(errors.InvalidAmount):
        identifiers.amount(value)


def test_amount__programme_limit__lowers_the_maximum():
    assert identifiers.amount(1_000_000) == 1_000_000
    with pytest.raises(errors.InvalidAmount):
        identifiers.amount(5001, maximum=5000)


@pytest.mark.parametrize("value", ["6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff8b86d011b42d00c04fc964ff", "x"])
def test_operation_id__not_lower_case_canonical_uuid__is_refused(value):
    with pytest.raises(errors.ValidationFailed):
        identifiers.operation_id(value, "transfer_id")


@pytest.mark.parametrize(
    "parse",
    [
        lambda: identifiers.municipality_code("252034\n"),
        lambda: identifiers.operation_id("6f9619ff-8b86-4011-b42d-00c04fc964ff\n", "transfer_id"),
        lambda: identifiers.plain_identifier("terminal-1\n", "terminal_id"),
    ],
)
def test_identifiers__trailing_newline__is_refused_as_bad_input(parse):
    with pytest.raises(errors.ValidationFailed):
        parse()
