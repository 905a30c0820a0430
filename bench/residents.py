"""Residents in bulk: MyKey IDs, cards and funded wallets, made fast but stored exactly as the app stores them.

* Card certificates are issued by the test CA (`tests.world.shared_ca`) like `tests.world.issue_test_card`,
  but share one RSA key: generating a 2048-bit key per card is what makes cards slow to make, and the
  platform never sees the card's key, only its certificate (verified per request) and its signatures.
* MyKey IDs and card bindings are written with PynamoDB batch writes of the same models and attributes
  as `chalicelib.storage.identity.write_mykey` / `write_card` (what `onboarding.register_card` does one
  item at a time).
* Wallets are funded by real grants (`ledger.grant`) through a separate store instance, so the store
  being measured has never seen these residents (as a Lambda container that has not served them).
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import itertools
import secrets
import time
import uuid

from chalicelib.domain.identifiers import MYKEY_ALPHABET

_run_prefix = "".join(secrets.choice(MYKEY_ALPHABET) for _ in range(3))
_counter = itertools.count()


def new_mykey_ids(count: int) -> list[str]:
    """Unique MyKey IDs for this run: a random 3-symbol prefix and a 5-symbol serial (32^5 = 33 million)."""
    result = []
    for _ in range(count):
        number = next(_counter)
        digits = []
        for _ in range(5):
            number, remainder = divmod(number, len(MYKEY_ALPHABET))
            digits.append(MYKEY_ALPHABET[remainder])
        result.append(_run_prefix + "".join(reversed(digits)))
    return result


class CardFactory:
    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import rsa

        from tests.world import shared_ca

        self._ca = shared_ca()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def issue(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID

        from tests.world import CARD_NOT_BEFORE
        from tools.devpki import DevCard

        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]))
            .issuer_name(self._ca.certificate.subject)
            .public_key(self._key.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(8), "big") | 1)
            .not_valid_before(CARD_NOT_BEFORE)
            .not_valid_after(CARD_NOT_BEFORE + dt.timedelta(days=3650))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(self._ca.private_key, hashes.SHA256())
        )
        return DevCard(self._key, certificate.public_bytes(serialization.Encoding.DER))


def register_mykeys(mykey_ids: list[str], home_code: str) -> None:
    from chalicelib.storage.models import MykeyModel

    registered_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with MykeyModel.batch_write() as batch:
        for mykey_id in mykey_ids:
            batch.save(MykeyModel(mykey_id, status="active", home_municipality_code=home_code, registered_at=registered_at))


def register_mykeys_parallel(mykey_ids: list[str], home_code: str, workers: int = 4, slice_size: int = 2500) -> None:
    slices = [mykey_ids[start:start + slice_size] for start in range(0, len(mykey_ids), slice_size)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda part: register_mykeys(part, home_code), slices))


def add_card_residents(world, count: int, factory: CardFactory) -> list[str]:
    """`count` residents with a card each, registered in the world's home municipality."""
    from chalicelib.storage.models import CardModel

    mykey_ids = new_mykey_ids(count)
    register_mykeys(mykey_ids, world.home_code)
    registered_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with CardModel.batch_write() as batch:
        for mykey_id in mykey_ids:
            card = factory.issue()
            verified = world.authority.verify_certificate(card.certificate_der, time.time())
            batch.save(CardModel(verified.certificate_key, mykey_id=mykey_id, status="active", registered_at=registered_at))
            world.cards[mykey_id] = card
            world.card_keys[mykey_id] = verified.certificate_key
    return mykey_ids


def fund(store, municipality_code: str, mykey_ids: list[str], amount: int, workers: int = 2) -> None:
    """One real grant per resident, through `store` (not the store being measured)."""
    from chalicelib.services import ledger

    def grant(mykey_id: str) -> None:
        ledger.grant(ledger.GrantCommand(
            grant_id=str(uuid.uuid4()), municipality_code=municipality_code, mykey_id=mykey_id, amount=amount,
            reason="ベンチマーク用の付与", expires_on=None, staff_id="bench", request_fingerprint=f"bench-{uuid.uuid4()}",
        ), store, time.time)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(grant, mykey_ids))
