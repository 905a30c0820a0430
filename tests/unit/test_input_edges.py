"""Inputs the fuzzer found answered with a 500 before: each is now a clear refusal."""
import json

import pytest

from chalicelib import errors
from chalicelib.api import grant_batch_handlers
from chalicelib.api.http import json_object
from chalicelib.domain import accounts, identifiers
from chalicelib.services import conversions, identity


class _Request:
    def __init__(self, body: bytes):
        self.raw_body = body


def test_json_body__integer_literal_too_long_to_convert__is_a_validation_error():
    with pytest.raises(errors.ValidationFailed):
        json_object(_Request(b'{"amount": ' + b"9" * 5000 + b"}"))


@pytest.mark.parametrize("text,expected", [("12", True), ("²", False), ("①", False), ("١٢", False), ("", False),
                                           ("9" * 19, False)])
def test_ascii_digits__only_0_to_9_within_the_length(text, expected):
    assert identifiers.ascii_digits(text) is expected


def test_luhn__non_ascii_digits__are_invalid_not_a_crash():
    assert accounts.luhn_valid("4²") is False


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "1999-12-31"])
def test_iso_date__outside_years_2000_to_2999__is_refused(value):
    with pytest.raises(errors.ValidationFailed):
        identifiers.iso_date(value, "from")


def test_partner_message__integer_too_long__is_unreadable_not_a_crash():
    assert conversions._peek('{"partner_points": ' + "9" * 5000 + "}") == (None, None, None)


def test_revocation_csv__field_longer_than_the_csv_module_reads__is_a_feed_error():
    with pytest.raises(errors.FeedInvalid):
        identity._csv_rows("serial_number\n" + "A" * 200_000 + "\n", ("serial_number",))


class _Record:
    message_id = "m-1"

    def __init__(self, body):
        self.body = body


@pytest.mark.parametrize("body", ["not json", "[]", json.dumps({"batch_id": 1}),
                                  json.dumps({"municipality_code": 252034, "batch_id": "b", "chunk_number": 0})])
def test_grant_batch_message__unreadable__is_logged_and_dropped_not_retried(body):
    assert grant_batch_handlers.post_chunk_record(_Record(body)) == {"skipped": "unreadable"}


@pytest.mark.parametrize("body", [
    json.dumps({"municipality_code": "252034", "batch_id": "b", "chunk_number": 0}).replace("0}", "1e400}"),
    json.dumps({"municipality_code": "", "batch_id": "b", "chunk_number": 0}),
    json.dumps({"municipality_code": "252034", "batch_id": "", "chunk_number": 0})])
def test_grant_batch_message__infinite_chunk_or_empty_keys__is_dropped_not_retried(body):
    assert grant_batch_handlers.post_chunk_record(_Record(body)) == {"skipped": "unreadable"}


def test_partner_message__lone_surrogate__is_unreadable_not_a_crash():
    assert conversions._peek('{"partner_id": "p", "partner_txn_id": "\\ud800"}') == (None, None, None)


@pytest.mark.parametrize("version", [True, 1.0])
def test_partner_message__version_that_only_compares_equal_to_1__is_refused(version):
    message = {"version": version, "partner_id": "p", "partner_txn_id": "t", "mykey_id": "ABCD2345",
               "municipality_code": None, "partner_points": 10, "campaign_code": None,
               "occurred_at": "2026-11-27T10:00:00+09:00"}
    with pytest.raises(Exception) as refused:
        conversions.parse_message(message)
    assert not isinstance(refused.value, (TypeError, KeyError))
