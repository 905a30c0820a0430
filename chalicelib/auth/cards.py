"""Card certificates and card signatures (docs/CONTRACTS.md#card-certificates, #card-signature, #apdus).

A card presents its user-authentication certificate (DER). The platform accepts it only if a CA in the
configured trust store issued it and it is within its validity period; it then knows the card by a keyed
hash of the issuer and serial, never the serial itself. Above a programme's PIN-free limit the card must
also sign the payment's byte string with its private key (RSA PKCS#1 v1.5, SHA-256), which needs the PIN.

`cryptography` is imported lazily: it is only needed once a card is presented.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Callable

from chalicelib import errors


@dataclass(frozen=True)
class VerifiedCertificate:
    certificate_key: str
    public_key: object  # cryptography RSAPublicKey


def payment_message(transfer_id: str, terminal_id: str, municipality_code: str, amount: int, signed_at: int) -> bytes:
    return (
        f"JPKI-PAYMENT-V1\n{transfer_id}\n{terminal_id}\n{municipality_code}\n{amount}\n{signed_at}".encode("utf-8")
    )


def certificate_key(secret: bytes, issuer_der: bytes, serial_number: int) -> str:
    """The keyed hash under which a certificate is known: HMAC-SHA-256 of issuer and serial."""
    message = hashlib.sha256(issuer_der).hexdigest().encode() + b"\n" + format(serial_number, "x").encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


class CardAuthority:
    """Verifies card certificates against a trust store and card signatures against their certificate."""

    # Certificates whose chain this authority has checked, by the SHA-256 of their DER: a container serving
    # the same card again skips the parse and the RSA check (about half a millisecond of every payment),
    # never the validity period, which depends on the moment. The trust anchors never change for the life
    # of an authority, so neither does the outcome of the chain check for the same bytes.
    VERIFIED_CACHE_ENTRIES = 10_000

    def __init__(self, trust_anchors_pem: bytes, hash_secret: bytes | Callable[[], bytes]):
        """`hash_secret` is the key itself (tests, tools) or a function returning it (a Lambda container, whose
        key comes from Secrets Manager under a TTL: see `chalicelib.config.card_hash_secret`)."""
        from collections import OrderedDict

        from cryptography import x509

        self._anchors = x509.load_pem_x509_certificates(trust_anchors_pem) if trust_anchors_pem.strip() else []
        self._secret = hash_secret if callable(hash_secret) else (lambda: hash_secret)
        self._verified: OrderedDict[bytes, tuple[dt.datetime, dt.datetime, VerifiedCertificate]] = OrderedDict()

    def verify_certificate(self, certificate_der: bytes, now: float) -> VerifiedCertificate:
        # Asked on every verification, remembered chains included: within the secret's TTL this is a lookup in
        # the container's cache, and past it this is where a container learns that the secret was deleted or
        # disabled, and stops accepting cards instead of going on with a key the platform no longer holds.
        secret = self._secret()
        moment = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        digest = hashlib.sha256(certificate_der).digest()
        known = self._verified.get(digest)
        if known is not None:
            not_before, not_after, verified = known
            self._verified.move_to_end(digest)
            if not (not_before <= moment <= not_after):
                raise errors.CardCertificateInvalid("カードの証明書の有効期間外です。")
            return verified
        verified, certificate = self._verify_chain(certificate_der, moment, secret)
        self._verified[digest] = (certificate.not_valid_before_utc, certificate.not_valid_after_utc, verified)
        if len(self._verified) > self.VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)
        return verified

    def _verify_chain(self, certificate_der: bytes, moment: dt.datetime, secret: bytes):
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
        except ValueError as error:
            raise errors.CardCertificateInvalid() from error
        if not (certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc):
            raise errors.CardCertificateInvalid("カードの証明書の有効期間外です。")
        for anchor in self._anchors:
            if anchor.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(anchor)
            except (InvalidSignature, ValueError, TypeError):
                # Another CA with the same name (a renewed anchor) may still have issued it.
                continue
            return VerifiedCertificate(
                certificate_key=certificate_key(
                    secret, certificate.issuer.public_bytes(), certificate.serial_number
                ),
                public_key=certificate.public_key(),
            ), certificate
        raise errors.CardCertificateInvalid()

    # -- feeds: revocations and renewals name certificates by serial, never by the certificate itself --

    def certificate_key_for(self, anchor, serial_number: int) -> str:
        return certificate_key(self._secret(), anchor.subject.public_bytes(), serial_number)

    def certificate_keys(self, serial_number: int) -> list[str]:
        """The keys a serial would have under each CA of the trust store (a feed names no issuer)."""
        return [self.certificate_key_for(anchor, serial_number) for anchor in self._anchors]

    def issuer_for_renewals(self, sha256_fingerprint: str | None):
        from cryptography.hazmat.primitives import hashes

        if sha256_fingerprint is None:
            if len(self._anchors) != 1:
                raise errors.FeedInvalid("新しい証明書の発行CA（new_issuer_sha256）を指定してください。")
            return self._anchors[0]
        wanted = sha256_fingerprint.replace(":", "").lower()
        for anchor in self._anchors:
            if anchor.fingerprint(hashes.SHA256()).hex() == wanted:
                return anchor
        raise errors.FeedInvalid("new_issuer_sha256 の CA は信頼リストにありません。")

    def revoked_keys_from_crl(self, crl_der: bytes) -> list[str]:
        """Keys of the certificates a CRL revokes, only if a CA of the trust store signed the CRL."""
        from cryptography import x509

        try:
            crl = x509.load_der_x509_crl(crl_der)
        except ValueError as error:
            raise errors.FeedInvalid("CRL（DER）を読み取れませんでした。") from error
        for anchor in self._anchors:
            if anchor.subject == crl.issuer and crl.is_signature_valid(anchor.public_key()):
                return [self.certificate_key_for(anchor, revoked.serial_number) for revoked in crl]
        raise errors.FeedInvalid("CRL の署名を信頼リストのCAで確認できませんでした。")

    @staticmethod
    def verify_signature(verified: VerifiedCertificate, message: bytes, signature: bytes) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            verified.public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError, AttributeError) as error:
            raise errors.CardSignatureInvalid() from error


@functools.lru_cache(maxsize=4)
def _read_trust_store(path: str) -> bytes:
    if not path:
        return b""
    with open(path, "rb") as handle:
        return handle.read()


def authority_from_settings(settings) -> CardAuthority:
    """The container's authority: its key is read from Secrets Manager now (a missing or unreadable secret
    fails here, clearly) and again whenever the cached value's TTL has passed."""
    from chalicelib.config import card_hash_secret

    card_hash_secret(settings)
    return CardAuthority(_read_trust_store(settings.card_trust_store_path), lambda: card_hash_secret(settings))
