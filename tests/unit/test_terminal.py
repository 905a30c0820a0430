"""The terminal's payment flow with a fake card and a fake server: outbox, retries, PIN decisions."""
from __future__ import annotations

import contextlib

import pytest

from terminal_client.api import Unreachable
from terminal_client.jpki import PinBlocked, WrongPin
from terminal_client.outbox import Outbox
from terminal_client.reader import CardRemoved
from terminal_client.signing import new_terminal_key
from terminal_client.terminal import PaymentPending, Terminal, TerminalConfig


class FakeCard:
    def __init__(self, pin="1234", tries=3, remove_on=None):
        self.pin, self.tries, self.remove_on, self.calls = pin, tries, remove_on, []

    def _step(self, name):
        self.calls.append(name)
        if name == self.remove_on:
            raise CardRemoved()

    def read_auth_certificate(self):
        self._step("read")
        return b"\x30\x03\x02\x01\x01"

    def pin_tries_left(self):
        self._step("tries")
        return self.tries

    def verify_pin(self, pin):
        self._step("verify")
        if pin != self.pin:
            self.tries -= 1
            if self.tries == 0:
                raise PinBlocked()
            raise WrongPin(self.tries)

    def sign(self, message):
        self._step("sign")
        return b"\x01" * 256


class FakeApi:
    """Answers like the server; `lose_answers` drops that many answers after the server posted."""

    def __init__(self, lose_answers=0, unreachable=False):
        self.posted, self.requests, self.lose_answers, self.unreachable = {}, [], lose_answers, unreachable

    def call(self, method, path, body=None, headers=None, signed=True):
        self.requests.append((method, path, body))
        if self.unreachable:
            raise Unreachable("down")
        if path == "/v1/payments":
            answer = self.posted.setdefault(body["transfer_id"], {
                "transfer_id": body["transfer_id"], "status": "posted", "amount": body["amount"],
                "municipality_code": body["municipality_code"], "balance_after": 1000 - body["amount"], "posted_at": "x"})
            if self.lose_answers:
                self.lose_answers -= 1
                raise Unreachable("answer lost")
            return 201, answer
        raise AssertionError(path)

    def call_with_retries(self, method, path, body):
        for attempt in range(3):
            try:
                return self.call(method, path, body)
            except Unreachable:
                if attempt == 2:
                    raise


def _terminal(tmp_path, card, api, pins=("1234",)):
    private, _ = new_terminal_key()
    answers = iter(pins)

    @contextlib.contextmanager
    def open_card():
        yield card

    config = TerminalConfig("t-1", private, "252034", {"252034": 3000})
    return Terminal(config, api, Outbox(tmp_path / "outbox.json"), open_card, lambda tries: next(answers))


def test_pay__below_limit__no_pin_asked(tmp_path):
    card, api = FakeCard(), FakeApi()
    _terminal(tmp_path, card, api).pay(3000)
    assert card.calls == ["read"] and "signature" not in api.requests[0][2]["card"]


def test_pay__above_limit__pin_then_signature_then_one_request(tmp_path):
    card, api = FakeCard(), FakeApi()
    _terminal(tmp_path, card, api).pay(3001)
    assert card.calls == ["read", "tries", "verify", "sign"]
    assert len(api.requests) == 1 and api.requests[0][2]["card"]["signed_at"] > 0


def test_pay__pin_blocked_after_three_wrong__nothing_sent(tmp_path):
    card, api = FakeCard(), FakeApi()
    with pytest.raises(PinBlocked):
        _terminal(tmp_path, card, api, pins=("0000", "1111", "2222")).pay(5000)
    assert api.requests == [] and Outbox(tmp_path / "outbox.json").entries() == {}


def test_pay__card_removed_before_signing__nothing_sent(tmp_path):
    card, api = FakeCard(remove_on="sign"), FakeApi()
    with pytest.raises(CardRemoved):
        _terminal(tmp_path, card, api).pay(5000)
    assert api.requests == [] and Outbox(tmp_path / "outbox.json").entries() == {}


def test_pay__answer_lost_once__retried_with_the_same_id_and_charged_once(tmp_path):
    api = FakeApi(lose_answers=1)
    receipt = _terminal(tmp_path, FakeCard(), api).pay(500)
    ids = {body["transfer_id"] for _, _, body in api.requests}
    assert len(api.requests) == 2 and ids == {receipt["transfer_id"]} and len(api.posted) == 1
    assert Outbox(tmp_path / "outbox.json").entries() == {}


def test_pay__no_answer_at_all__stays_in_outbox_and_status_settles_it(tmp_path):
    api = FakeApi(lose_answers=3)
    terminal = _terminal(tmp_path, FakeCard(), api)
    with pytest.raises(PaymentPending) as pending:
        terminal.pay(500)
    assert list(Outbox(tmp_path / "outbox.json").entries()) == [pending.value.transfer_id]
    [(transfer_id, answer, problem)] = terminal.status()
    assert transfer_id == pending.value.transfer_id and answer["transfer_id"] == transfer_id and problem is None
    assert len(api.posted) == 1 and Outbox(tmp_path / "outbox.json").entries() == {}


def test_outbox__written_before_the_request_is_sent(tmp_path):
    seen = []

    class WatchingApi(FakeApi):
        def call(self, method, path, body=None, headers=None, signed=True):
            seen.append(dict(Outbox(tmp_path / "outbox.json").entries()))
            return super().call(method, path, body, headers, signed)

    _terminal(tmp_path, FakeCard(), WatchingApi()).pay(100)
    assert len(seen[0]) == 1
