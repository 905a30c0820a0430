"""A development JPKI hierarchy, generated at run time for the local cloud and the tests.

Real cards' user-authentication certificates are issued by J-LIS (production anchors committed in
`chalicelib/trust/`, see its README). Locally, a development CA issues certificates for software test cards with the
same shape: RSA-2048 keys, sha256WithRSA, no name or address in the subject. Nothing here is committed:
`make run` writes its CA under `.local/`, tests keep theirs in temporary folders.
"""
from __future__ import annotations

import base64
import datetime as dt
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


@dataclass
class DevCard:
    private_key: rsa.RSAPrivateKey
    certificate_der: bytes

    @property
    def certificate_base64(self) -> str:
        return base64.b64encode(self.certificate_der).decode("ascii")

    @property
    def serial_number(self) -> int:
        return x509.load_der_x509_certificate(self.certificate_der).serial_number

    def sign(self, message: bytes) -> bytes:
        """What the card computes after PIN verification: RSA PKCS#1 v1.5 over SHA-256."""
        return self.private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())

    def to_pem_pair(self) -> dict[str, str]:
        return {
            "private_key_pem": self.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            "certificate_base64": self.certificate_base64,
        }

    @classmethod
    def from_pem_pair(cls, data: dict[str, str]) -> "DevCard":
        key = serialization.load_pem_private_key(data["private_key_pem"].encode(), password=None)
        return cls(key, base64.b64decode(data["certificate_base64"]))


class DevCertificateAuthority:
    def __init__(self, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate):
        self.private_key = private_key
        self.certificate = certificate

    @classmethod
    def create(cls, common_name: str = "Municipal Point Cloud Development JPKI User Authentication CA"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Development Only"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        now = dt.datetime.now(dt.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ) + self.certificate_pem

    @classmethod
    def from_pem(cls, data: bytes) -> "DevCertificateAuthority":
        key = serialization.load_pem_private_key(data, password=None)
        return cls(key, x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE-----"):]))

    def issue_crl(self, serial_numbers: list[int]) -> bytes:
        """A DER certificate revocation list signed by this CA, as J-LIS publishes for its cards."""
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - dt.timedelta(minutes=1))
            .next_update(now + dt.timedelta(days=1))
        )
        for serial_number in serial_numbers:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial_number).revocation_date(now).build()
            )
        return builder.sign(self.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def issue_card(
        self, valid_days: int = 365 * 5, not_before: dt.datetime | None = None, serial_number: int | None = None
    ) -> DevCard:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        certificate = (
            x509.CertificateBuilder()
            # Like the real user-authentication certificate: no name, no address, only an opaque serial.
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial_number or int.from_bytes(secrets.token_bytes(8), "big") | 1)
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=valid_days))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(self.private_key, hashes.SHA256())
        )
        return DevCard(key, certificate.public_bytes(serialization.Encoding.DER))
