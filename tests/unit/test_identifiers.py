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


# -- the Individual Number inside free text (issue 15, item 7) -------------------------------------------------

NUMBER = "123456789018"  # check digit 8


@pytest.mark.parametrize("text", [
    "個人番号 123456789018 の方への付与",
    "1234-5678-9018",
    "1234 5678 9018",
    "1234.5678.9018",
    "1234 - 5678 - 9018",
    "番号1234‐5678‐9018です",                    # U+2010 hyphen
    "1234−5678−9018",                            # U+2212 minus sign
    "1234ー5678ー9018",                          # katakana long vowel mark, typed for "-" in kana mode
    "１２３４５６７８９０１８",                   # full-width digits
    "番号：１２３４－５６７８－９０１８",           # full-width digits and hyphens
    "１２３４　５６７８　９０１８",                 # full-width digits, ideographic spaces
    "1234５６７８-９０１８ 再交付",                # half- and full-width mixed
    "No123456789018",                            # glued to a word
    "2026-11-27 123456789018",                   # a date and the number joined by one space
    "1 2 3 4 5 6 7 8 9 0 1 8",
    "申請者\n1234 5678 9018\nの分",
])
def test_contains_individual_number__written_in_any_form__is_found(text):
    assert identifiers.contains_individual_number(text)
    with pytest.raises(errors.IndividualNumberForbidden) as refused:
        identifiers.refuse_individual_number_in_text(text, "reason")
    assert refused.value.details["field"] == "reason"


@pytest.mark.parametrize("text", [
    "個人番号 123456789017 の方への付与",          # wrong check digit
    "1234-5678-9017",
    "1234567890183",                             # 13 digits: a corporate number or JAN code, not searched
    "0123456789018",
    "1234-5678-90183",                           # a last group of five: no run of whole groups is 12 digits
    "電話 090-1234-5678 まで",                    # a mobile number: 11 digits
    "電話 03-1234-5678、FAX 03-1234-5679",
    "2026-11-27 の健康診断（10,000 ポイント）",
    "1234--5678--9018",                          # two separators in a row end the chain
    "grant 550e8400-e29b-41d4-a716-123456789018 の訂正",  # a quoted UUID whose last group is a valid number
    "",
])
def test_contains_individual_number__other_numbers__are_not_found(text):
    assert identifiers.looks_like_individual_number(NUMBER)  # the example itself is valid
    assert not identifiers.contains_individual_number(text)
    identifiers.refuse_individual_number_in_text(text, "reason")


@pytest.mark.parametrize("value", ["1234-5678-9018", "1234 5678 9018", " １２３４５６７８９０１８ ", "1234.5678.9018"])
def test_looks_like_individual_number__whole_value_in_groups_or_full_width__is_refused_in_identifier_fields(value):
    assert identifiers.looks_like_individual_number(value)
    with pytest.raises(errors.IndividualNumberForbidden):
        identifiers.plain_identifier(value, "merchant_id")


@pytest.mark.parametrize("value", ["個人番号 123456789018", "No123456789018", "1234567890183"])
def test_looks_like_individual_number__number_with_other_text__is_left_to_the_field_format(value):
    # Identifier fields refuse only whole values; their own format refuses the rest.
    assert not identifiers.looks_like_individual_number(value)


def test_operation_id__uuid_ending_in_a_valid_individual_number__is_accepted():
    value = "550e8400-e29b-41d4-a716-" + NUMBER
    assert identifiers.operation_id(value, "grant_id") == value
    assert not identifiers.looks_like_individual_number(value)


@pytest.mark.parametrize("value", [
    "123456789018", "1234-5678-9018", "１２３４５６７８９０１８", "order 123456789018", "order 1234 5678 9018",
    "order-1234-5678-9018", "JAL-1234.5678.9018-x",
])
def test_partner_txn_id__an_individual_number_as_a_person_writes_it__is_found(value):
    assert identifiers.identifier_holds_individual_number(value)


@pytest.mark.parametrize("value", [
    "order-123456789018", "JAL123456789018", "3f2a123456789018bc", "order-123456789019", "2026-12-01-000123456789",
    "88a69bc9-3f72-48ad-90a5-123456789018", "e2e-conversion-1",
])
def test_partner_txn_id__twelve_digits_inside_a_longer_id__are_left_alone(value):
    assert not identifiers.identifier_holds_individual_number(value)
