"""The card authority remembers certificates whose chain it checked, never their validity period."""
from __future__ import annotations

import pytest
from cryptography import x509

from chalicelib import errors
from chalicelib.auth.cards import CardAuthority
from tests.world import HASH_SECRET, NOW, issue_test_card, shared_ca
from tools.devpki import DevCertificateAuthority


def test_certificate_seen_before__is_not_parsed_again(monkeypatch):
    authority = CardAuthority(shared_ca().certificate_pem, HASH_SECRET)
    card = issue_test_card()
    first = authority.verify_certificate(card.certificate_der, NOW)
    monkeypatch.setattr(x509, "load_der_x509_certificate", lambda _: pytest.fail("parsed again"))

    assert authority.verify_certificate(card.certificate_der, NOW) is first


def test_certificate_seen_before__is_refused_once_outside_its_validity_period():
    authority = CardAuthority(shared_ca().certificate_pem, HASH_SECRET)
    card = issue_test_card()
    authority.verify_certificate(card.certificate_der, NOW)
    not_after = x509.load_der_x509_certificate(card.certificate_der).not_valid_after_utc.timestamp()

    with pytest.raises(errors.CardCertificateInvalid):
        authority.verify_certificate(card.certificate_der, not_after + 1)


def test_another_cas_certificate__is_refused_even_after_a_trusted_one_was_remembered():
    authority = CardAuthority(shared_ca().certificate_pem, HASH_SECRET)
    authority.verify_certificate(issue_test_card().certificate_der, NOW)
    stranger = DevCertificateAuthority.create().issue_card()

    with pytest.raises(errors.CardCertificateInvalid):
        authority.verify_certificate(stranger.certificate_der, NOW)
    with pytest.raises(errors.CardCertificateInvalid):  # refusals are not remembered as successes either
        authority.verify_certificate(stranger.certificate_der, NOW)


def test_remembered_certificates__are_bounded(monkeypatch):
    monkeypatch.setattr(CardAuthority, "VERIFIED_CACHE_ENTRIES", 2)
    authority = CardAuthority(shared_ca().certificate_pem, HASH_SECRET)
    cards = [issue_test_card() for _ in range(3)]
    for card in cards:
        authority.verify_certificate(card.certificate_der, NOW)

    assert len(authority._verified) == 2
