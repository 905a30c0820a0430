"""docs/openapi.yaml against the code: a valid OpenAPI 3 document describing exactly the registered routes.

Fails when a route is added without being documented (or documented without existing), when an error
code is added to `chalicelib.errors` without reaching the `ErrorCode` enum, when a documented error
response lists a code whose class answers with another status, and when a route loses its security.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml
from openapi_spec_validator import validate

from chalicelib import errors

DOCUMENT = pathlib.Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TERMINAL_SCHEMES = {"terminalSignature", "terminalId", "terminalTimestamp", "terminalNonce"}
OPERATOR_SCHEMES = {"operatorSignature", "operatorId", "operatorTimestamp", "operatorNonce"}
PARTNER_SCHEMES = {"partnerSignature", "partnerId", "partnerTimestamp", "partnerNonce"}


@pytest.fixture(scope="module")
def spec() -> dict:
    with DOCUMENT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def _deref(spec: dict, node):
    """Follow local `$ref`s until a concrete object is reached."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _documented_error_codes(spec: dict, response: dict) -> set[str] | None:
    """The codes an error response narrows `Error.error.code` to, or None if it is not an `Error` body."""
    schema = _deref(spec, _deref(spec, response).get("content", {}).get("application/json", {}).get("schema"))
    if not isinstance(schema, dict) or "allOf" not in schema:
        return None
    for part in schema["allOf"]:
        enum = part.get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum")
        if enum:
            return set(enum)
    return None


def _domain_error_classes(base=errors.DomainError):
    for subclass in base.__subclasses__():
        yield subclass
        yield from _domain_error_classes(subclass)


def _status_of_codes() -> dict[str, int]:
    statuses = {cls.code: cls.status for cls in _domain_error_classes()}
    statuses["internal_error"] = 500
    return statuses


def _registered_routes() -> set[tuple[str, str]]:
    from app import app as chalice_app

    return {(method.upper(), path) for path, methods in chalice_app.routes.items() for method in methods}


def _security_schemes(operation: dict) -> list[set[str]]:
    return [set(requirement) for requirement in operation.get("security", [])]


def _is_staff_route(method: str, path: str) -> bool:
    return path.startswith(("/v1/municipalities/", "/v1/mykeys/", "/v1/platform/")) or path in ("/v1/staff/sessions/current", "/v1/staff/password")


def _is_optional_staff_route(method: str, path: str) -> bool:
    """Residents register themselves without credentials; counter staff may present their session."""
    return (method, path) == ("POST", "/v1/registrations")


def _is_resident_route(method: str, path: str) -> bool:
    return path.startswith("/v1/residents/") or (method, path) == ("DELETE", "/v1/resident-sessions/current")


def _is_terminal_route(path: str) -> bool:
    return path.startswith("/v1/payments") or path in {
        "/v1/balance-inquiries", "/v1/facility-links", "/v1/facility-link-lookups", "/v1/facility-link-removals",
        "/v1/transfer-outs",
    }


def _is_operator_route(path: str) -> bool:
    """Point-management companies sign their calls with their own key and headers (`X-Operator-Id`)."""
    return path.startswith("/v1/operator/")


def _is_partner_route(path: str) -> bool:
    """Partners read their own conversions and statements, signing with their key (`X-Partner-Id`)."""
    return path.startswith("/v1/partner/")


def test_openapi__document__is_a_valid_openapi_3_0_document(spec):
    assert spec["openapi"] == "3.0.3"
    validate(spec)


def test_openapi__routes__match_the_registered_routes(spec):
    documented = {(method, path) for method, path, _ in _operations(spec)}
    registered = _registered_routes()
    assert documented - registered == set(), "documented but not registered"
    assert registered - documented == set(), "registered but not documented"


def test_openapi__every_operation__has_a_unique_operation_id_and_a_summary(spec):
    operation_ids = [operation.get("operationId") for _, _, operation in _operations(spec)]
    assert all(operation_ids) and len(operation_ids) == len(set(operation_ids))
    assert all(operation.get("summary") for _, _, operation in _operations(spec))


def test_openapi__error_code_enum__equals_the_codes_of_every_domain_error_plus_internal_error(spec):
    documented = spec["components"]["schemas"]["ErrorCode"]["enum"]
    defined = {cls.code for cls in _domain_error_classes()} | {"internal_error"}
    assert len(documented) == len(set(documented)), "duplicate codes in ErrorCode"
    assert set(documented) == defined


def test_openapi__error_responses__list_only_codes_whose_class_has_that_status(spec):
    statuses = _status_of_codes()
    for method, path, operation in _operations(spec):
        for status, response in operation["responses"].items():
            codes = _documented_error_codes(spec, response)
            if int(status) >= 400 and int(status) != 415:
                assert codes, f"{method} {path} {status} does not narrow the error codes"
            for code in codes or ():
                assert statuses.get(code) == int(status), f"{method} {path} {status} lists {code}"
                assert f"`{code}`" in _deref(spec, response)["description"], f"{method} {path} {status}: {code} not described"


def test_openapi__staff_routes__declare_staff_session_security(spec):
    staff_routes = [(m, p, op) for m, p, op in _operations(spec) if _is_staff_route(m, p)]
    assert staff_routes
    for method, path, operation in staff_routes:
        assert _security_schemes(operation) == [{"staffSession"}], f"{method} {path}"
        assert "401" in operation["responses"], f"{method} {path}"
        if path.startswith("/v1/municipalities/"):
            assert operation.get("x-minimum-role") in {"viewer", "operator", "approver"}, f"{method} {path}"
            assert "403" in operation["responses"], f"{method} {path}"


@pytest.mark.parametrize("signer", ["terminal", "operator", "partner"])
def test_openapi__signed_routes__declare_their_signers_signature_headers_together(spec, signer):
    is_signed_route, schemes = {"terminal": (_is_terminal_route, TERMINAL_SCHEMES),
                                "operator": (_is_operator_route, OPERATOR_SCHEMES),
                                "partner": (_is_partner_route, PARTNER_SCHEMES)}[signer]
    signed_routes = [(m, p, op) for m, p, op in _operations(spec) if is_signed_route(p)]
    assert signed_routes
    for method, path, operation in signed_routes:
        assert _security_schemes(operation) == [schemes], f"{method} {path}"
        assert "401" in operation["responses"], f"{method} {path}"


def test_openapi__resident_routes__declare_resident_session_security(spec):
    resident_routes = [(m, p, op) for m, p, op in _operations(spec) if _is_resident_route(m, p)]
    assert resident_routes
    for method, path, operation in resident_routes:
        assert _security_schemes(operation) == [{"residentSession"}], f"{method} {path}"
        assert "401" in operation["responses"], f"{method} {path}"


def test_openapi__registration__takes_an_optional_staff_session(spec):
    operation = spec["paths"]["/v1/registrations"]["post"]
    assert _security_schemes(operation) == [set(), {"staffSession"}]


def test_openapi__health_and_sign_in__need_no_credentials(spec):
    for method, path, operation in _operations(spec):
        if not (_is_staff_route(method, path) or _is_terminal_route(path) or _is_operator_route(path)
                or _is_partner_route(path) or _is_resident_route(method, path) or _is_optional_staff_route(method, path)):
            assert operation.get("security") == [], f"{method} {path}"


def test_openapi__request_bodies__refuse_unknown_fields(spec):
    for method, path, operation in _operations(spec):
        if "requestBody" not in operation:
            continue
        schema = _deref(spec, operation["requestBody"]["content"]["application/json"]["schema"])
        assert schema.get("additionalProperties") is False, f"{method} {path}"


def test_openapi__signed_byte_strings__are_the_ones_the_code_builds(spec):
    from chalicelib.auth import cards, terminals

    def as_documented(message: bytes) -> str:
        return message.decode("utf-8").replace("\n", "\\n")

    payment_template = as_documented(
        cards.payment_message("{transfer_id}", "{terminal_id}", "{municipality_code}", "{amount}", "{signed_at}")
    )
    request_prefix = as_documented(terminals.request_message("{METHOD}", "{PATH}", "{X-Timestamp}", "{X-Nonce}", b""))
    request_prefix = request_prefix.rsplit("\\n", 1)[0] + "\\n"
    payment_operation = spec["paths"]["/v1/payments"]["post"]
    assert payment_template in payment_operation["description"]
    assert payment_template in spec["components"]["schemas"]["PaymentCard"]["properties"]["signature"]["description"]
    terminal_scheme = spec["components"]["securitySchemes"]["terminalSignature"]["description"]
    assert request_prefix + "{lower-case hex SHA-256 of raw body}" in terminal_scheme


def _examples(node, where: str = ""):
    """Every (place, schema, example) of the document: media types' `example`/`examples` and schemas' `example`."""
    if isinstance(node, dict):
        schema = node.get("schema")
        if isinstance(schema, dict):
            if "example" in node:
                yield f"{where}/example", schema, node["example"]
            for name, example in (node.get("examples") or {}).items():
                yield f"{where}/examples/{name}", schema, example["value"]
        elif "example" in node and any(key in node for key in ("type", "properties", "allOf", "oneOf", "$ref")):
            yield f"{where}/example", {key: value for key, value in node.items() if key != "example"}, node["example"]
        for key, child in node.items():
            yield from _examples(child, f"{where}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _examples(child, f"{where}/{index}")


def _schema_validator(spec: dict, schema: dict):
    from openapi_schema_validator import OAS30Validator, oas30_format_checker

    # `components` beside the schema so that its local `$ref`s resolve; formats (byte, date) are checked too.
    return OAS30Validator({**schema, "components": spec["components"]}, format_checker=oas30_format_checker)


def test_openapi__every_example__is_valid_against_its_schema(spec):
    examples = list(_examples(spec))
    assert len(examples) > 100  # media-type and schema examples alike are found
    invalid = [f"{where}: {error.message[:120]}" for where, schema, example in examples
               for error in _schema_validator(spec, schema).iter_errors(example)]
    assert invalid == []


def test_openapi__empty_certificate__is_refused_by_the_schema(spec):
    schema = {"$ref": "#/components/schemas/PaymentCard"}
    assert not _schema_validator(spec, schema).is_valid({"certificate": ""})
    assert _schema_validator(spec, schema).is_valid({"certificate": "MIIEpDCCA4ygAwIBAgIEAQ=="})


def _request_string_fields(spec: dict, schema: dict, name: str = ""):
    """(field name, schema) of every string a request body declares, nested objects and arrays included."""
    schema = _deref(spec, schema)
    for part in schema.get("allOf", []) + schema.get("oneOf", []):
        yield from _request_string_fields(spec, part, name)
    for child_name, child in schema.get("properties", {}).items():
        yield from _request_string_fields(spec, child, child_name)
    if "items" in schema:
        yield from _request_string_fields(spec, schema["items"], name)
    if schema.get("type") == "string":
        yield name, schema


# Unconstrained strings that are not free text: machine CSV feeds (serial numbers), an account number
# checked against its programme's pattern, passwords (hashed, never stored as text), and partners'
# transaction ids (any characters; the partner read API itself refuses one with an Individual Number inside).
NOT_FREE_TEXT = {"content", "destination_account", "current_password", "new_password", "partner_txn_ids"}


def test_openapi__free_text_fields__are_exactly_the_unconstrained_strings_of_the_request_bodies(spec):
    """`http.FREE_TEXT_FIELDS` (searched inside for an Individual Number) against the document: a string
    field with no anchored pattern, enum or format is text people write, and must be listed there."""
    from chalicelib.api.http import FREE_TEXT_FIELDS

    unconstrained = set()
    for _, _, operation in _operations(spec):
        if "requestBody" in operation:
            for name, schema in _request_string_fields(spec, operation["requestBody"]["content"]["application/json"]["schema"]):
                if not (str(schema.get("pattern", "")).startswith("^") or "enum" in schema or "format" in schema):
                    unconstrained.add(name)
    assert unconstrained - NOT_FREE_TEXT == FREE_TEXT_FIELDS
