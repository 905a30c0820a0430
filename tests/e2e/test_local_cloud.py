"""`make run` for real: the local cloud as a newcomer starts it, the terminal client, Ctrl-C, persistence.

Runs `python -m tools.localcloud` (what `make run` runs) on free ports with a temporary data folder,
then drives it only through command lines: the terminal client reading the virtual card over PC/SC and
talking HTTP to `chalice local`, and the demo staff tool.
"""
from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import sys

import pytest

from tests.e2e.conftest import LocalCloud
from tools.localcloud.processes import REPOSITORY_ROOT

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _balance(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stderr
    return int(re.search(r"ながはまポイント）: ([\d,]+) pt", result.stdout).group(1).replace(",", ""))


def test_make_run__newcomer_pays_with_the_card_refunds_and_balances_persist(tmp_path):
    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    try:
        assert "マイキーID" in cloud.output and "nagahama-admin" in cloud.output and "Virtual PCD 00 00" in cloud.output
        # The printed partner command runs as it is in a shell with no AWS set-up.
        assert "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local" in cloud.output
        assert _balance(cloud.terminal("balance")) == 10_000

        paid = cloud.terminal("pay", "500")
        assert paid.returncode == 0, paid.stderr
        assert "ご利用明細" in paid.stdout and "残高: 9,500 pt" in paid.stdout
        transfer_id = re.search(r"取引ID: ([0-9a-f-]{36})", paid.stdout).group(1)

        signed = cloud.terminal("pay", "5000", stdin="1234\n")
        assert signed.returncode == 0, signed.stderr
        assert "暗証番号" in signed.stdout and "残高: 4,500 pt" in signed.stdout

        refunded = cloud.terminal("refund", transfer_id, "200")
        assert refunded.returncode == 0 and "返金明細" in refunded.stdout and "残高: 4,700 pt" in refunded.stdout
        too_much = cloud.terminal("refund", transfer_id, "301")
        assert too_much.returncode == 1 and "refund_exceeds_payment" in too_much.stderr

        assert _balance(cloud.terminal("balance", terminal="museum")) == 4_700
        assert cloud.terminal("status").stdout.strip() == "未確定の支払いはありません。"
        report = cloud.staff("report")
        assert "付与: 10,000 pt" in report.stdout and "未使用残高: 4,700 pt" in report.stdout
        granted = cloud.staff("grant", "300")
        assert granted.returncode == 0 and "残高 5,000 pt" in granted.stdout

        # A partner's signed conversion through the SQS endpoint, consumed by make run's poller.
        mykey_id = re.search(r"マイキーID ([A-Z2-9]{8})", cloud.output).group(1)
        partner_file = str(cloud.data_dir / "demo" / "partner-demo-airline.json")
        converted = subprocess.run(
            [sys.executable, "examples/send_conversion.py", "--partner-file", partner_file,
             "--mykey-id", mykey_id, "--partner-points", "1000", "--municipality", "252034", "--txn-id", "e2e-conversion-1"],
            cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{cloud.ports['sqs']}",
                 "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "ap-northeast-1"},
        )
        assert converted.returncode == 0, converted.stderr
        assert '"status": "credited"' in converted.stdout and '"points": 500' in converted.stdout
        assert _balance(cloud.terminal("balance")) == 5_500

        # The partner reconciles the day over the signed read API, from its own record of what it sent.
        sent = tmp_path / "sent.jsonl"
        sent.write_text('{"partner_txn_id": "e2e-conversion-1", "partner_points": 1000}\n', encoding="utf-8")
        japan_today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=9))).date().isoformat()
        reconciled = subprocess.run(
            [sys.executable, "examples/reconcile_day.py", "--partner-file", partner_file, "--base-url", cloud.base_url,
             "--date", japan_today, "--sent", str(sent)],
            cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60)
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert "一致 / matched: 1\n  e2e-conversion-1: 1,000 → 500 pt (252034," in reconciled.stdout

        _onboard_a_second_municipality(cloud, tmp_path)
    finally:
        assert cloud.interrupt() == 0
    assert "すべて停止しました" in cloud.output
    # Ctrl-C stops the poller and the stream thread before their endpoints: no traceback on the screen.
    assert "Traceback" not in cloud.output, cloud.output[-3000:]
    assert not any(_listening(port) for port in [*cloud.ports.values(), 35963])

    again = LocalCloud(tmp_path / "local")
    again.start()
    try:
        # Same data folder: same card, same balance, and the demo grant is not given twice.
        assert _balance(again.terminal("balance")) == 5_500
    finally:
        assert again.interrupt() == 0
    assert "Traceback" not in again.output, again.output[-3000:]


def _onboard_a_second_municipality(cloud, tmp_path) -> None:
    """One command onboards a municipality from a CloudFormation parameter file, as its stack would in AWS."""
    import json
    import urllib.request

    parameters = tmp_path / "toshima.parameters.json"
    parameters.write_text(json.dumps([
        {"ParameterKey": key, "ParameterValue": value} for key, value in {
            "MunicipalityCode": "131164", "MunicipalityName": "豊島区", "PointName": "としまポイント",
            "ExpiryRule": "months:12", "PinFreeLimit": "2000", "MaxAmountPerOperation": "30000",
            "ApprovalThreshold": "10000", "AnnualBudget": "5000000", "FirstStaffId": "toshima-admin"}.items()],
        ensure_ascii=False), encoding="utf-8")
    onboarded = subprocess.run(
        [sys.executable, "-m", "tools.onboard", str(parameters), "--first-staff-password", "toshima-first-password",
         "--data-dir", str(cloud.data_dir)], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60)
    assert onboarded.returncode == 0, onboarded.stderr
    assert "豊島区（131164）を登録しました" in onboarded.stdout

    def call(method, path, body=None, token=None):
        request = urllib.request.Request(cloud.base_url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    token = call("POST", "/v1/staff/sessions", {"staff_id": "toshima-admin", "password": "toshima-first-password"})["token"]
    programme = call("GET", "/v1/municipalities/131164/programme", token=token)
    assert (programme["name"], programme["expiry_rule"], programme["approval_threshold"]) == (
        "豊島区", {"kind": "months_after_grant", "months": 12}, 10_000)
    assert call("GET", "/v1/municipalities/131164/budget", token=token)["budget_remaining"] == 5_000_000
