"""Card readers: the interface the terminal uses, and its implementation on PC/SC with pyscard.

The rest of the client never imports pyscard: it talks to a `CardReader`, so tests and other readers
(an NFC phone bridge, say) can stand in. pyscard is imported only when a PC/SC reader is opened, and is
not part of the Lambda package.
"""
from __future__ import annotations

from typing import Protocol


class CardReaderError(Exception):
    message = "カードリーダーでエラーが発生しました。"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message


class NoReader(CardReaderError):
    message = "カードリーダーが見つかりません。接続を確認してください。"


class NoCard(CardReaderError):
    message = "カードが置かれていません。カードをリーダーに置いてください。"


class CardRemoved(CardReaderError):
    message = "カードが取り外されました。取引は行われていません。もう一度カードを置いてください。"


class CardReader(Protocol):
    def connect(self) -> None: ...
    def transmit(self, apdu: bytes) -> tuple[bytes, int]: ...
    def disconnect(self) -> None: ...


class PcscReader:
    """A PC/SC reader through pyscard. `reader_name` picks one reader; by default the first with a card."""

    def __init__(self, reader_name: str | None = None):
        self._reader_name = reader_name
        self._connection = None

    def connect(self) -> None:
        from smartcard.Exceptions import CardConnectionException, NoCardException
        from smartcard.System import readers

        try:
            available = readers()
        except Exception as error:  # pcscd not running: pyscard raises its own EstablishContext error
            raise NoReader() from error
        if self._reader_name:
            available = [reader for reader in available if str(reader) == self._reader_name]
        if not available:
            raise NoReader()
        for reader in available:
            connection = reader.createConnection()
            try:
                connection.connect()
            except (NoCardException, CardConnectionException):
                continue
            self._connection = connection
            return
        raise NoCard()

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        from smartcard.Exceptions import CardConnectionException

        if self._connection is None:
            raise NoCard()
        try:
            data, sw1, sw2 = self._connection.transmit(list(apdu))
        except CardConnectionException as error:
            raise CardRemoved() from error
        return bytes(data), (sw1 << 8) | sw2

    def disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.disconnect()
            except Exception:
                pass  # the card may already be gone; there is nothing left to release
            self._connection = None


def list_readers() -> list[str]:
    try:
        from smartcard.System import readers

        return [str(reader) for reader in readers()]
    except Exception:
        return []
