"""One source of truth: tables come from the models, and the terminal signs the bytes the server checks."""
import json
from pathlib import Path

from chalicelib.auth import cards, terminals
from chalicelib.storage.schema import cloudformation_tables, table_definitions
from terminal_client import signing

ROOT = Path(__file__).resolve().parents[2]


def test_infrastructure_tables__match_the_models():
    committed = json.loads((ROOT / "infrastructure" / "tables.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(cloudformation_tables())), "run `make tables-template`"


def test_tables__protected_and_recoverable_in_production():
    template = cloudformation_tables()
    protection = template["Parameters"]["TableDeletionProtection"]
    assert protection["Default"] == "true" and protection["AllowedValues"] == ["true", "false"]
    for resource in template["Resources"].values():
        properties = resource["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert properties["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
        # Kept by every stack operation except the rollback of the one that created it (a failed first
        # deployment leaves no table behind to block the retry); never replaced in place.
        assert resource["DeletionPolicy"] == "RetainExceptOnCreate"
        assert resource["UpdateReplacePolicy"] == "Retain"


def test_table_definitions__every_index_key_is_declared():
    for definition in table_definitions("p-"):
        declared = {a["AttributeName"] for a in definition["AttributeDefinitions"]}
        keys = {k["AttributeName"] for k in definition["KeySchema"]}
        for index in definition.get("GlobalSecondaryIndexes", []):
            keys |= {k["AttributeName"] for k in index["KeySchema"]}
        assert keys == declared, definition["TableName"]


def test_request_message__terminal_and_server_build_identical_bytes():
    arguments = ("post", "/v1/payments", "1795000000", "0123456789abcdef0123456789abcdef", b'{"a":1}')
    expected = (
        b"POINTS-TERMINAL-V1\nPOST\n/v1/payments\n1795000000\n0123456789abcdef0123456789abcdef\n"
        b"015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
    )
    assert signing.request_message(*arguments) == terminals.request_message(*arguments) == expected


def test_request_message__empty_body_hashes_as_empty_bytes():
    message = terminals.request_message("GET", "/v1/payments/x", "1", "n", b"")
    assert message.endswith(b"\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_payment_message__terminal_and_server_build_identical_bytes():
    arguments = ("0b7e6a52-5f0a-4c4e-9d55-1f2f3a4b5c6d", "term-1", "252034", 5000, 1795000000)
    expected = b"JPKI-PAYMENT-V1\n0b7e6a52-5f0a-4c4e-9d55-1f2f3a4b5c6d\nterm-1\n252034\n5000\n1795000000"
    assert signing.payment_message(*arguments) == cards.payment_message(*arguments) == expected


def test_signed_path__stage_prefix_is_left_out():
    assert terminals.signed_path("/dev/v1/payments", "dev") == "/v1/payments"
    assert terminals.signed_path("/v1/payments", "dev") == "/v1/payments"
    assert terminals.signed_path("/v1/payments", None) == "/v1/payments"


def test_production_trust_anchor__loads_and_refuses_development_cards():
    """The committed J-LIS anchor bundle works as a trust store; a card from our development CA is not trusted by it."""
    import pytest

    from chalicelib import errors
    from tests.world import NOW, issue_test_card

    anchor = ROOT / "chalicelib" / "trust" / "jpki-user-authentication-anchors.pem"
    authority = cards.CardAuthority(anchor.read_bytes(), b"secret")
    assert len(authority._anchors) == 1
    with pytest.raises(errors.CardCertificateInvalid):
        authority.verify_certificate(issue_test_card().certificate_der, NOW)


def test_lambda_requirements__hold_no_card_reader_or_test_tools():
    lambda_packages = {
        line.split("==")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # aws-xray-sdk: what Powertools Tracer needs for the functions' X-Ray traces (imported on first use).
    assert lambda_packages == {"pynamodb", "aws-lambda-powertools", "aws-xray-sdk", "cryptography", "segno"}
    assert "pyscard" in (ROOT / "requirements-dev.txt").read_text()


def test_server_code__never_imports_the_terminal_client_or_pyscard():
    for path in (ROOT / "chalicelib").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "terminal_client" not in text and "smartcard" not in text, path


def test_transfers_table__has_no_index_written_by_every_movement():
    # Lists by municipality and by resident come from the stream (transfer_index); only conversions carry
    # the sparse partner index. An index here would be written inside every movement's transaction.
    from chalicelib.storage.models import TransferModel

    assert set(TransferModel._indexes) == {"by_partner"}
    assert TransferModel.Meta.stream_view_type == "NEW_IMAGE"
