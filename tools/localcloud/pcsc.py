"""PC/SC for the local cloud and the tests: Debian's `pcscd` with the vpcd virtual reader, and a card.

There is one pcscd per machine: if one already answers, it is used and left running; otherwise one is
started in the foreground, stopped by its PID and waited for. The vpcd driver gives two readers,
"Virtual PCD 00 00" (port 35963) and "Virtual PCD 00 01" (port 35964); a virtual card connects to one.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from tools.localcloud.processes import LOG_TAIL_CHARACTERS, REPOSITORY_ROOT, LocalProcessError, stop_process

PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_POLL_MARGIN_SECONDS = 1.0
PCSCD_START_ATTEMPTS = 2
READER_BY_PORT = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}


def pcscd_answers() -> bool:
    if not PCSCD_SOCKET.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(PCSCD_SOCKET))
        except OSError:
            return False
    return True


def _vpcd_listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PcscDaemon:
    def __init__(self, log_path: str | None = None, ready_timeout_seconds: float = 20):
        self._log_path = log_path
        self._ready_timeout_seconds = ready_timeout_seconds
        self._process: subprocess.Popen | None = None
        self.reused = False

    @staticmethod
    def available() -> bool:
        return shutil.which("pcscd") is not None or Path("/usr/sbin/pcscd").exists()

    def start(self) -> "PcscDaemon":
        if pcscd_answers() and _vpcd_listening(35963):
            self.reused = True
            return self
        # Once in CI a pcscd started straight after another had stopped never opened the vpcd reader; a
        # second, fresh pcscd is cheap (0.1 s when all is well), so one more try comes before giving up.
        for _ in range(PCSCD_START_ATTEMPTS):
            if self._start_once():
                return self
            self.stop()
        raise LocalProcessError("pcscd の vpcd リーダーが準備できませんでした。" + self._log_tail())

    def _start_once(self) -> bool:
        binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
        PCSCD_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen([binary, "--foreground", "--info"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._ready_timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalProcessError("pcscd が起動できませんでした（pcscd と vsmartcard-vpcd が必要です）。" + self._log_tail())
            if pcscd_answers() and _vpcd_listening(35963):
                return True
            time.sleep(0.1)
        return False

    def _log_tail(self) -> str:
        if not self._log_path or not Path(self._log_path).exists():
            return ""
        tail = Path(self._log_path).read_bytes()[-LOG_TAIL_CHARACTERS:].decode("utf-8", "replace")
        return f"\npcscd のログ（{self._log_path}）の末尾:\n{tail}"

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None


def wait_for_card(reader_name: str, timeout_seconds: float = 20) -> None:
    """Poll until the reader reports a card that answers the JPKI application select."""
    from terminal_client.jpki import JpkiCard
    from terminal_client.reader import CardReaderError, PcscReader

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        reader = PcscReader(reader_name)
        try:
            reader.connect()
            JpkiCard(reader).select_application()
            return
        except CardReaderError:
            time.sleep(0.1)
        finally:
            reader.disconnect()
    raise LocalProcessError(f"{reader_name} にカードが現れませんでした。")


def wait_for_no_card(reader_name: str, timeout_seconds: float = 20) -> None:
    """Wait until pcscd's own reader state says empty: a card put back sooner is never noticed as new."""
    from smartcard import scard

    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result != scard.SCARD_S_SUCCESS:
        raise LocalProcessError("pcscd に接続できません。")
    try:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            result, states = scard.SCardGetStatusChange(context, 100, [(reader_name, scard.SCARD_STATE_UNAWARE)])
            if result == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_EMPTY:
                # A card pulled out during a command is marked empty at once, but pcscd's polling thread
                # (every 400 ms) must also see the reader empty, or it never treats the card's return as a
                # new insertion and the reader stays "no card" (measured: 0.3 s fails, 1 s works).
                time.sleep(PCSCD_POLL_MARGIN_SECONDS)
                return
            time.sleep(0.05)
    finally:
        scard.SCardReleaseContext(context)
    raise LocalProcessError(f"{reader_name} からカードが取り外されませんでした。")


class VirtualCardProcess:
    """`python -m tools.virtual_jpki_card` in its own process, for `make run`."""

    def __init__(self, card_path: Path, port: int, log_path: str | None = None):
        self._card_path = card_path
        self.port = port
        self._log_path = log_path
        self._process: subprocess.Popen | None = None

    def start(self) -> "VirtualCardProcess":
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.virtual_jpki_card", "--card", str(self._card_path), "--port", str(self.port)],
            cwd=REPOSITORY_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_card(READER_BY_PORT[self.port])
        return self

    def stop(self) -> None:
        stop_process(self._process)
        self._process = None
