"""The JPKI card's user-authentication functions, over any `CardReader`.

Reading the certificate needs no PIN; signing needs the 4-digit PIN, which the card blocks after three
wrong tries (only the town hall can reset it). Every status word the card can answer is turned into a
clear error here, so the command line can say what happened in Japanese.
"""
from __future__ import annotations

import hashlib

from terminal_client import apdu
from terminal_client.reader import CardReader, CardReaderError


class NotJpkiCard(CardReaderError):
    message = "マイナンバーカード（公的個人認証）ではありません。"


class WrongPin(CardReaderError):
    def __init__(self, tries_left: int):
        super().__init__(f"暗証番号が違います。あと {tries_left} 回間違えるとロックされます。")
        self.tries_left = tries_left


class PinFormatInvalid(CardReaderError):
    message = "暗証番号は4桁の数字で入力してください。取引は行われていません。"


class PinBlocked(CardReaderError):
    message = "暗証番号がロックされています。お住まいの市区町村の窓口で解除してください。"


class CardError(CardReaderError):
    def __init__(self, step: str, status_word: int):
        super().__init__(f"カードの処理に失敗しました（{step}: {status_word:04X}）。")
        self.status_word = status_word


class JpkiCard:
    def __init__(self, reader: CardReader):
        self._reader = reader

    def _expect_ok(self, command: bytes, step: str) -> bytes:
        data, status_word = self._reader.transmit(command)
        if status_word != apdu.SW_OK:
            raise CardError(step, status_word)
        return data

    def select_application(self) -> None:
        _, status_word = self._reader.transmit(apdu.SELECT_JPKI_AP)
        if status_word != apdu.SW_OK:
            raise NotJpkiCard()

    def read_auth_certificate(self) -> bytes:
        """The DER user-authentication certificate: header first for the length, never past the end."""
        self.select_application()
        self._expect_ok(apdu.select_ef(apdu.EF_AUTH_CERTIFICATE), "select certificate")
        header = self._expect_ok(apdu.read_binary(0, 4), "read certificate")
        total = apdu.der_length(header)
        certificate = bytearray()
        while len(certificate) < total:
            length = min(apdu.READ_CHUNK_BYTES, total - len(certificate))
            certificate += self._expect_ok(apdu.read_binary(len(certificate), length), "read certificate")
        return bytes(certificate)

    def pin_tries_left(self) -> int:
        """Starts the PIN step: selects the application afresh, so no earlier verification lingers."""
        self.select_application()
        self._expect_ok(apdu.select_ef(apdu.EF_AUTH_PIN), "select PIN")
        _, status_word = self._reader.transmit(apdu.PIN_TRIES_LEFT)
        if status_word == apdu.SW_PIN_BLOCKED:
            return 0
        if status_word & 0xFFF0 == apdu.SW_TRIES_LEFT_MASK:
            return status_word & 0x000F
        if status_word == apdu.SW_OK:
            return apdu.AUTH_PIN_TRIES
        raise CardError("PIN tries", status_word)

    def verify_pin(self, pin: str) -> None:
        if len(pin) != apdu.PIN_LENGTH or not pin.isascii() or not pin.isdigit():
            # Checked before the card sees it: a typo in length must not cost one of the three tries.
            raise PinFormatInvalid()
        self._expect_ok(apdu.select_ef(apdu.EF_AUTH_PIN), "select PIN")
        _, status_word = self._reader.transmit(apdu.verify_pin(pin))
        if status_word == apdu.SW_OK:
            return
        if status_word == apdu.SW_PIN_BLOCKED or status_word == apdu.SW_TRIES_LEFT_MASK:
            raise PinBlocked()
        if status_word & 0xFFF0 == apdu.SW_TRIES_LEFT_MASK:
            raise WrongPin(status_word & 0x000F)
        raise CardError("verify PIN", status_word)

    def sign(self, message: bytes) -> bytes:
        """RSA PKCS#1 v1.5 over SHA-256 of `message`, computed by the card (after `verify_pin`)."""
        self._expect_ok(apdu.select_ef(apdu.EF_AUTH_KEY), "select key")
        digest_info = apdu.sha256_digest_info(hashlib.sha256(message).digest())
        return self._expect_ok(apdu.compute_signature(digest_info), "sign")
