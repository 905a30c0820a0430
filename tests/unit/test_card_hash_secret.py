"""The card-hash secret comes from Secrets Manager through Powertools Parameters, never from the environment.

The environment names the secret (`CARD_HASH_SECRET_ID`); `chalicelib.config.card_hash_secret` reads its
value, cached for CARD_HASH_SECRET_MAX_AGE_SECONDS. These tests run the app's own code path against moto's
server playing Secrets Manager (the same server `make run` uses), never `mock_aws`. Powertools' cache is
driven by a frozen clock instead of waiting for the TTL.
"""
from __future__ import annotations

import ast
import datetime as dt
import re
import uuid
from pathlib import Path

import pytest

from chalicelib.auth.cards import CardAuthority
from chalicelib.config import CARD_HASH_SECRET_MAX_AGE_SECONDS, ConfigurationError
from tests.world import NOW, issue_test_card, shared_ca
from tools.localcloud.processes import (
    REPOSITORY_ROOT,
    MotoServer,
    free_port,
    local_aws_environment,
    local_client,
    store_local_secret,
)


@pytest.fixture(scope="module")
def secrets_manager():
    with MotoServer(free_port()) as server:
        yield server


@pytest.fixture(autouse=True)
def app_environment(monkeypatch, secrets_manager, tmp_path):
    from chalicelib.api import dependencies
    from chalicelib.config import reset_secrets, reset_settings

    for name, value in local_aws_environment("http://127.0.0.1:9", secrets_manager.endpoint_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CARD_HASH_SECRET_ID", raising=False)
    monkeypatch.delenv("CARD_HASH_SECRET", raising=False)
    trust_store = tmp_path / "trust-store.pem"
    trust_store.write_bytes(shared_ca().certificate_pem)
    monkeypatch.setenv("CARD_TRUST_STORE", str(trust_store))
    reset_settings()
    reset_secrets()
    dependencies.reset()
    yield
    reset_settings()
    reset_secrets()
    dependencies.reset()


@pytest.fixture
def stored_secret(secrets_manager, monkeypatch):
    """A fresh secret in Secrets Manager, named to the app by CARD_HASH_SECRET_ID; returns (id, value)."""
    secret_id = f"municipal-point-cloud/test-{uuid.uuid4().hex[:12]}"
    value = f"card-hash-{uuid.uuid4().hex}"
    store_local_secret(secrets_manager.endpoint_url, secret_id, value)
    monkeypatch.setenv("CARD_HASH_SECRET_ID", secret_id)
    return secret_id, value


class FrozenClock:
    """Stands in for `datetime` inside Powertools' cache, so a test moves time instead of waiting."""

    def __init__(self):
        self.moment = dt.datetime(2026, 11, 18, 9, 0, 0)

    def now(self):
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += dt.timedelta(seconds=seconds)


@pytest.fixture
def frozen_clock(monkeypatch):
    from aws_lambda_powertools.utilities.parameters import base

    clock = FrozenClock()
    monkeypatch.setattr(base, "datetime", clock)
    return clock


def count_secret_reads():
    """Counts the GetSecretValue calls the app's provider makes from now on."""
    from chalicelib.config import get_settings, secrets_provider

    calls = []
    secrets_provider(get_settings().region).client.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **_: calls.append(1))
    return calls


def key_under(secret: bytes, certificate_der: bytes) -> str:
    return CardAuthority(shared_ca().certificate_pem, secret).verify_certificate(certificate_der, NOW).certificate_key


def test_card_authority__hashes_with_the_secrets_manager_value__and_ignores_card_hash_secret_in_the_environment(
        stored_secret, monkeypatch):
    from chalicelib.api import dependencies

    _, value = stored_secret
    monkeypatch.setenv("CARD_HASH_SECRET", "a-value-in-the-environment")
    card = issue_test_card()

    verified = dependencies.get_card_authority().verify_certificate(card.certificate_der, NOW)

    assert verified.certificate_key == key_under(value.encode(), card.certificate_der)
    assert verified.certificate_key != key_under(b"a-value-in-the-environment", card.certificate_der)


def test_card_authority__only_card_hash_secret_in_the_environment__is_refused_naming_card_hash_secret_id(monkeypatch):
    from chalicelib.api import dependencies

    monkeypatch.setenv("CARD_HASH_SECRET", "a-value-in-the-environment")

    with pytest.raises(ConfigurationError, match="CARD_HASH_SECRET_ID is not set"):
        dependencies.get_card_authority()


def test_card_authority__secret_id_naming_no_secret__is_refused_with_a_clear_error(monkeypatch):
    from chalicelib.api import dependencies

    monkeypatch.setenv("CARD_HASH_SECRET_ID", "municipal-point-cloud/no-such-secret")

    with pytest.raises(ConfigurationError, match="'municipal-point-cloud/no-such-secret' could not be read from Secrets Manager"):
        dependencies.get_card_authority()


def test_card_hash_secret__read_once_within_its_ttl__and_again_once_it_has_passed(stored_secret, frozen_clock):
    from chalicelib.api import dependencies

    reads = count_secret_reads()
    card = issue_test_card()
    authority = dependencies.get_card_authority()
    for _ in range(3):
        authority.verify_certificate(card.certificate_der, NOW)
    frozen_clock.advance(CARD_HASH_SECRET_MAX_AGE_SECONDS - 1)
    authority.verify_certificate(card.certificate_der, NOW)

    assert len(reads) == 1

    frozen_clock.advance(2)
    authority.verify_certificate(card.certificate_der, NOW)
    authority.verify_certificate(card.certificate_der, NOW)

    assert len(reads) == 2


def test_card_hash_secret__deleted_secret__cards_refused_once_the_ttl_has_passed(stored_secret, frozen_clock, secrets_manager):
    from chalicelib.api import dependencies

    secret_id, _ = stored_secret
    card = issue_test_card()
    authority = dependencies.get_card_authority()
    local_client("secretsmanager", secrets_manager.endpoint_url).delete_secret(
        SecretId=secret_id, ForceDeleteWithoutRecovery=True)

    # Within the TTL the container still holds the key it read.
    authority.verify_certificate(card.certificate_der, NOW)
    frozen_clock.advance(CARD_HASH_SECRET_MAX_AGE_SECONDS + 1)

    with pytest.raises(ConfigurationError, match="could not be read from Secrets Manager"):
        authority.verify_certificate(card.certificate_der, NOW)


def test_settings__read_no_environment_variable_named_like_a_secret(monkeypatch):
    import os

    from chalicelib.config import get_settings

    class RecordingEnvironment(dict):
        def __init__(self, values):
            super().__init__(values)
            self.read: set[str] = set()

        def get(self, key, default=None):
            self.read.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.read.add(key)
            return super().__getitem__(key)

    environment = RecordingEnvironment(os.environ)
    monkeypatch.setattr(os, "environ", environment)

    settings = get_settings()

    assert "CARD_HASH_SECRET_ID" in environment.read  # the recording sees what the getter reads
    assert settings.card_hash_secret_id == ""
    assert [name for name in environment.read if SECRET_LIKE.search(name) and not name.endswith("_ID")] == []


SECRET_LIKE = re.compile(r"SECRET|PASSWORD|PASSPHRASE|TOKEN|PRIVATE|CREDENTIAL", re.IGNORECASE)


def environment_names_read(source: str) -> set[str]:
    """The literal names passed to os.environ.get / os.environ[...] / os.getenv in a module."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = ast.unparse(node.func)
            if called in ("os.environ.get", "os.getenv", "environ.get", "getenv"):
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("os.environ", "environ") \
                and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def test_application_code__reads_no_environment_variable_named_like_a_secret():
    files = [REPOSITORY_ROOT / "app.py", *sorted((REPOSITORY_ROOT / "chalicelib").rglob("*.py"))]
    read = {name: path for path in files for name in environment_names_read(path.read_text(encoding="utf-8"))}

    assert "CARD_HASH_SECRET_ID" in read  # the scan finds the names the app does read
    assert "CARD_HASH_SECRET" not in read
    assert {name: str(Path(path).relative_to(REPOSITORY_ROOT)) for name, path in read.items()
            if SECRET_LIKE.search(name) and not name.endswith("_ID")} == {}
