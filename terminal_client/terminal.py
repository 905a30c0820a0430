"""What a shop or facility terminal does: pay, refund, balance, facility lookup, settle its outbox.

The card is reached through `open_card()`, a context manager yielding something with the `JpkiCard`
methods (the card on a PC/SC reader, or a software card in development). The PIN is asked only when a
payment is above the programme's PIN-free limit, and before anything is sent: a blocked PIN or a card
pulled out mid-way ends the payment with nothing sent and nothing charged.
"""
from __future__ import annotations

import base64
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from terminal_client.api import ApiClient, Unreachable
from terminal_client.jpki import PinBlocked, WrongPin
from terminal_client.outbox import Outbox
from terminal_client.signing import payment_message


class ServerRefused(Exception):
    def __init__(self, answer: dict, status: int):
        error = answer.get("error", {})
        self.code = error.get("code", "unknown")
        self.status = status
        self.message = error.get("message", "サーバーがリクエストを受け付けませんでした。")
        super().__init__(f"{self.message}（{self.code}）")


class PaymentPending(Exception):
    """Sent, but no answer came: the payment stays in the outbox until `status` settles it."""

    def __init__(self, transfer_id: str):
        super().__init__(transfer_id)
        self.transfer_id = transfer_id


@dataclass
class TerminalConfig:
    terminal_id: str
    private_key: str  # base64 of the raw Ed25519 private key
    municipality_code: str | None = None
    pin_free_limits: dict[str, int] = field(default_factory=dict)


def verify_pin_with_prompt(card, ask_pin: Callable[[int], str]) -> None:
    """Ask for the PIN until the card accepts it; the card blocks it after its third wrong try."""
    tries_left = card.pin_tries_left()
    while True:
        if tries_left == 0:
            raise PinBlocked()
        try:
            card.verify_pin(ask_pin(tries_left))
            return
        except WrongPin as wrong:
            tries_left = wrong.tries_left


class Terminal:
    def __init__(self, config: TerminalConfig, api: ApiClient, outbox: Outbox,
                 open_card: Callable[[], contextlib.AbstractContextManager], ask_pin: Callable[[int], str]):
        self.config = config
        self.api = api
        self.outbox = outbox
        self._open_card = open_card
        self._ask_pin = ask_pin

    # -- payments -------------------------------------------------------------------------------------

    def pay(self, amount: int, municipality_code: str | None = None) -> dict:
        code = municipality_code or self.config.municipality_code
        if not code:
            raise ValueError("municipality_code is needed")
        transfer_id = str(uuid.uuid4())
        with self._open_card() as card:
            certificate = card.read_auth_certificate()
            body = {"transfer_id": transfer_id, "municipality_code": code, "amount": amount,
                    "card": {"certificate": base64.b64encode(certificate).decode("ascii")}}
            if amount > self.config.pin_free_limits.get(code, 0):
                self._sign_with_pin(card, body)
            answer = self._send_payment(body)
            if answer.get("error", {}).get("code") == "card_signature_required" and "signature" not in body["card"]:
                # The programme's limit is lower than this terminal knew: same payment, now with the PIN.
                self._sign_with_pin(card, body)
                answer = self._send_payment(body)
        if "error" in answer:
            raise ServerRefused(answer, answer.get("_status", 400))
        return answer

    def _sign_with_pin(self, card, body: dict) -> None:
        verify_pin_with_prompt(card, self._ask_pin)
        signed_at = int(time.time())
        message = payment_message(body["transfer_id"], self.config.terminal_id, body["municipality_code"],
                                  body["amount"], signed_at)
        body["card"]["signature"] = base64.b64encode(card.sign(message)).decode("ascii")
        body["card"]["signed_at"] = signed_at

    def _send_payment(self, body: dict) -> dict:
        """Send with the outbox around it; a definitive answer (posted or refused) empties the entry."""
        self.outbox.save(body["transfer_id"], body)
        try:
            status, answer = self.api.call_with_retries("POST", "/v1/payments", body)
        except Unreachable as error:
            raise PaymentPending(body["transfer_id"]) from error
        self.outbox.remove(body["transfer_id"])
        if status != 201:
            return {**answer, "_status": status}
        return answer

    def status(self) -> list[tuple[str, dict | None, str | None]]:
        """Resend every unacknowledged payment with its own transfer id and body; report each outcome."""
        results = []
        for transfer_id, entry in self.outbox.entries().items():
            try:
                status, answer = self.api.call("POST", "/v1/payments", entry["body"])
            except Unreachable:
                results.append((transfer_id, None, "サーバーに接続できません（未確定のまま保持します）"))
                continue
            self.outbox.remove(transfer_id)
            if status == 201:
                results.append((transfer_id, answer, None))
            else:
                results.append((transfer_id, None, ServerRefused(answer, status).message))
        return results

    # -- other operations -----------------------------------------------------------------------------

    def refund(self, transfer_id: str, amount: int) -> dict:
        status, answer = self.api.call_with_retries(
            "POST", f"/v1/payments/{transfer_id}/refunds", {"refund_id": str(uuid.uuid4()), "amount": amount}
        )
        if status != 201:
            raise ServerRefused(answer, status)
        return answer

    def balance(self) -> dict:
        with self._open_card() as card:
            certificate = card.read_auth_certificate()
        return self._card_call("/v1/balance-inquiries", certificate, 200)

    def look_up_facility_id(self) -> dict:
        with self._open_card() as card:
            certificate = card.read_auth_certificate()
        return self._card_call("/v1/facility-link-lookups", certificate, 200)

    def _card_call(self, path: str, certificate: bytes, expected_status: int) -> dict:
        status, answer = self.api.call("POST", path, {"card": {"certificate": base64.b64encode(certificate).decode("ascii")}})
        if status != expected_status:
            raise ServerRefused(answer, status)
        return answer


def resident_sign_in(api: ApiClient, open_card: Callable[[], contextlib.AbstractContextManager],
                     ask_pin: Callable[[int], str], code: str) -> dict:
    """Resident mode: answer the portal's one-time code with the card (its PIN), on the resident's reader.

    No terminal key is involved: the card's signature over the code's challenge is the proof.
    """
    status, request = api.call("GET", f"/v1/portal/sign-in-requests/{code}", signed=False)
    if status != 200:
        raise ServerRefused(request, status)
    with open_card() as card:
        certificate = card.read_auth_certificate()
        verify_pin_with_prompt(card, ask_pin)
        signature = card.sign(request["message_to_sign"].encode("utf-8"))
    status, answer = api.call("POST", f"/v1/portal/sign-in-requests/{code}/card-response", {"card": {
        "certificate": base64.b64encode(certificate).decode("ascii"),
        "signature": base64.b64encode(signature).decode("ascii")}}, signed=False)
    if status != 200:
        raise ServerRefused(answer, status)
    return answer
