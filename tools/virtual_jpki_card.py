"""A virtual JPKI card (My Number Card, user-authentication side) for the vpcd virtual reader.

It answers the APDUs of docs/CONTRACTS.md#apdus byte-exactly: SELECT of the JPKI application and its files, READ
BINARY (refusing reads past the end), the PIN-tries query, VERIFY with three tries then blocking, and
COMPUTE DIGITAL SIGNATURE over a SHA-256 DigestInfo, padded PKCS#1 v1.5 as the card does. It speaks the
vpcd socket protocol (a 2-byte big-endian length, then a control byte or an APDU) to Debian's
`vsmartcard-vpcd` driver inside `pcscd`, so the terminal reaches it through real PC/SC.

    python -m tools.virtual_jpki_card --card .local/demo/card.json [--port 35963]

SIGUSR1 removes the card from the reader and SIGUSR2 puts it back. The PIN try counter is kept in a
state file beside the card file, as a real card keeps it across taps; `--reset-pin` clears it (the
town-hall counter's job for a real card).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import struct
import threading
import time
from pathlib import Path

from terminal_client import apdu

logger = logging.getLogger(__name__)

VPCD_POWER_OFF, VPCD_POWER_ON, VPCD_RESET, VPCD_GET_ATR = 0, 1, 2, 4
DEFAULT_VPCD_PORT = 35963


def _answer_to_reset() -> bytes:
    # TS, T0 (TD1 follows, 10 historical bytes), TD1 (T=0, TD2 follows), TD2 (T=1), history, TCK.
    historical = b"JPKIVIRTUL"
    body = bytes([0x8A, 0x80, 0x01]) + historical
    check = 0
    for byte in body:
        check ^= byte
    return bytes([0x3B]) + body + bytes([check])


ATR = _answer_to_reset()


def _status(status_word: int, data: bytes = b"") -> bytes:
    return data + status_word.to_bytes(2, "big")


class JpkiCardModel:
    """The card's files and security state; `process` turns one command APDU into one response APDU."""

    def __init__(self, private_key, certificate_der: bytes, ca_certificate_der: bytes, pin: str,
                 tries_left: int = apdu.AUTH_PIN_TRIES, on_tries_changed=None):
        self._private_key = private_key
        self._files = {
            apdu.EF_AUTH_CERTIFICATE: certificate_der,
            apdu.EF_AUTH_CA_CERTIFICATE: ca_certificate_der,
            apdu.EF_TOKEN: apdu.TOKEN_VALUE,
        }
        self._pin = pin
        self.tries_left = tries_left
        self._on_tries_changed = on_tries_changed
        self.commands: list[bytes] = []  # every APDU received, for tests that check what was sent
        self.read_past_end = False
        self.reset()

    def reset(self) -> None:
        """Power-on, reset or a new SELECT of the application: security state starts over."""
        self._application_selected = False
        self._current_file: bytes | None = None
        self._pin_verified = False

    def process(self, command: bytes) -> bytes:
        self.commands.append(command)
        if len(command) < 4:
            return _status(apdu.SW_WRONG_LENGTH)
        cla, ins, p1, p2 = command[:4]
        body = command[4:]
        if ins == 0xA4 and cla == 0x00:
            return self._select(p1, p2, body)
        if ins == 0xB0 and cla == 0x00:
            return self._read_binary(p1, p2, body)
        if ins == 0x20 and cla == 0x00:
            return self._verify(p1, p2, body)
        if ins == 0x2A and cla == 0x80:
            return self._sign(p1, p2, body)
        if cla not in (0x00, 0x80):
            return _status(apdu.SW_CLA_NOT_SUPPORTED)
        return _status(apdu.SW_INS_NOT_SUPPORTED)

    def _select(self, p1: int, p2: int, body: bytes) -> bytes:
        if not body or body[0] != len(body) - 1 or p2 != 0x0C:
            return _status(apdu.SW_WRONG_PARAMETERS if p2 != 0x0C else apdu.SW_WRONG_LENGTH)
        target = body[1:]
        if p1 == 0x04:
            if target != apdu.JPKI_AP_ID:
                return _status(apdu.SW_FILE_NOT_FOUND)
            self.reset()
            self._application_selected = True
            return _status(apdu.SW_OK)
        if p1 == 0x02:
            known = set(self._files) | {apdu.EF_AUTH_PIN, apdu.EF_AUTH_KEY, apdu.EF_SIGN_CERTIFICATE}
            if not self._application_selected or target not in known:
                return _status(apdu.SW_FILE_NOT_FOUND)
            self._current_file = target
            return _status(apdu.SW_OK)
        return _status(apdu.SW_WRONG_PARAMETERS)

    def _read_binary(self, p1: int, p2: int, body: bytes) -> bytes:
        if len(body) != 1:
            return _status(apdu.SW_WRONG_LENGTH)
        if self._current_file == apdu.EF_SIGN_CERTIFICATE:
            return _status(apdu.SW_SECURITY_NOT_SATISFIED)  # needs the signing PIN, which terminals never ask
        content = self._files.get(self._current_file) if self._current_file else None
        if content is None:
            return _status(apdu.SW_NO_CURRENT_EF if self._current_file is None else apdu.SW_INCOMPATIBLE_FILE)
        offset = (p1 << 8) | p2
        length = body[0] or 256
        if offset >= len(content):
            self.read_past_end = True
            return _status(apdu.SW_WRONG_PARAMETERS)
        chunk = content[offset:offset + length]
        if len(chunk) < length:
            self.read_past_end = True
            return _status(apdu.SW_END_OF_FILE, chunk)
        return _status(apdu.SW_OK, chunk)

    def _verify(self, p1: int, p2: int, body: bytes) -> bytes:
        if (p1, p2) != (0x00, 0x80):
            return _status(apdu.SW_WRONG_PARAMETERS)
        if self._current_file != apdu.EF_AUTH_PIN:
            return _status(apdu.SW_NO_CURRENT_EF)
        if self.tries_left == 0:
            return _status(apdu.SW_PIN_BLOCKED)
        if not body:
            return _status(apdu.SW_TRIES_LEFT_MASK | self.tries_left)
        if body[0] != len(body) - 1:
            return _status(apdu.SW_WRONG_LENGTH)
        if body[1:] == self._pin.encode("ascii"):
            self._pin_verified = True
            self._set_tries(apdu.AUTH_PIN_TRIES)
            return _status(apdu.SW_OK)
        self._pin_verified = False
        self._set_tries(self.tries_left - 1)
        return _status(apdu.SW_PIN_BLOCKED if self.tries_left == 0 else apdu.SW_TRIES_LEFT_MASK | self.tries_left)

    def _set_tries(self, tries_left: int) -> None:
        if tries_left != self.tries_left:
            self.tries_left = tries_left
            if self._on_tries_changed:
                self._on_tries_changed(tries_left)

    def _sign(self, p1: int, p2: int, body: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

        if (p1, p2) != (0x00, 0x80):
            return _status(apdu.SW_WRONG_PARAMETERS)
        if self._current_file != apdu.EF_AUTH_KEY:
            return _status(apdu.SW_NO_CURRENT_EF)
        if not self._pin_verified:
            return _status(apdu.SW_SECURITY_NOT_SATISFIED)
        if not body or body[0] + 2 != len(body) or body[-1] != 0x00:
            return _status(apdu.SW_WRONG_LENGTH)
        digest_info = body[1:-1]
        if len(digest_info) != 51 or not digest_info.startswith(apdu.SHA256_DIGEST_INFO_PREFIX):
            return _status(apdu.SW_WRONG_DATA)
        # Prehashed SHA-256 PKCS#1 v1.5 is exactly "pad this DigestInfo and apply the private key".
        signature = self._private_key.sign(digest_info[19:], padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return _status(apdu.SW_OK, signature)


class VirtualCardConnection:
    """Holds the card in the vpcd reader: connects to its port and answers until removed or stopped.

    `remove_before` lets a test pull the card out when a given instruction byte arrives (for example
    0x2A, the signature), to show what the terminal does with a card removed mid-transaction.
    """

    def __init__(self, card: JpkiCardModel, port: int = DEFAULT_VPCD_PORT, host: str = "127.0.0.1"):
        self.card = card
        self.port = port
        self.host = host
        self.remove_before: int | None = None
        self._inserted = threading.Event()
        self._stopped = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "VirtualCardConnection":
        self._inserted.set()
        self._thread = threading.Thread(target=self._run, name=f"virtual-card-{self.port}", daemon=True)
        self._thread.start()
        return self

    def insert(self) -> None:
        self._inserted.set()

    def remove(self) -> None:
        self._inserted.clear()
        self._close()

    def stop(self) -> None:
        self._stopped.set()
        self.remove()
        if self._thread:
            self._thread.join(timeout=5)

    def _close(self) -> None:
        connection, self._socket = self._socket, None
        if connection is not None:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _run(self) -> None:
        while not self._stopped.is_set():
            if not self._inserted.wait(timeout=0.2):
                continue
            try:
                connection = socket.create_connection((self.host, self.port), timeout=2)
            except OSError:
                time.sleep(0.2)  # pcscd (and its vpcd reader) may not be up yet
                continue
            # Without these, vpcd and the card wait on each other's delayed ACKs: ~44 ms per APDU.
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if hasattr(socket, "TCP_QUICKACK"):
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            connection.settimeout(None)
            self._socket = connection
            try:
                self._serve(connection)
            except OSError:
                pass
            finally:
                self._close()
                self.card.reset()

    def _serve(self, connection: socket.socket) -> None:
        while True:
            message = self._receive(connection)
            if message is None:
                return
            if len(message) == 1:
                control = message[0]
                if control in (VPCD_POWER_ON, VPCD_POWER_OFF, VPCD_RESET):
                    self.card.reset()
                elif control == VPCD_GET_ATR:
                    self._send(connection, ATR)
                continue
            if self.remove_before is not None and len(message) > 1 and message[1] == self.remove_before:
                self.remove_before = None
                self.card.commands.append(message)
                self.remove()
                return
            self._send(connection, self.card.process(message))

    @staticmethod
    def _receive(connection: socket.socket) -> bytes | None:
        header = _receive_exactly(connection, 2)
        if header is None:
            return None
        (length,) = struct.unpack("!H", header)
        return _receive_exactly(connection, length)

    @staticmethod
    def _send(connection: socket.socket, payload: bytes) -> None:
        connection.sendall(struct.pack("!H", len(payload)) + payload)
        if hasattr(socket, "TCP_QUICKACK"):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _receive_exactly(connection: socket.socket, count: int) -> bytes | None:
    data = bytearray()
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    if hasattr(socket, "TCP_QUICKACK"):
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    return bytes(data)


def card_from_file(card_path: Path, ca_certificate_der: bytes, reset_pin: bool = False) -> JpkiCardModel:
    """A card model from a demo card file; the PIN try counter lives in `<card>.state.json`."""
    from tools.devpki import DevCard

    data = json.loads(card_path.read_text(encoding="utf-8"))
    dev_card = DevCard.from_pem_pair(data)
    state_path = card_path.with_suffix(".state.json")
    tries = apdu.AUTH_PIN_TRIES
    if state_path.exists() and not reset_pin:
        tries = json.loads(state_path.read_text(encoding="utf-8")).get("tries_left", tries)

    def save(tries_left: int) -> None:
        state_path.write_text(json.dumps({"tries_left": tries_left}), encoding="utf-8")

    save(tries)
    return JpkiCardModel(dev_card.private_key, dev_card.certificate_der, ca_certificate_der, data["pin"], tries, save)


def main(argv: list[str] | None = None) -> int:
    from tools.devpki import DevCertificateAuthority

    parser = argparse.ArgumentParser(description="Virtual JPKI card for the vpcd reader")
    parser.add_argument("--card", required=True, help="card file written by the demo seed (card.json)")
    parser.add_argument("--ca", help="the development CA file (key and certificate PEM)")
    parser.add_argument("--port", type=int, default=DEFAULT_VPCD_PORT)
    parser.add_argument("--reset-pin", action="store_true")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)

    card_path = Path(arguments.card)
    ca_path = Path(arguments.ca) if arguments.ca else card_path.parent / "dev-ca.key-and-cert.pem"
    from cryptography.hazmat.primitives import serialization

    ca_der = DevCertificateAuthority.from_pem(ca_path.read_bytes()).certificate.public_bytes(serialization.Encoding.DER)
    holder = VirtualCardConnection(card_from_file(card_path, ca_der, arguments.reset_pin), arguments.port).start()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: holder.remove())
    signal.signal(signal.SIGUSR2, lambda *_: holder.insert())
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda *_: stop.set())
    logger.info("virtual JPKI card on vpcd port %s", arguments.port)
    stop.wait()
    holder.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
