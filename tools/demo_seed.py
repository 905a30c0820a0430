"""Seed the local cloud with a demo: 長浜市 (252034), a shop, a museum, their terminals, a test card, staff.

Idempotent: every identifier and secret is created once under the data folder (`.local/demo/`) and
reused on later runs, and the demo grant has a fixed grant id, so `make run` twice changes nothing.
The development CA and the card's private key live only in that folder (ignored by git).
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from chalicelib.auth.cards import CardAuthority
from chalicelib.domain import identifiers
from chalicelib.services import conversions, ledger, onboarding, ports
from terminal_client.signing import new_terminal_key
from tools.devpki import DevCard, DevCertificateAuthority
from tools.onboard import REPOSITORY_ROOT, onboard

MUNICIPALITY_CODE = "252034"
SHOP_ID, MUSEUM_ID = "demo-kurokabe-shop", "demo-castle-museum"
SHOP_TERMINAL_ID, MUSEUM_TERMINAL_ID = "demo-shop-terminal-1", "demo-museum-terminal-1"
STAFF_ID = "nagahama-admin"
DEMO_GRANT_ID = "5b0d4d0e-7f6a-4c61-9f1e-2a52e0a10001"
DEMO_CARD_PIN = "1234"
PIN_FREE_LIMIT = 3000
DEMO_PARTNER_ID = "demo-airline"
DEMO_PARTNER_RESULT_QUEUE = "points-partner-results-demo-airline"
DEMO_PARAMETERS = REPOSITORY_ROOT / "infrastructure" / "examples" / "nagahama.parameters.json"


def _read_or_create(path: Path, create) -> dict:
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    data = create()
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    path.chmod(0o600)
    return data


def ensure_secrets(demo_dir: Path, secrets_endpoint_url: str) -> tuple[Path, bytes]:
    """The development trust store and the card-hash secret: what the app's environment points at.

    The card-hash secret is kept in the data folder, so certificate hashes stay the same across runs over
    persisted tables, and stored in the local Secrets Manager under LOCAL_CARD_HASH_SECRET_ID, where the
    app reads it as it does in AWS (the environment names the secret, never holds it).
    """
    from tools.localcloud.processes import LOCAL_CARD_HASH_SECRET_ID, store_local_secret

    demo_dir.mkdir(parents=True, exist_ok=True)
    ca_path = demo_dir / "dev-ca.key-and-cert.pem"
    if not ca_path.exists():
        ca_path.write_bytes(DevCertificateAuthority.create().to_pem())
        ca_path.chmod(0o600)
    trust_path = demo_dir / "trust-store.pem"
    trust_path.write_bytes(DevCertificateAuthority.from_pem(ca_path.read_bytes()).certificate_pem)
    secret = _read_or_create(demo_dir / "platform-secret.json", lambda: {"card_hash_secret": secrets.token_hex(32)})
    store_local_secret(secrets_endpoint_url, LOCAL_CARD_HASH_SECRET_ID, secret["card_hash_secret"])
    return trust_path, secret["card_hash_secret"].encode()


def seed(store, staff_store, audit, demo_dir: Path, hash_secret: bytes, trust_path: Path) -> dict:
    authority = CardAuthority(trust_path.read_bytes(), hash_secret)
    ca = DevCertificateAuthority.from_pem((demo_dir / "dev-ca.key-and-cert.pem").read_bytes())

    # The demo municipality is onboarded exactly as a municipality's stack onboards it in AWS.
    staff = _read_or_create(demo_dir / "staff.json", lambda: {"staff_id": STAFF_ID, "password": secrets.token_urlsafe(12)})
    if store.get_municipality(MUNICIPALITY_CODE) is None:
        onboard(DEMO_PARAMETERS, staff["password"], store, staff_store, audit)
    accepted = frozenset({MUNICIPALITY_CODE})
    onboarding.register_merchant(store, ports.Merchant(SHOP_ID, "黒壁スクエア商店", "shop", MUNICIPALITY_CODE, accepted))
    onboarding.register_merchant(store, ports.Merchant(MUSEUM_ID, "長浜城歴史博物館", "public_facility", MUNICIPALITY_CODE, accepted))

    terminals = {}
    for name, terminal_id, merchant_id in (("shop", SHOP_TERMINAL_ID, SHOP_ID), ("museum", MUSEUM_TERMINAL_ID, MUSEUM_ID)):
        def create(terminal_id=terminal_id, merchant_id=merchant_id):
            private, public = new_terminal_key()
            return {"terminal_id": terminal_id, "merchant_id": merchant_id, "private_key": private, "public_key": public}

        path = demo_dir / f"terminal-{name}.json"
        keys = _read_or_create(path, create)
        # What the terminal client needs besides its key: its default municipality and the PIN-free limit.
        keys.update(municipality_code=MUNICIPALITY_CODE, pin_free_limits={MUNICIPALITY_CODE: PIN_FREE_LIMIT})
        path.write_text(json.dumps(keys, ensure_ascii=False, indent=2), encoding="utf-8")
        onboarding.register_terminal(store, ports.Terminal(keys["terminal_id"], keys["merchant_id"], keys["public_key"], label=name))
        terminals[name] = keys

    def create_card():
        card = ca.issue_card()
        return {**card.to_pem_pair(), "mykey_id": identifiers.new_mykey_id(), "pin": DEMO_CARD_PIN}

    card_data = _read_or_create(demo_dir / "card.json", create_card)
    card = DevCard.from_pem_pair(card_data)
    verified = authority.verify_certificate(card.certificate_der, time.time())
    if store.get_card(verified.certificate_key) is None:
        onboarding.register_card(store, verified.certificate_key, card_data["mykey_id"], MUNICIPALITY_CODE,
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    partner = _read_or_create(demo_dir / "partner-demo-airline.json", lambda: dict(
        zip(("private_key", "public_key"), new_terminal_key()), partner_id=DEMO_PARTNER_ID, result_queue=DEMO_PARTNER_RESULT_QUEUE))
    store.put_partner({
        "partner_id": DEMO_PARTNER_ID, "name": "デモ航空", "public_key": partner["public_key"],
        "result_queue": DEMO_PARTNER_RESULT_QUEUE, "active": True,
        "agreement": conversions.validate_agreement({
            "municipalities": ["*"], "rate_numerator": 1, "rate_denominator": 2, "rounding": "floor",
            "daily_cap_per_resident": 10_000, "monthly_cap_per_resident": 50_000, "campaigns": [],
        }),
    })

    ledger.grant(
        ledger.GrantCommand(
            grant_id=DEMO_GRANT_ID, municipality_code=MUNICIPALITY_CODE, mykey_id=card_data["mykey_id"], amount=10_000,
            reason="デモ用の初回付与", expires_on=None, staff_id=STAFF_ID, request_fingerprint=f"demo-seed-{card_data['mykey_id']}",
        ),
        store,
        time.time,
    )
    return {"mykey_id": card_data["mykey_id"], "staff": staff, "terminals": terminals}
