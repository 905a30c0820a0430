"""The terminal through real PC/SC: pyscard → pcscd → vsmartcard-vpcd → the virtual JPKI card.

The local cloud runs as `make run` runs it; this module's card sits in the second vpcd reader
("Virtual PCD 00 01"), held by this process so that tests can pull it out mid-transaction and watch
every APDU. Requests to the platform can go through a proxy that loses answers after the server
has processed them.
"""
from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from terminal_client import apdu
from tests.e2e.conftest import LocalCloud
from tools.devpki import DevCertificateAuthority
from tools.localcloud.processes import REPOSITORY_ROOT
from tools.localcloud.pcsc import wait_for_card, wait_for_no_card
from tools.virtual_jpki_card import JpkiCardModel, VirtualCardConnection

pytestmark = pytest.mark.e2e
READER = "Virtual PCD 00 01"


class AnswerLosingProxy:
    """Forwards HTTP requests to the platform; while `lose_answers` > 0 it drops the answer of each one."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.lose_answers = 0
        self.forwarded: list[bytes] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket):
        with client:
            request = self._read_request(client)
            self.forwarded.append(request)
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                upstream.sendall(request)
                response = b""
                while chunk := upstream.recv(65536):
                    response += chunk
            if self.lose_answers > 0:
                self.lose_answers -= 1
                return  # the platform has processed the request; its answer never reaches the terminal
            client.sendall(response)

    @staticmethod
    def _read_request(client: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += client.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1)) if b"ength:" in head else 0
        while len(body) < length:
            body += client.recv(65536)
        return head + b"\r\n\r\n" + body

    def close(self):
        self._server.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    cloud = LocalCloud(tmp_path_factory.mktemp("card") / "local")
    cloud.start()
    yield cloud
    cloud.interrupt()


@pytest.fixture(scope="module")
def card(cloud):
    """A resident's card in reader 00 01, registered through PC/SC and holding 50,000 points."""
    ca = DevCertificateAuthority.from_pem((cloud.data_dir / "demo" / "dev-ca.key-and-cert.pem").read_bytes())
    dev_card = ca.issue_card()
    model = JpkiCardModel(dev_card.private_key, dev_card.certificate_der,
                          ca.certificate.public_bytes(serialization.Encoding.DER), "4321")
    holder = VirtualCardConnection(model, port=35964).start()
    wait_for_card(READER)
    mykey_id = _register_through_pcsc(cloud.base_url)
    # Two grants of 25,000: the demo programme asks a second person to approve anything above 30,000.
    _staff_grant(cloud, mykey_id, 25_000)
    granted = _staff_grant(cloud, mykey_id, 25_000)
    assert granted["balance_after"] == 50_000
    yield holder, model, mykey_id
    holder.stop()


def _post(url: str, body: dict, headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        # The platform's answer says why (its code and message), which the bare status does not.
        raise AssertionError(f"{url}: {error.code} {error.read().decode('utf-8', 'replace')}") from error


def _register_through_pcsc(base_url: str) -> str:
    """A resident registering at home: the platform's challenge, signed by the card after the PIN."""
    from terminal_client.jpki import JpkiCard
    from terminal_client.reader import PcscReader

    challenge = _post(f"{base_url}/v1/challenges", {"purpose": "registration"})
    reader = PcscReader(READER)
    reader.connect()
    try:
        card = JpkiCard(reader)
        certificate = card.read_auth_certificate()
        assert card.pin_tries_left() == 3
        card.verify_pin("4321")
        signature = card.sign(challenge["message_to_sign"].encode())
    finally:
        reader.disconnect()
    registered = _post(f"{base_url}/v1/registrations", {
        "challenge_id": challenge["challenge_id"], "home_municipality_code": "252034",
        "card": {"certificate": base64.b64encode(certificate).decode(), "signature": base64.b64encode(signature).decode()},
    })
    return registered["mykey_id"]


def _staff_grant(cloud, mykey_id: str, amount: int) -> dict:
    staff = json.loads((cloud.data_dir / "demo" / "staff.json").read_text())
    session = _post(f"{cloud.base_url}/v1/staff/sessions", {"staff_id": staff["staff_id"], "password": staff["password"]})
    return _post(f"{cloud.base_url}/v1/municipalities/252034/grants",
                 {"grant_id": str(uuid.uuid4()), "mykey_id": mykey_id, "amount": amount, "reason": "テスト"},
                 {"Authorization": f"Bearer {session['token']}"})


def _balance(cloud) -> int:
    result = cloud.terminal("balance", reader=READER)
    assert result.returncode == 0, result.stderr
    return int(re.search(r"ながはまポイント）: ([\d,]+) pt", result.stdout).group(1).replace(",", ""))


def _payment_requests(cloud) -> int:
    log = (cloud.data_dir / "logs" / "chalice.log").read_text(encoding="utf-8", errors="replace")
    return log.count('"POST /v1/payments HTTP/1.1"')


def test_tap_pin_pay_receipt__apdus_are_the_contract_sequence(cloud, card):
    _, model, _ = card
    before = _balance(cloud)
    model.commands.clear()
    paid = cloud.terminal("pay", "5000", reader=READER, stdin="4321\n")
    assert paid.returncode == 0, paid.stderr
    assert "ご利用明細" in paid.stdout and f"残高: {before - 5000:,} pt" in paid.stdout
    sent = model.commands
    assert sent[0] == apdu.SELECT_JPKI_AP and sent[1] == apdu.select_ef(apdu.EF_AUTH_CERTIFICATE)
    assert sent[2] == apdu.read_binary(0, 4)
    assert apdu.select_ef(apdu.EF_AUTH_PIN) in sent and apdu.PIN_TRIES_LEFT in sent and apdu.verify_pin("4321") in sent
    assert sent[-2] == apdu.select_ef(apdu.EF_AUTH_KEY) and sent[-1][:5] == bytes.fromhex("802A008033")
    assert not model.read_past_end
    assert _balance(cloud) == before - 5000


def test_wrong_pin_three_times__blocked_and_no_request_reaches_the_server(cloud, card):
    _, model, _ = card
    before_requests = _payment_requests(cloud)
    before = _balance(cloud)
    refused = cloud.terminal("pay", "5000", reader=READER, stdin="0000\n0000\n0000\n")
    assert refused.returncode == 4 and "ロック" in refused.stderr
    assert model.tries_left == 0
    assert not any(command[:2] == b"\x80\x2a" for command in model.commands[-3:])
    again = cloud.terminal("pay", "5000", reader=READER, stdin="4321\n")
    assert again.returncode == 4 and "ロック" in again.stderr
    assert _payment_requests(cloud) == before_requests
    assert _balance(cloud) == before
    model.tries_left = apdu.AUTH_PIN_TRIES  # the town hall resets the PIN


def test_card_removed_mid_transaction__clear_error_and_no_charge(cloud, card):
    holder, model, _ = card
    before_requests = _payment_requests(cloud)
    before = _balance(cloud)
    holder.remove_before = 0x2A  # pulled out just as the card is asked to sign
    removed = cloud.terminal("pay", "5000", reader=READER, stdin="4321\n")
    assert removed.returncode == 4 and "カードが取り外されました" in removed.stderr
    assert _payment_requests(cloud) == before_requests
    wait_for_no_card(READER)
    holder.insert()
    wait_for_card(READER)
    assert _balance(cloud) == before


def test_answer_lost_after_the_server_posted__retry_returns_the_same_transfer_charged_once(cloud, card, tmp_path):
    before = _balance(cloud)
    proxy = AnswerLosingProxy(cloud.ports["api"])
    try:
        proxy.lose_answers = 1
        paid = cloud.terminal("pay", "700", reader=READER, base_url=f"http://127.0.0.1:{proxy.port}",
                              outbox=str(tmp_path / "outbox.json"))
        assert paid.returncode == 0, paid.stderr
        transfer_id = re.search(r"取引ID: ([0-9a-f-]{36})", paid.stdout).group(1)
        posts = [request for request in proxy.forwarded if request.startswith(b"POST /v1/payments")]
        assert len(posts) == 2 and all(transfer_id.encode() in request for request in posts)
        assert _balance(cloud) == before - 700
    finally:
        proxy.close()


def test_no_answer_at_all__payment_kept_then_settled_by_status_once(cloud, card, tmp_path):
    before = _balance(cloud)
    outbox = tmp_path / "outbox.json"
    proxy = AnswerLosingProxy(cloud.ports["api"])
    try:
        proxy.lose_answers = 99
        pending = cloud.terminal("pay", "900", reader=READER, base_url=f"http://127.0.0.1:{proxy.port}", outbox=str(outbox))
        assert pending.returncode == 3 and "未確定" in pending.stderr
        [transfer_id] = json.loads(outbox.read_text())
        assert _balance(cloud) == before - 900  # the server did post it
        proxy.lose_answers = 0
        settled = cloud.terminal("status", reader=READER, base_url=f"http://127.0.0.1:{proxy.port}", outbox=str(outbox))
        assert settled.returncode == 0 and f"確定: {transfer_id}" in settled.stdout
        assert json.loads(outbox.read_text()) == {}
        assert _balance(cloud) == before - 900  # charged once
    finally:
        proxy.close()


def test_facility_mode__lookup_by_tap(cloud, card):
    _, _, mykey_id = card
    terminal_keys = json.loads((cloud.data_dir / "demo" / "terminal-museum.json").read_text())
    from terminal_client.api import ApiClient
    from terminal_client.signing import load_ed25519_private_key

    api = ApiClient(cloud.base_url, terminal_keys["terminal_id"], load_ed25519_private_key(terminal_keys["private_key"]))
    certificate = base64.b64encode(card[1]._files[apdu.EF_AUTH_CERTIFICATE]).decode()
    status, _ = api.call("POST", "/v1/facility-links", {"card": {"certificate": certificate}, "local_id": "MUSEUM-0042"})
    assert status == 201
    looked_up = cloud.terminal("lookup", terminal="museum", reader=READER)
    assert looked_up.returncode == 0 and "利用者番号: MUSEUM-0042" in looked_up.stdout


def test_keygen__prints_the_public_key_to_register(cloud, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "new-terminal.json"
    result = subprocess.run([sys.executable, "-m", "terminal_client", "keygen", "--terminal-id", "shop-2", "--out", str(out)],
                            capture_output=True, text=True, cwd=REPOSITORY_ROOT)
    assert result.returncode == 0, result.stderr
    written = json.loads(out.read_text())
    assert result.returncode == 0 and written["public_key"] in result.stdout and written["terminal_id"] == "shop-2"
    assert base64.b64decode(written["public_key"]).__len__() == 32


def test_no_reader_and_no_card__are_said_clearly(cloud, card):
    holder, _, _ = card
    missing = cloud.terminal("balance", reader="Some Other Reader")
    assert missing.returncode == 4 and "カードリーダーが見つかりません" in missing.stderr
    holder.remove()
    wait_for_no_card(READER)
    try:
        empty = cloud.terminal("pay", "100", reader=READER)
        assert empty.returncode == 4 and "カードが置かれていません" in empty.stderr
    finally:
        holder.insert()
        wait_for_card(READER)
