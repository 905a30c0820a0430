"""The terminal's JPKI client against the virtual card model, APDU by APDU (no PC/SC needed here)."""
from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from terminal_client import apdu
from terminal_client.jpki import CardError, JpkiCard, NotJpkiCard, PinBlocked, PinFormatInvalid, WrongPin
from tests.world import issue_test_card, shared_ca
from tools.virtual_jpki_card import ATR, JpkiCardModel


class DirectReader:
    """A reader wired straight to the card model: what PC/SC would carry, without the daemon."""

    def __init__(self, model):
        self.model = model

    def transmit(self, command: bytes):
        response = self.model.process(command)
        return response[:-2], int.from_bytes(response[-2:], "big")


@pytest.fixture
def card():
    dev_card = issue_test_card()
    model = JpkiCardModel(dev_card.private_key, dev_card.certificate_der,
                          shared_ca().certificate.public_bytes(serialization.Encoding.DER), "1234")
    return dev_card, model, JpkiCard(DirectReader(model))


def test_apdus__are_the_bytes_of_the_apdu_contract():
    assert apdu.SELECT_JPKI_AP.hex().upper() == "00A4040C0AD392F000260100000001"
    assert apdu.select_ef(apdu.EF_AUTH_CERTIFICATE).hex().upper() == "00A4020C02000A"
    assert apdu.read_binary(0x0123, 256).hex().upper() == "00B0012300"
    assert apdu.PIN_TRIES_LEFT.hex().upper() == "00200080"
    assert apdu.verify_pin("1234").hex().upper() == "002000800431323334"
    digest_info = apdu.sha256_digest_info(hashlib.sha256(b"x").digest())
    assert apdu.compute_signature(digest_info)[:5].hex().upper() == "802A008033" and apdu.compute_signature(digest_info)[-1] == 0


def test_atr__has_a_correct_check_byte():
    check = 0
    for byte in ATR[1:]:
        check ^= byte
    assert ATR[0] == 0x3B and check == 0


def test_read_certificate__by_its_der_length_in_chunks_never_past_the_end(card):
    dev_card, model, jpki = card
    assert jpki.read_auth_certificate() == dev_card.certificate_der
    reads = [command for command in model.commands if command[1] == 0xB0]
    assert reads[0] == bytes.fromhex("00B0000004")  # the DER header first
    assert all(command[4] in range(0, 256) for command in reads)
    assert not model.read_past_end
    assert sum((command[4] or 256) for command in reads[1:]) == len(dev_card.certificate_der)


def test_pin__wrong_three_times_blocks_and_signing_is_refused(card):
    _, model, jpki = card
    assert jpki.pin_tries_left() == 3
    with pytest.raises(WrongPin) as first:
        jpki.verify_pin("0000")
    assert first.value.tries_left == 2
    with pytest.raises(WrongPin):
        jpki.verify_pin("0000")
    with pytest.raises(PinBlocked):
        jpki.verify_pin("0000")
    assert jpki.pin_tries_left() == 0
    with pytest.raises(PinBlocked):
        jpki.verify_pin("1234")  # the right PIN no longer helps: the town hall must reset it
    with pytest.raises(CardError) as refused:
        jpki.sign(b"payment")
    assert refused.value.status_word == apdu.SW_SECURITY_NOT_SATISFIED


def test_pin__right_pin_resets_the_counter(card):
    _, _, jpki = card
    jpki.select_application()
    with pytest.raises(WrongPin):
        jpki.verify_pin("9999")
    jpki.verify_pin("1234")
    assert jpki.pin_tries_left() == 3


def test_pin__wrong_length_is_refused_before_the_card_counts_a_try(card):
    _, model, jpki = card
    with pytest.raises(PinFormatInvalid):
        jpki.verify_pin("12345")
    assert model.tries_left == 3


def test_sign__after_pin_gives_a_pkcs1_sha256_signature_of_the_message(card):
    dev_card, model, jpki = card
    jpki.select_application()
    jpki.verify_pin("1234")
    signature = jpki.sign(b"JPKI-PAYMENT-V1\n...")
    assert len(signature) == 256
    dev_card.private_key.public_key().verify(signature, b"JPKI-PAYMENT-V1\n...", padding.PKCS1v15(), hashes.SHA256())


def test_sign__without_pin__is_security_status_not_satisfied(card):
    _, _, jpki = card
    jpki.select_application()
    with pytest.raises(CardError) as refused:
        jpki.sign(b"x")
    assert refused.value.status_word == 0x6982


def test_card_model__refuses_what_a_real_card_refuses(card):
    _, model, _ = card
    assert model.process(apdu.select_ef(apdu.EF_AUTH_CERTIFICATE))[-2:] == b"\x6a\x82"  # no application selected
    model.process(apdu.SELECT_JPKI_AP)
    assert model.process(apdu.select_ef(b"\x12\x34"))[-2:] == b"\x6a\x82"
    model.process(apdu.select_ef(apdu.EF_SIGN_CERTIFICATE))
    assert model.process(apdu.read_binary(0, 4))[-2:] == b"\x69\x82"  # the signing certificate needs its own PIN
    model.process(apdu.select_ef(apdu.EF_TOKEN))
    assert model.process(apdu.read_binary(0, 15)) == apdu.TOKEN_VALUE + b"\x90\x00"
    assert model.process(apdu.read_binary(15, 1))[-2:] == b"\x6b\x00"
    assert model.process(bytes.fromhex("00CA000000"))[-2:] == b"\x6d\x00"
    model.process(apdu.select_ef(apdu.EF_AUTH_KEY))
    model.process(apdu.select_ef(apdu.EF_AUTH_PIN))
    model.process(apdu.verify_pin("1234"))
    model.process(apdu.select_ef(apdu.EF_AUTH_KEY))
    bad_digest_info = bytes(51)
    assert model.process(apdu.compute_signature(bad_digest_info))[-2:] == b"\x6a\x80"


def test_not_a_jpki_card__is_said_clearly():
    class OtherCard:
        def transmit(self, command):
            return b"", 0x6A82

    with pytest.raises(NotJpkiCard):
        JpkiCard(OtherCard()).read_auth_certificate()
