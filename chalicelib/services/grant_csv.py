"""Reading a bulk-grant CSV the way municipal staff write it, and checking every row.

Excel saves "CSV (comma separated)" in Shift_JIS (cp932) on Japanese Windows and "CSV UTF-8" with a
byte-order mark; other tools write UTF-8 without one. All three are accepted; anything else is refused
whole, with a message that says how to save the file. Full-width digits and letters (typed with the IME
on) are read as their half-width forms, "1,000" as 1000, and "2027/3/31" as 2027-03-31.

Columns (Japanese or English headers, in any order): 申請番号 (reference), マイキーID (mykey_id),
ポイント (amount), 付与理由 (reason), and optionally 有効期限 (expires_on). The application number
(申請番号) is the staff's own number for the grant (the application or receipt number): each row's
grant id is derived from it, so uploading a corrected file again never grants a row twice. A file with
any other column is refused, so that names, addresses or Individual Numbers never enter the platform
through a spreadsheet.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from dataclasses import dataclass

from chalicelib import errors
from chalicelib.domain import identifiers

COLUMNS = {
    "reference": ("申請番号", "受付番号", "reference"),
    "mykey_id": ("マイキーid", "マイキーＩＤ", "mykey_id", "mykeyid"),
    "amount": ("ポイント", "ポイント数", "付与ポイント", "amount"),
    "reason": ("付与理由", "理由", "reason"),
    "expires_on": ("有効期限", "expires_on"),
}
REQUIRED_COLUMNS = ("reference", "mykey_id", "amount", "reason")
COLUMN_NAMES_JA = {"reference": "申請番号", "mykey_id": "マイキーID", "amount": "ポイント", "reason": "付与理由",
                   "expires_on": "有効期限"}
TEMPLATE_HEADER = "申請番号,マイキーID,ポイント,付与理由,有効期限"
MAX_ROWS = 200_000
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-/.]{0,39}$")
_DATE = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")


@dataclass(frozen=True)
class GrantRow:
    row: int  # the line in the file, the header being line 1, as Excel numbers it
    reference: str
    mykey_id: str
    amount: int
    reason: str
    expires_on: str | None


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    code: str
    message: str


@dataclass(frozen=True)
class ParsedFile:
    encoding: str
    rows: list[GrantRow]
    errors: list[RowError]
    total_rows: int


def decode(content: bytes) -> tuple[str, str]:
    """The text and the encoding it was written in: UTF-8 with or without BOM, or Shift_JIS (cp932)."""
    # Excel's "Unicode text" is UTF-16: tab-separated and not CSV at all; NUL bytes mean a binary file.
    if content.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in content:
        raise errors.CsvEncodingUnsupported()
    if content.startswith(b"\xef\xbb\xbf"):
        try:
            return content[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as error:
            raise errors.CsvEncodingUnsupported() from error
    for encoding in ("utf-8", "cp932"):
        try:
            return content.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise errors.CsvEncodingUnsupported()


def _normalise(value: str) -> str:
    return unicodedata.normalize("NFKC", value or "").strip()


def _header_map(header: list[str]) -> dict[str, int]:
    positions: dict[str, int] = {}
    unknown = []
    for index, raw in enumerate(header):
        name = _normalise(raw).lower()
        if not name:
            continue
        field = next((key for key, names in COLUMNS.items() if name in {_normalise(n).lower() for n in names}), None)
        if field is None:
            unknown.append(raw.strip())
        elif field in positions:
            raise errors.CsvHeaderInvalid(f"列「{raw.strip()}」が2回あります。")
        else:
            positions[field] = index
    if unknown:
        raise errors.CsvHeaderInvalid(
            f"使えない列があります: {'、'.join(unknown)}。列は {TEMPLATE_HEADER} だけにしてください"
            "（氏名・住所・個人番号などは取り込みません）。"
        )
    missing = [COLUMN_NAMES_JA[field] for field in REQUIRED_COLUMNS if field not in positions]
    if missing:
        raise errors.CsvHeaderInvalid(f"必要な列がありません: {'、'.join(missing)}。1行目は {TEMPLATE_HEADER} です。")
    return positions


def _date(value: str, today: dt.date) -> str:
    match = _DATE.match(value)
    if not match:
        raise ValueError("有効期限は 2027-03-31 または 2027/3/31 の形で入力してください。")
    try:
        date = dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as error:
        raise ValueError("有効期限の日付が存在しません。") from error
    if date < today:
        raise ValueError("有効期限が過去の日付です。")
    return date.isoformat()


def parse(content: bytes, max_amount: int, today: dt.date) -> ParsedFile:
    """Every row checked; a row with any error is reported with its line and column and not kept."""
    text, encoding = decode(content)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration as error:
        raise errors.CsvHeaderInvalid(f"ファイルが空です。1行目は {TEMPLATE_HEADER} です。") from error
    except csv.Error as error:
        raise errors.CsvHeaderInvalid("CSV の形式が正しくありません。") from error
    positions = _header_map(header)
    rows: list[GrantRow] = []
    row_errors: list[RowError] = []
    seen_references: dict[str, int] = {}
    total = 0
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:
            line += 1
            total += 1
            row_errors.append(RowError(line, "", "csv_row_invalid", "この行の CSV の形式が正しくありません（引用符の閉じ忘れなど）。"))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue  # Excel leaves empty lines at the end
        total += 1
        if total > MAX_ROWS:
            raise errors.CsvTooManyRows()
        row = _check_row(line, record, positions, max_amount, today, seen_references, row_errors)
        if row is not None:
            rows.append(row)
    return ParsedFile(encoding, rows, row_errors, total)


def _check_row(line, record, positions, max_amount, today, seen_references, row_errors) -> GrantRow | None:
    def cell(field: str) -> str:
        index = positions.get(field)
        return _normalise(record[index]) if index is not None and index < len(record) else ""

    found: list[RowError] = []

    def refuse(field: str, code: str, message: str) -> None:
        found.append(RowError(line, COLUMN_NAMES_JA[field], code, message))

    values = {field: cell(field) for field in COLUMNS}
    for field, value in values.items():
        # Every cell is text a person typed (a reference may be "APP-123456789018"): searched inside.
        if identifiers.contains_individual_number(value):
            refuse(field, "individual_number_forbidden", "個人番号（マイナンバー）と思われる値は取り込めません。")
    if found:
        row_errors.extend(found)
        return None

    reference = values["reference"]
    if not _REFERENCE.match(reference):
        refuse("reference", "invalid_reference", "申請番号は英数字（- _ / . を含む）40文字以内で入力してください。")
    elif reference in seen_references:
        refuse("reference", "duplicate_reference", f"申請番号が {seen_references[reference]} 行目と重複しています。")
    else:
        seen_references[reference] = line
    mykey_id = values["mykey_id"].upper()
    try:
        mykey_id = identifiers.mykey_id(mykey_id)
    except errors.DomainError as refusal:
        refuse("mykey_id", refusal.code, refusal.message)
    amount_text = values["amount"].replace(",", "")
    amount = 0
    if not identifiers.ascii_digits(amount_text, 9):
        refuse("amount", "invalid_amount", "ポイントは整数で入力してください。")
    else:
        amount = int(amount_text)
        if not 1 <= amount <= max_amount:
            refuse("amount", "invalid_amount", f"ポイントは 1〜{max_amount} で入力してください。")
    reason = values["reason"]
    if not reason or len(reason) > 200:
        refuse("reason", "invalid_reason", "付与理由を200文字以内で入力してください。")
    expires_on = None
    if values["expires_on"]:
        try:
            expires_on = _date(values["expires_on"], today)
        except ValueError as problem:
            refuse("expires_on", "invalid_expires_on", str(problem))
    if found:
        row_errors.extend(found)
        return None
    return GrantRow(line, reference, mykey_id, amount, reason, expires_on)
