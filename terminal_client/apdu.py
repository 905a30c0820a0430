"""The JPKI APDUs of docs/CONTRACTS.md#apdus, byte for byte, with names.

Sources: OpenSC `card-jpki.c` and `jpki.h`, jpki/myna `libmyna/reader.go`. The card is identified by
selecting the JPKI application, never by its ATR.
"""
from __future__ import annotations

JPKI_AP_ID = bytes.fromhex("D392F000260100000001")
SELECT_JPKI_AP = bytes.fromhex("00A4040C0A") + JPKI_AP_ID

# Elementary files of the JPKI application.
EF_AUTH_CERTIFICATE = bytes.fromhex("000A")
EF_AUTH_CA_CERTIFICATE = bytes.fromhex("000B")
EF_AUTH_PIN = bytes.fromhex("0018")
EF_AUTH_KEY = bytes.fromhex("0017")
EF_SIGN_CERTIFICATE = bytes.fromhex("0001")
EF_TOKEN = bytes.fromhex("0006")
TOKEN_VALUE = b"JPKIAPICCTOKEN2"

READ_CHUNK_BYTES = 256
AUTH_PIN_TRIES = 3
PIN_LENGTH = 4

# Status words.
SW_OK = 0x9000
SW_END_OF_FILE = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_PIN_BLOCKED = 0x6983
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_WRONG_PARAMETERS = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00
SW_TRIES_LEFT_MASK = 0x63C0  # 63Cx: x tries left

# The DER prefix of a SHA-256 DigestInfo; the card pads DigestInfo with PKCS#1 v1.5 and signs it.
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def select_ef(file_id: bytes) -> bytes:
    return bytes.fromhex("00A4020C02") + file_id


def read_binary(offset: int, length: int) -> bytes:
    """READ BINARY; `length` 256 is encoded as Le 00."""
    if not 0 <= offset <= 0x7FFF or not 1 <= length <= READ_CHUNK_BYTES:
        raise ValueError("offset or length out of range")
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length % 256])


PIN_TRIES_LEFT = bytes.fromhex("00200080")


def verify_pin(pin: str) -> bytes:
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        raise ValueError("the user-authentication PIN is 4 digits")
    return bytes.fromhex("0020008004") + pin.encode("ascii")


def sha256_digest_info(digest: bytes) -> bytes:
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return SHA256_DIGEST_INFO_PREFIX + digest


def compute_signature(digest_info: bytes) -> bytes:
    return bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00"


def der_length(header: bytes) -> int:
    """Total length (header included) of the DER object whose first bytes are `header`."""
    if len(header) < 2 or header[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    first = header[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 3 or len(header) < 2 + count:
        raise ValueError("unsupported DER length")
    return 2 + count + int.from_bytes(header[2:2 + count], "big")
