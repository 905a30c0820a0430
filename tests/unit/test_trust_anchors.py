"""The committed production trust anchors and the README beside them say the same thing.

`chalicelib/trust/jpki-user-authentication-anchors.pem` is what `CARD_TRUST_STORE` names in production;
`chalicelib/trust/README.md` lists each certificate with its serial, validity and SHA-256 fingerprint, which
is what an operator compares with J-LIS's published fingerprints. A certificate added to the bundle without
its row, a row left behind for a certificate removed, a mistyped fingerprint, or an anchor that is no
longer (or not yet) valid fails here rather than at the first card tap in production.
"""
import datetime as dt
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRUST = ROOT / "chalicelib" / "trust"
BUNDLE = TRUST / "jpki-user-authentication-anchors.pem"
README = TRUST / "README.md"

_FINGERPRINT = r"(?:[0-9A-F]{2}:){31}[0-9A-F]{2}"
# | # | certificate | `serial` | valid from (UTC) | valid to (UTC) | `fingerprint` |
_ROW = re.compile(
    r"^\|\s*\d+\s*\|[^|]*\|\s*`(?P<serial>[0-9A-F]+)`\s*\|\s*(?P<not_before>[0-9-]+ [0-9:]+)\s*\|"
    r"\s*(?P<not_after>[0-9-]+ [0-9:]+)\s*\|\s*`(?P<fingerprint>" + _FINGERPRINT + r")`\s*\|\s*$",
    re.MULTILINE,
)


def _bundle_certificates(pem: bytes):
    from cryptography import x509

    return x509.load_pem_x509_certificates(pem)


def _fingerprint(certificate) -> str:
    from cryptography.hazmat.primitives import hashes

    return certificate.fingerprint(hashes.SHA256()).hex(":").upper()


def _listed(readme: str) -> dict[str, dict]:
    return {match["fingerprint"]: match.groupdict() for match in _ROW.finditer(readme)}


def _differences(pem: bytes, readme: str) -> list[str]:
    """What the README's table and the bundle disagree on; empty when they agree exactly."""
    listed = _listed(readme)
    problems = []
    in_bundle = {}
    for certificate in _bundle_certificates(pem):
        fingerprint = _fingerprint(certificate)
        in_bundle[fingerprint] = certificate
        row = listed.get(fingerprint)
        if row is None:
            problems.append(f"in the bundle, not in README.md: serial {certificate.serial_number:X}, {fingerprint}")
            continue
        if int(row["serial"], 16) != certificate.serial_number:
            problems.append(f"README.md gives serial {row['serial']} for {fingerprint}")
        for field, actual in (("not_before", certificate.not_valid_before_utc),
                              ("not_after", certificate.not_valid_after_utc)):
            if row[field] != actual.strftime("%Y-%m-%d %H:%M:%S"):
                problems.append(f"README.md gives {field} {row[field]} for {fingerprint}, the certificate says {actual}")
    for fingerprint in listed.keys() - in_bundle.keys():
        problems.append(f"in README.md, not in the bundle: {fingerprint}")
    return problems


def test_trust_anchor_readme__lists_every_certificate_of_the_bundle_with_its_exact_fingerprint():
    pem, readme = BUNDLE.read_bytes(), README.read_text(encoding="utf-8")
    assert len(_bundle_certificates(pem)) >= 1
    assert _differences(pem, readme) == []


def test_trust_anchor_check__fails_on_a_mistyped_fingerprint_or_a_certificate_left_out():
    pem, readme = BUNDLE.read_bytes(), README.read_text(encoding="utf-8")
    fingerprint = next(iter(_listed(readme)))
    last = fingerprint[-1]
    mistyped = readme.replace(fingerprint, fingerprint[:-1] + ("0" if last != "0" else "1"))
    assert any("not in README.md" in problem for problem in _differences(pem, mistyped))
    assert any("not in the bundle" in problem for problem in _differences(pem, mistyped))
    row = next(line for line in readme.splitlines() if fingerprint in line)
    assert any("not in README.md" in problem for problem in _differences(pem, readme.replace(row, "")))


def test_trust_anchors__are_ca_certificates_valid_today():
    from cryptography import x509

    now = dt.datetime.now(dt.timezone.utc)
    for certificate in _bundle_certificates(BUNDLE.read_bytes()):
        name = certificate.subject.rfc4514_string()
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca, name
        assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign, name
        assert certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc, f"{name} is not valid today"


def test_trust_anchors__are_what_production_configures():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    configured = config["stages"]["prod"]["environment_variables"]["CARD_TRUST_STORE"]
    assert ROOT / configured == BUNDLE
