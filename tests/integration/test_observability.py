"""Structured logs and metrics: one JSON log line per request, embedded-format metrics for each outcome."""
from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.integration


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


def _request_lines(caplog) -> list[dict]:
    """The request log lines as Powertools' JSON formatter writes them."""
    from chalicelib.observability import get_logger

    formatter = get_logger().registered_formatter
    return [json.loads(formatter.format(record)) for record in caplog.records if record.getMessage() == "request"]


def test_payment__logs_request_line_and_counts_payments_posted(http, capsys, caplog):
    world = http.world
    mykey = world.add_card()
    world.grant(mykey, 100)
    body = {"transfer_id": str(uuid.uuid4()), "municipality_code": world.home_code, "amount": 10,
            "card": {"certificate": world.cards[mykey].certificate_base64}}
    response = http.terminal(world.shop, "POST", "/v1/payments", body)
    lines = _json_lines(capsys.readouterr().out)
    request_lines = _request_lines(caplog)
    assert request_lines[-1]["request_id"] == response.headers["X-Request-Id"]
    assert request_lines[-1]["status"] == 201 and request_lines[-1]["terminal_id"] == world.shop.terminal_id
    metrics = [line for line in lines if "_aws" in line]
    assert any(line.get("PaymentsPosted") == [1.0] for line in metrics)


def test_refusal__counted_by_error_code(http, capsys, caplog):
    world = http.world
    mykey = world.add_card()
    body = {"transfer_id": str(uuid.uuid4()), "municipality_code": world.home_code, "amount": 10,
            "card": {"certificate": world.cards[mykey].certificate_base64}}
    response = http.terminal(world.shop, "POST", "/v1/payments", body)
    assert response.json_body["error"]["code"] == "insufficient_balance"
    lines = _json_lines(capsys.readouterr().out)
    refusals = [line for line in lines if "Refusals" in line]
    assert refusals and refusals[-1]["code"] == "insufficient_balance"
    assert "code" in refusals[-1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
    request_line = _request_lines(caplog)[-1]
    assert request_line["error_code"] == "insufficient_balance" and request_line["status"] == 409
