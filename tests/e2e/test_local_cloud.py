"""`make run` for real: the local cloud as a newcomer starts it, the demo terminal, Ctrl-C, persistence.

Runs `python -m tools.localcloud` (what `make run` runs) on free ports with a temporary data folder,
then drives it only through the demo terminal's command line, over HTTP to `chalice local`.
"""
from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tools.localcloud.processes import REPOSITORY_ROOT, free_port

pytestmark = pytest.mark.e2e


class LocalCloud:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.ports = {"api": free_port(), "dynamodb": free_port(), "sqs": free_port()}
        self.process: subprocess.Popen | None = None
        self.output = ""

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.localcloud", "--data-dir", str(self.data_dir), "--port", str(self.ports["api"]),
             "--dynamodb-port", str(self.ports["dynamodb"]), "--sqs-port", str(self.ports["sqs"])],
            cwd=REPOSITORY_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # As when a shell starts `make run &`: SIGINT arrives ignored, and Ctrl-C must still stop it.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            self.output += line
            if "Ctrl-C ですべて停止します" in line:
                return
        raise AssertionError("local cloud did not start:\n" + self.output)

    def terminal(self, *arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tools.demo_terminal", "--base-url", f"http://127.0.0.1:{self.ports['api']}",
             "--data-dir", str(self.data_dir), *arguments],
            cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60,
        )

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            remaining, _ = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # It ignored Ctrl-C: stop it the hard way so the test run leaves nothing behind, then fail.
            self.process.terminate()
            self.process.communicate(timeout=60)
            raise AssertionError("the local cloud did not stop on Ctrl-C")
        self.output += remaining
        return self.process.returncode


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _balance(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stderr
    return int(re.search(r"ながはまポイント）: ([\d,]+) pt", result.stdout).group(1).replace(",", ""))


def test_make_run__newcomer_pays_refunds_and_balances_persist_across_restart(tmp_path):
    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    try:
        assert "マイキーID" in cloud.output and "nagahama-admin" in cloud.output
        assert _balance(cloud.terminal("balance")) == 10_000

        paid = cloud.terminal("pay", "500")
        assert paid.returncode == 0, paid.stderr
        assert "ご利用明細" in paid.stdout and "残高: 9,500 pt" in paid.stdout
        transfer_id = re.search(r"取引ID: ([0-9a-f-]{36})", paid.stdout).group(1)

        refused = cloud.terminal("pay", "5000", "--pin", "0000")
        assert refused.returncode == 1 and "暗証番号が違います" in refused.stderr
        signed = cloud.terminal("pay", "5000", "--pin", "1234")
        assert signed.returncode == 0 and "残高: 4,500 pt" in signed.stdout

        refunded = cloud.terminal("refund", transfer_id, "200")
        assert refunded.returncode == 0 and "返金明細" in refunded.stdout and "残高: 4,700 pt" in refunded.stdout
        too_much = cloud.terminal("refund", transfer_id, "301")
        assert too_much.returncode == 1 and "refund_exceeds_payment" in too_much.stderr

        assert _balance(cloud.terminal("--terminal", "museum", "balance")) == 4_700
        assert cloud.terminal("status").stdout.strip() == "未確認の支払いはありません。"
        report = cloud.terminal("report")
        assert "付与: 10,000 pt" in report.stdout and "未使用残高: 4,700 pt" in report.stdout
    finally:
        assert cloud.interrupt() == 0
    assert "すべて停止しました" in cloud.output
    assert not any(_listening(port) for port in cloud.ports.values())

    again = LocalCloud(tmp_path / "local")
    again.start()
    try:
        # Same data folder: same card, same balance, and the demo grant is not given twice.
        assert _balance(again.terminal("balance")) == 4_700
    finally:
        assert again.interrupt() == 0


def test_demo_terminal__server_down__keeps_payment_in_outbox_then_settles_it_once(tmp_path):
    cloud = LocalCloud(tmp_path / "local")
    cloud.start()
    assert cloud.interrupt() == 0  # seeded, then stopped: the terminal now has nobody to talk to
    offline = cloud.terminal("pay", "300")
    # The balance inquiry before paying already fails, so nothing is queued and nothing can be charged.
    assert offline.returncode == 3 and "接続できません" in offline.stderr

    cloud.start()
    try:
        from tools.demo_terminal import DemoTerminal

        terminal = DemoTerminal(f"http://127.0.0.1:{cloud.ports['api']}", cloud.data_dir / "demo", "shop")
        # A payment saved to the outbox whose answer never arrived: settled with the same transfer id.
        body = {"transfer_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "municipality_code": "252034", "amount": 300,
                "card": {"certificate": terminal.card.certificate_base64}}
        terminal._save_outbox({body["transfer_id"]: body})
        assert terminal.call("POST", "/v1/payments", body)[0] == 201  # the server did post it
        settled = cloud.terminal("status")
        assert settled.returncode == 0 and "確定: 0f8fad5b" in settled.stdout
        assert cloud.terminal("status").stdout.strip() == "未確認の支払いはありません。"
        assert _balance(cloud.terminal("balance")) == 9_700  # charged once
    finally:
        cloud.interrupt()
