"""Section 6: tap to approval with the virtual card through PC/SC and the local HTTP API.

The local cloud starts as `make run` starts it (`python -m tools.localcloud` in a temporary data folder,
driven by the e2e tests' `LocalCloud`): DynamoDB Local, moto, `chalice local`, Debian's pcscd with the
vpcd reader and the demo card (`tools.virtual_jpki_card`, its own process) in reader "Virtual PCD 00 00".
One sample is what the shop terminal does for a payment above the PIN-free limit, with the terminal
client's own code (`terminal_client.terminal.Terminal.pay`): connect, read the certificate, PIN tries,
verify the PIN, sign the payment, write the outbox (fsync), the signed HTTP POST /v1/payments, the
answer, the outbox entry removed, disconnect. The card side alone is measured too, with
`bench.card_interaction` (the same APDUs, no HTTP), and the HTTP call alone from the terminal's timing.

pcscd and vpcd allow one user per machine: if another local cloud or test run holds them, this waits a
while and then reports the section as not measured rather than disturb it.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from pathlib import Path

from bench.operations import log
from bench.stats import rounded, summary

READER = "Virtual PCD 00 00"
PIN = "1234"
AMOUNT = 3500  # above the demo programme's PIN-free limit (3,000): the PIN path


def card_path_busy() -> str | None:
    from tools.localcloud.pcsc import PcscDaemon, _vpcd_listening, pcscd_answers

    if not PcscDaemon.available():
        return "pcscd is not installed"
    if pcscd_answers() or _vpcd_listening(35963) or _vpcd_listening(35964):
        return "pcscd/vpcd is in use by another process (a local cloud or a test run)"
    return None


class _TimedApi:
    """The terminal's ApiClient, timing each HTTP call."""

    def __init__(self, api):
        self._api = api
        self.last_ms = 0.0

    def __getattr__(self, name):
        return getattr(self._api, name)

    def call(self, *arguments, **keywords):
        started = time.perf_counter()
        try:
            return self._api.call(*arguments, **keywords)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000

    def call_with_retries(self, *arguments, **keywords):
        started = time.perf_counter()
        try:
            return self._api.call_with_retries(*arguments, **keywords)
        finally:
            self.last_ms = (time.perf_counter() - started) * 1000


class _TimedOutbox:
    """The terminal's outbox (written and fsync'd before the request, cleared after it), timed."""

    def __init__(self, outbox):
        self._outbox = outbox
        self.ms = 0.0

    def __getattr__(self, name):
        return getattr(self._outbox, name)

    def save(self, *arguments):
        started = time.perf_counter()
        try:
            return self._outbox.save(*arguments)
        finally:
            self.ms += (time.perf_counter() - started) * 1000

    def remove(self, *arguments):
        started = time.perf_counter()
        try:
            return self._outbox.remove(*arguments)
        finally:
            self.ms += (time.perf_counter() - started) * 1000


def _staff_grants(api_client, data_dir: Path, mykey_id: str, total: int) -> None:
    staff = json.loads((data_dir / "demo" / "staff.json").read_text(encoding="utf-8"))
    status, session = api_client.call("POST", "/v1/staff/sessions", {"staff_id": staff["staff_id"],
                                                                     "password": staff["password"]}, signed=False)
    if status != 201:
        raise RuntimeError(f"staff sign-in failed: {status} {session}")
    headers = {"Authorization": f"Bearer {session['token']}"}
    granted = 0
    while granted < total:
        amount = min(30_000, total - granted)  # the demo programme's approval threshold
        status, answer = api_client.call("POST", "/v1/municipalities/252034/grants", {
            "grant_id": str(uuid.uuid4()), "mykey_id": mykey_id, "amount": amount, "reason": "ベンチマーク"}, headers,
            signed=False)
        if status != 201:
            raise RuntimeError(f"grant failed: {status} {answer}")
        granted += amount


def run(iterations: int = 100, warmup: int = 10, card_only: int = 50, wait_seconds: float = 300) -> dict:
    from bench.card_interaction import one_payment_card_interaction
    from terminal_client.api import ApiClient
    from terminal_client.jpki import JpkiCard
    from terminal_client.outbox import Outbox
    from terminal_client.reader import PcscReader
    from terminal_client.signing import load_ed25519_private_key
    from terminal_client.terminal import Terminal, TerminalConfig
    from tests.e2e.conftest import LocalCloud

    deadline = time.monotonic() + wait_seconds
    while (busy := card_path_busy()) is not None and "not installed" not in busy and time.monotonic() < deadline:
        time.sleep(5)
    if busy is not None:
        log(f"card path: not measured ({busy})")
        return {"skipped": busy}

    with tempfile.TemporaryDirectory(prefix="bench-card-") as scratch:
        data_dir = Path(scratch) / "local"
        cloud = LocalCloud(data_dir)
        log("card path: starting the local cloud (DynamoDB Local, moto, chalice local, pcscd, the demo card)")
        cloud.start()
        try:
            if "カードリーダー:  なし" in cloud.output:
                return {"skipped": "the local cloud started without a card reader"}
            config = json.loads((data_dir / "demo" / "terminal-shop.json").read_text(encoding="utf-8"))
            card = json.loads((data_dir / "demo" / "card.json").read_text(encoding="utf-8"))
            api = _TimedApi(ApiClient(cloud.base_url, config["terminal_id"],
                                      load_ed25519_private_key(config["private_key"])))
            _staff_grants(ApiClient(cloud.base_url, "", None), data_dir, card["mykey_id"], (iterations + warmup) * AMOUNT)

            @contextlib.contextmanager
            def open_card():
                reader = PcscReader(READER)
                reader.connect()
                try:
                    yield JpkiCard(reader)
                finally:
                    reader.disconnect()

            outbox = _TimedOutbox(Outbox(Path(scratch) / "outbox.json"))
            terminal = Terminal(
                TerminalConfig(config["terminal_id"], config["private_key"], config["municipality_code"],
                               {key: int(value) for key, value in config["pin_free_limits"].items()}),
                api, outbox, open_card, lambda tries_left: PIN)
            log(f"card path: {warmup} warm-up taps, {iterations} measured taps of {AMOUNT} pt with the PIN")
            for _ in range(warmup):
                terminal.pay(AMOUNT)
            taps, http, outbox_ms = [], [], []
            for _ in range(iterations):
                outbox.ms = 0.0
                started = time.perf_counter()
                answer = terminal.pay(AMOUNT)
                taps.append((time.perf_counter() - started) * 1000)
                http.append(api.last_ms)
                outbox_ms.append(outbox.ms)
                if answer.get("status") != "posted":
                    raise AssertionError(f"payment not posted: {answer}")
            card_side = [one_payment_card_interaction(READER) for _ in range(card_only)]
        finally:
            cloud.interrupt()
    tap, http_summary, card_summary, outbox_summary = summary(taps), summary(http), summary(card_side), summary(outbox_ms)
    result = {
        "iterations": iterations, "amount": AMOUNT, "pin": True,
        "p50_ms": tap["p50_ms"], "p95_ms": tap["p95_ms"], "p99_ms": tap["p99_ms"], "max_ms": tap["max_ms"],
        "http_p50_ms": http_summary["p50_ms"], "http_p95_ms": http_summary["p95_ms"],
        "card_only_p50_ms": card_summary["p50_ms"], "card_only_p95_ms": card_summary["p95_ms"],
        "card_only_samples": card_only,
        "outbox_p50_ms": outbox_summary["p50_ms"], "outbox_p95_ms": outbox_summary["p95_ms"],
        "other_p50_ms": rounded(tap["p50_ms"] - http_summary["p50_ms"] - card_summary["p50_ms"] - outbox_summary["p50_ms"], 2),
        "path": "Terminal.pay → pyscard → pcscd → vpcd → virtual card (own process); HTTP to chalice local "
                "(DynamoDB Local, one Python process serving requests one at a time)",
    }
    log(f"card path: tap to approval p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
        f"(HTTP {result['http_p50_ms']} ms, card {result['card_only_p50_ms']} ms)")
    return result
