"""docs/PARTNERS.md, the only document a partner's engineer reads, kept true to the code and the contract.

The guide has a Japanese and a full English section, and an engineer reads one of them: each must explain
every refusal reason a result can carry and state every limit, its JSON examples must be what the platform
parses and sends, and its worked signing examples must verify byte for byte with the platform's own
functions. docs/CONTRACTS.md lists the same reasons and defines `POINTS-PARTNER-V1`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "PARTNERS.md"
CONTRACTS = ROOT / "docs" / "CONTRACTS.md"
LANGUAGES = ("ja", "en")

MESSAGE_FIELDS = {"version", "partner_id", "partner_txn_id", "mykey_id", "municipality_code", "partner_points",
                  "campaign_code", "occurred_at"}
RESULT_FIELDS = {"partner_txn_id", "status", "reason", "municipality_code", "points"}
ANSWER_FIELDS = {"partner_id", "date", "conversions", "cursor"}


# -- reading the guide ------------------------------------------------------------------------------------


def _sections(text: str) -> dict[str, str]:
    japanese, english = text.index("\n## 日本語\n"), text.index("\n## English\n")
    assert japanese < english, "the Japanese section comes first"
    return {"ja": text[japanese:english], "en": text[english:]}


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    return _sections(GUIDE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def refusal_reasons() -> tuple[str, ...]:
    from chalicelib.services import conversions

    return conversions.REFUSAL_REASONS


def _unexplained(section: str, reasons) -> list[str]:
    """Reasons without a table row `| `reason` | meaning |` in this section."""
    return [reason for reason in reasons
            if not re.search(r"^\| `%s` \| *[^|\s][^|]* \|$" % re.escape(reason), section, flags=re.M)]


def _json_documents(section: str) -> list:
    """Every JSON document of the section's ```json blocks: a block is one document or one per line."""
    documents = []
    for block in re.findall(r"```json\n(.*?)```", section, flags=re.S):
        try:
            documents.append(json.loads(block))
        except ValueError:
            for line in block.splitlines():
                if line.strip():
                    try:
                        documents.append(json.loads(line))
                    except ValueError as error:
                        pytest.fail(f"a JSON example does not parse ({error}): {line}")
    return documents


def _kind(document) -> str | None:
    if not isinstance(document, dict):
        return None
    if set(document) == MESSAGE_FIELDS:
        return "message"
    if set(document) == RESULT_FIELDS:
        return "result"
    if set(document) == ANSWER_FIELDS:
        return "answer"
    if {"partner_id", "month", "lines"} <= set(document):
        return "statement"
    if "Statement" in document or "Sid" in document:
        return "policy"
    if set(document) == {"partner_txn_ids"}:
        return "inquiry"
    return None


def _of_kind(section: str, kind: str) -> list[dict]:
    return [document for document in _json_documents(section) if _kind(document) == kind]


def _labelled_blocks(section: str, label: str) -> list[dict[str, str]]:
    """```text blocks of `label: value` lines (the worked signing examples) holding `label`."""
    blocks = []
    for block in re.findall(r"```text\n(.*?)```", section, flags=re.S):
        fields = {}
        for line in block.splitlines():
            name, separator, value = line.partition(": ")
            if separator:
                fields[name.split(" ")[0]] = value
        if label in fields:
            blocks.append(fields)
    return blocks


def _subsection(section: str, heading: str) -> str:
    match = re.search(r"^### \d+\. %s\n(.*?)(?=^### |\Z)" % heading, section, flags=re.M | re.S)
    assert match, f"no subsection {heading!r}"
    return match[1]


# -- the two languages ------------------------------------------------------------------------------------


def test_guide__english_section_is_as_complete_as_the_japanese(sections):
    headings = {language: re.findall(r"^### \d+\. ", sections[language], flags=re.M) for language in LANGUAGES}
    assert len(headings["ja"]) == len(headings["en"]) >= 15
    assert not re.search(r"see the (table in the )?Japanese", sections["en"], flags=re.I)
    for kind in ("message", "result", "answer", "inquiry", "statement", "policy"):
        ja, en = _of_kind(sections["ja"], kind), _of_kind(sections["en"], kind)
        assert ja, f"no {kind} example"
        assert ja == en, f"the {kind} examples differ between the Japanese and the English section"


# -- refusal reasons --------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_refusal_reasons__each_is_explained_in_both_languages(sections, refusal_reasons, language):
    assert len(refusal_reasons) >= 16
    assert _unexplained(sections[language], refusal_reasons) == []


def test_refusal_reasons__each_is_listed_in_the_contract(refusal_reasons):
    text = CONTRACTS.read_text(encoding="utf-8")
    rules = text[text.index('<a id="conversion-rules"></a>'):text.index('<a id="conversion-results"></a>')]
    assert [reason for reason in refusal_reasons if f"`{reason}`" not in rules] == []


def test_reason_check__finds_a_reason_left_out_of_the_table(sections, refusal_reasons):
    english = sections["en"]
    row = re.search(r"^\| `partner_txn_conflict` \|.*\n", english, flags=re.M)[0]
    assert _unexplained(english.replace(row, ""), refusal_reasons) == ["partner_txn_conflict"]


# -- limits -----------------------------------------------------------------------------------------------


def _limits(language: str) -> list[str]:
    from chalicelib.domain import identifiers
    from chalicelib.services import conversions, partner_reconciliation

    points = f"{conversions.MAX_PARTNER_POINTS:,}"
    converted = f"{identifiers.MAX_AMOUNT:,}"
    txn = conversions.MAX_PARTNER_TXN_ID_CHARACTERS
    days = conversions.MAX_AGE_DAYS
    ids, page = partner_reconciliation.MAX_IDS, partner_reconciliation.PAGE_SIZE
    if language == "ja":
        return ["256 KiB", "10件", f"1〜{txn}文字", f"1〜{points}", f"1〜{converted}", "1〜64文字",
                f"{days}日前から1日後", f"1〜{ids}件", f"{page}件"]
    return ["256 KiB", "10 messages", f"1–{txn} characters", f"1–{points}", f"1–{converted}", "1–64 characters",
            f"{days} days before to 1 day after", f"1–{ids} transaction ids", f"{page} decisions"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_limits__every_limit_is_in_the_limits_table(sections, language):
    table = _subsection(sections[language], "制限値" if language == "ja" else "Limits")
    assert [limit for limit in _limits(language) if limit not in table] == []


# -- the JSON examples ------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_json_examples__every_block_parses(sections, language):
    blocks = re.findall(r"```json\n(.*?)```", sections[language], flags=re.S)
    assert len(blocks) >= 10  # messages, results, policies, inquiries, answers, the statement
    assert len(_json_documents(sections[language])) >= len(blocks)


@pytest.mark.parametrize("language", LANGUAGES)
def test_json_examples__messages_are_accepted_by_the_platform(sections, language):
    from chalicelib.services import conversions

    messages = _of_kind(sections[language], "message")
    assert messages
    for message in messages:
        conversions.parse_message(message)  # raises Rejected for a message the platform would refuse


@pytest.mark.parametrize("language", LANGUAGES)
def test_json_examples__results_have_the_shape_the_platform_sends(sections, refusal_reasons, language):
    results = _of_kind(sections[language], "result")
    for result in results:
        if result["status"] == "rejected":
            assert result["reason"] in refusal_reasons, result
            assert (result["points"], result["municipality_code"]) == (0, None), result
        else:
            assert result["status"] == "credited" and result["reason"] is None and result["points"] >= 1, result
    reasons = {result["reason"] for result in results}
    assert "partner_txn_conflict" in reasons and "unknown_partner" not in reasons
    assert any(result["status"] == "credited" and result["municipality_code"] is None for result in results), \
        "a reserve credit example"


@pytest.mark.parametrize("language", LANGUAGES)
def test_json_examples__inquiry_answers_have_the_read_apis_shape(sections, refusal_reasons, language):
    from chalicelib.services import partner_reconciliation

    answers = _of_kind(sections[language], "answer")
    statuses = set()
    for answer in answers:
        for line in answer["conversions"]:
            assert tuple(line) == partner_reconciliation.LINE_FIELDS, line
            statuses.add(line["status"])
            if line["status"] != "credited":
                assert (line["points"], line["municipality_code"], line["partner_points"]) == (0, None, None), line
            if line["status"] == "rejected":
                assert line["reason"] in refusal_reasons
            if line["status"] == "unknown":
                assert (line["reason"], line["decided_at"], answer["date"]) == (None, None, None), line
    assert statuses == {"credited", "rejected", "unknown"}
    for inquiry in _of_kind(sections[language], "inquiry"):
        partner_reconciliation.parse_inquiry(inquiry)


@pytest.mark.parametrize("language", LANGUAGES)
def test_statement_example__the_csv_is_what_the_platform_writes_for_the_json(sections, language):
    from chalicelib.services import conversions

    (statement,) = _of_kind(sections[language], "statement")
    csv = re.search(r"```text\n(自治体コード.*?)```", sections[language], flags=re.S)[1]
    written = conversions.statement_csv(statement)
    assert written.startswith("\ufeff") and written.endswith("\r\n")
    assert csv.splitlines() == written[1:].split("\r\n")[:-1]
    assert statement["total_points"] == sum(line["points"] for line in statement["lines"])


# -- the worked signing examples --------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_signing_example__the_message_signature_verifies(sections, language):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from chalicelib.services import conversions

    (example,) = _labelled_blocks(sections[language], "signature")
    body = example["body"].encode("utf-8")
    assert hashlib.sha256(body).hexdigest() == example["body_sha256"]
    assert f"{len(body)}バイト" in sections[language] or f"{len(body)} bytes" in sections[language]
    conversions.verify_signature([example["public_key"]], example["body"], example["signature"])
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(example["private_key"]))
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(public).decode() == example["public_key"]
    assert base64.b64encode(key.sign(body)).decode() == example["signature"]  # Ed25519 is deterministic
    conversions.parse_message(json.loads(body))


@pytest.mark.parametrize("language", LANGUAGES)
def test_signing_example__the_request_is_signed_as_points_partner_v1(sections, language):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from chalicelib.auth import terminals
    from chalicelib.services import partner_reconciliation

    (key,) = _labelled_blocks(sections[language], "signature")
    (request,) = _labelled_blocks(sections[language], "X-Signature")
    body = request["body"].encode("utf-8")
    assert hashlib.sha256(body).hexdigest() == request["body_sha256"]
    signed = terminals.request_message(request["method"], request["path"], request["X-Timestamp"], request["X-Nonce"],
                                       body, prefix=partner_reconciliation.SIGNATURE_PREFIX)
    assert request["signed_text"].replace("\\n", "\n").encode("utf-8") == signed
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
        base64.b64decode(request["X-Signature"]), signed)
    partner_reconciliation.parse_inquiry(json.loads(body))


def test_points_partner_v1__is_defined_in_the_contract_and_used_in_both_languages(sections):
    from chalicelib.services import partner_reconciliation

    contracts = CONTRACTS.read_text(encoding="utf-8")
    assert partner_reconciliation.SIGNATURE_PREFIX == "POINTS-PARTNER-V1"
    for anchor in ("partner-signature", "partner-reconciliation", "partner-conversions", "conversion-results"):
        assert f'<a id="{anchor}"></a>' in contracts
    signature_section = contracts[contracts.index('<a id="partner-signature"></a>'):contracts.index('<a id="transfer-outs"></a>')]
    assert "POINTS-PARTNER-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n" in signature_section
    for language in LANGUAGES:
        assert "POINTS-PARTNER-V1\\n{METHOD}\\n{PATH}\\n{X-Timestamp}\\n{X-Nonce}\\n" in sections[language]
        assert "partner_authentication_failed" in sections[language]
