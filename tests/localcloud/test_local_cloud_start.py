"""How `make run` behaves when a part of the local cloud will not start: words on the screen, never a traceback."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tools.localcloud import pcsc
from tools.localcloud.processes import REPOSITORY_ROOT, LocalProcessError


def test_make_run__a_port_already_taken__explains_in_japanese_without_a_traceback(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tools.localcloud", "--data-dir", str(tmp_path / "local"), "--dynamodb-port", str(port)],
            cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1
    assert "起動できませんでした" in result.stdout and str(tmp_path / "local" / "logs") in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "すべて停止しました" in result.stdout


def test_pcscd_start__reader_missing_the_first_time__starts_a_fresh_pcscd(monkeypatch, tmp_path):
    attempts = []
    monkeypatch.setattr(pcsc, "pcscd_answers", lambda: False)
    monkeypatch.setattr(pcsc.PcscDaemon, "_start_once", lambda self: attempts.append(1) or len(attempts) == 2)
    monkeypatch.setattr(pcsc.PcscDaemon, "stop", lambda self: None)
    assert pcsc.PcscDaemon(log_path=str(tmp_path / "pcscd.log")).start().reused is False
    assert len(attempts) == 2


def test_pcscd_start__reader_never_appears__says_so_with_the_log_tail(monkeypatch, tmp_path):
    log_path = tmp_path / "pcscd.log"
    log_path.write_text("IFDHCreateChannel failed\n", encoding="utf-8")
    monkeypatch.setattr(pcsc, "pcscd_answers", lambda: False)
    monkeypatch.setattr(pcsc.PcscDaemon, "_start_once", lambda self: False)
    monkeypatch.setattr(pcsc.PcscDaemon, "stop", lambda self: None)
    with pytest.raises(LocalProcessError) as refused:
        pcsc.PcscDaemon(log_path=str(log_path)).start()
    assert "vpcd リーダーが準備できませんでした" in str(refused.value)
    assert "IFDHCreateChannel failed" in str(refused.value)
