"""The local cloud as `make run` starts it, driven from tests as a newcomer would."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from tools.localcloud.processes import REPOSITORY_ROOT, free_port


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
        raise AssertionError("local cloud did not start:\n" + self.output + self._log_tails())

    def _log_tails(self) -> str:
        # What CI keeps of a failed start is this message: the services' own logs say why.
        tails = []
        for log in sorted((self.data_dir / "logs").glob("*.log")):
            tails.append(f"\n--- {log.name} ---\n" + log.read_bytes()[-2000:].decode("utf-8", "replace"))
        return "".join(tails)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def terminal(self, *arguments: str, terminal: str = "shop", reader: str = "Virtual PCD 00 00", stdin: str = "",
                 base_url: str | None = None, outbox: str | None = None) -> subprocess.CompletedProcess:
        """The terminal client's command line, reading the card through PC/SC."""
        options = ["--base-url", base_url or self.base_url, "--config", str(self.data_dir / "demo" / f"terminal-{terminal}.json"),
                   "--reader", reader]
        if outbox:
            options += ["--outbox", outbox]
        return subprocess.run([sys.executable, "-m", "terminal_client", *options, *arguments], cwd=REPOSITORY_ROOT,
                              capture_output=True, text=True, timeout=90, input=stdin)

    def staff(self, *arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tools.demo_staff", "--base-url", self.base_url, "--data-dir", str(self.data_dir), *arguments],
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


