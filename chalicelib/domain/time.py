"""Time as the ledger writes it: UTC instants for records, Japan's calendar date for expiry.

Points are usable through the last day of their expiry date in Japan, which keeps no daylight saving,
so a fixed +09:00 offset is exact and needs no time-zone database on Lambda.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re

from chalicelib import errors

JST = dt.timezone(dt.timedelta(hours=9), "JST")


def posted_at(unix_seconds: float) -> str:
    """An ISO 8601 UTC instant with milliseconds; sorts as text in index range keys."""
    moment = dt.datetime.fromtimestamp(unix_seconds, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def japan_date(unix_seconds: float) -> dt.date:
    return dt.datetime.fromtimestamp(unix_seconds, JST).date()


def japan_day_start_utc(day: str) -> str:
    """The instant, written as records are stamped, at which a Japanese calendar day begins."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=JST)
    return posted_at(start.timestamp())


def japan_day_end_utc(day: str) -> str:
    """The last millisecond of a Japanese calendar day, written as records are stamped."""
    end = dt.datetime.fromisoformat(day).replace(tzinfo=JST) + dt.timedelta(days=1)
    return posted_at(end.timestamp() - 0.001)


def japan_month(month: str) -> tuple[str, str, str]:
    """A statement month `YYYY-MM` (ASCII digits, years 2000–2999) as (label, first instant, last instant),
    the instants written as records are stamped, the month's days being Japan's."""
    if not isinstance(month, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}", month):
        raise errors.ValidationFailed("month は YYYY-MM です。", field="month")
    year, month_number = int(month[:4]), int(month[5:])
    if not (2000 <= year <= 2999 and 1 <= month_number <= 12):
        raise errors.ValidationFailed("month は YYYY-MM です。", field="month")
    first = dt.datetime(year, month_number, 1, tzinfo=JST)
    after = first + dt.timedelta(days=calendar.monthrange(year, month_number)[1])
    return month, posted_at(first.timestamp()), posted_at(after.timestamp() - 0.001)
