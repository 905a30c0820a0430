"""Reading bulk-grant CSV files as Excel and other tools write them, and the row-level report."""
import datetime as dt

import pytest

from chalicelib import errors
from chalicelib.services import grant_csv

TODAY = dt.date(2026, 11, 27)
HEADER = "申請番号,マイキーID,ポイント,付与理由,有効期限\r\n"


def _parse(text: str, encoding: str = "utf-8", max_amount: int = 50_000):
    return grant_csv.parse(text.encode(encoding), max_amount, TODAY)


@pytest.mark.parametrize("encoding,prefix,expected", [
    ("utf-8", b"", "utf-8"), ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"), ("cp932", b"", "cp932")])
def test_parse__excel_encodings__read_the_same_rows(encoding, prefix, expected):
    text = HEADER + "R-001,ABCD2345,1000,健康診断受診,2027-03-31\r\nR-002,abcd2346,500,献血,\r\n"
    parsed = grant_csv.parse(prefix + text.encode(encoding), 50_000, TODAY)
    assert parsed.encoding == expected and parsed.errors == [] and parsed.total_rows == 2
    assert [(r.row, r.reference, r.mykey_id, r.amount, r.reason, r.expires_on) for r in parsed.rows] == [
        (2, "R-001", "ABCD2345", 1000, "健康診断受診", "2027-03-31"), (3, "R-002", "ABCD2346", 500, "献血", None)]


def test_parse__full_width_digits_thousands_separators_and_slashed_dates__are_understood():
    parsed = _parse(HEADER + "Ｒ－００１,ＡＢＣＤ２３４５,\"1,000\",救命講習,2027/3/31\r\n", "cp932")
    assert parsed.errors == []
    row = parsed.rows[0]
    assert (row.reference, row.mykey_id, row.amount, row.expires_on) == ("R-001", "ABCD2345", 1000, "2027-03-31")


def test_parse__english_headers_in_any_order__are_accepted_and_expiry_column_is_optional():
    parsed = _parse("amount,reason,mykey_id,reference\n300,転入,ABCD2345,X1\n")
    assert [(r.reference, r.amount) for r in parsed.rows] == [("X1", 300)] and parsed.rows[0].expires_on is None


def test_parse__each_bad_row__is_reported_with_its_line_column_and_code():
    text = HEADER + (
        "R-1,ABCD2345,1000,健康診断,\r\n"        # line 2: good
        "R-2,ABCD0345,1000,健康診断,\r\n"        # line 3: 0 is not in the MyKey alphabet
        "R-3,ABCD2345,0,健康診断,\r\n"           # line 4: zero points
        "R-4,ABCD2345,60000,健康診断,\r\n"       # line 5: above the programme's maximum
        "R-5,ABCD2345,100,,\r\n"                 # line 6: no reason
        "R-6,ABCD2345,100,転入,2020-01-01\r\n"   # line 7: past expiry
        "R-1,ABCD2345,100,転入,\r\n"             # line 8: duplicate application number
        "R-8,ABCD2345,100,転入,2027-02-30\r\n"   # line 9: no such date
        "\r\n"                                   # empty lines are skipped
    )
    parsed = _parse(text)
    assert [row.reference for row in parsed.rows] == ["R-1"]
    assert [(e.row, e.column, e.code) for e in parsed.errors] == [
        (3, "マイキーID", "invalid_mykey_id"), (4, "ポイント", "invalid_amount"), (5, "ポイント", "invalid_amount"),
        (6, "付与理由", "invalid_reason"), (7, "有効期限", "invalid_expires_on"), (8, "申請番号", "duplicate_reference"),
        (9, "有効期限", "invalid_expires_on")]
    assert "2 行目と重複" in parsed.errors[5].message and parsed.total_rows == 8


def test_parse__individual_number_in_any_cell__is_refused_and_not_kept():
    # 123456789018 is a valid Individual Number (check digit 8).
    parsed = _parse(HEADER + "R-1,ABCD2345,100,123456789018,\r\n123456789018,ABCD2345,100,転入,\r\n")
    assert parsed.rows == []
    assert [(e.row, e.column, e.code) for e in parsed.errors] == [
        (2, "付与理由", "individual_number_forbidden"), (3, "申請番号", "individual_number_forbidden")]


def test_parse__individual_number_written_inside_a_cell__is_refused_with_its_row_and_column():
    parsed = _parse(HEADER + (
        "R-1,ABCD2345,100,個人番号 123456789018 の方への付与,\r\n"   # line 2: in the reason's text
        "R-2,ABCD2345,100,転入（1234-5678-9018）,\r\n"              # line 3: hyphenated
        "R-3,ABCD2345,100,転入 １２３４ ５６７８ ９０１８,\r\n"      # line 4: full-width, spaced
        "APP-123456789018,ABCD2345,100,転入,\r\n"                   # line 5: inside the application number
        "R-5,ABCD2345,100,転入 123456789017,\r\n"                   # line 6: wrong check digit, a good row
    ), "utf-8")
    assert [row.reference for row in parsed.rows] == ["R-5"]
    assert [(e.row, e.column, e.code) for e in parsed.errors] == [
        (2, "付与理由", "individual_number_forbidden"), (3, "付与理由", "individual_number_forbidden"),
        (4, "付与理由", "individual_number_forbidden"), (5, "申請番号", "individual_number_forbidden")]


@pytest.mark.parametrize("header,fragment", [
    ("申請番号,マイキーID,ポイント,付与理由,氏名", "氏名"),
    ("申請番号,マイキーID,ポイント", "付与理由"),
    ("申請番号,マイキーID,ポイント,付与理由,ポイント", "2回"),
])
def test_parse__wrong_header__refuses_the_whole_file(header, fragment):
    with pytest.raises(errors.CsvHeaderInvalid) as refused:
        _parse(header + "\r\nR-1,ABCD2345,100,転入,山田\r\n")
    assert fragment in refused.value.message


@pytest.mark.parametrize("content", ["申請番号,マイキーID".encode("utf-16"), b"\x00\x01\x02", b"\xef\xbb\xbf\xff\xfe"])
def test_parse__unreadable_encoding__is_refused_with_how_to_save(content):
    with pytest.raises(errors.CsvEncodingUnsupported) as refused:
        grant_csv.parse(content, 50_000, TODAY)
    assert "CSV UTF-8" in refused.value.message


def test_parse__empty_file__is_refused():
    with pytest.raises(errors.CsvHeaderInvalid):
        grant_csv.parse(b"", 50_000, TODAY)
