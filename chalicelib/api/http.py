"""Request parsing and the error table of the HTTP edge.

`endpoint` wraps every view: a `DomainError` becomes the error body of docs/CONTRACTS.md#errors with its stable code and
status; anything unexpected becomes a 500 `internal_error` with no stack trace, logged with the request
id. Bodies are parsed here, with a size limit and a nesting limit, so that bad input always gets a clear
400 and never reaches a service.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import uuid
from typing import Any, Callable

from chalice import Response

from chalicelib import errors

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 8
# The body fields that hold what people write (docs/CONTRACTS.md#individual-number: no Individual Number anywhere inside them):
# grant, suspension and rejection reasons, approval notes, names of merchants, partners, operators and
# transfer programmes, terminal labels, point names and upload file names. Every other string field is
# an identifier, a code, a secret or an encoded payload, where only a whole value is refused (a UUID's or
# a certificate's digits are not a number someone wrote). tests/unit/test_openapi.py keeps this list and
# the request bodies of docs/openapi.yaml in step.
FREE_TEXT_FIELDS = frozenset({"reason", "note", "name", "label", "point_name", "file_name"})


def request_id(request) -> str:
    context = getattr(request, "context", None) or {}
    identifier = context.get("requestId")
    if not identifier:
        identifier = str(uuid.uuid4())
        context["requestId"] = identifier
    return identifier


def error_response(error: errors.DomainError, request) -> Response:
    body = {"error": {"code": error.code, "message": error.message, "request_id": request_id(request)}}
    field = error.details.get("field")
    if field:
        body["error"]["field"] = field
    headers = {"Content-Type": "application/json"}
    # A refusal that ends by itself (a sign-in lockout) says when, in whole seconds, as RFC 9110 asks.
    retry_after = error.details.get("retry_after_seconds")
    if retry_after:
        headers["Retry-After"] = str(int(retry_after))
    return Response(body=body, status_code=error.status, headers=headers)


def endpoint(app_or_blueprint) -> Callable:
    """Decorate a view so that domain errors and failures come out as the standard error body."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            request = app_or_blueprint.current_request
            try:
                _refuse_individual_numbers_in_address(request)
                return view(*args, **kwargs)
            except errors.DomainError as error:
                request.context["error_code"] = error.code
                return error_response(error, request)
            except Exception:
                from chalicelib.observability import get_logger

                get_logger().exception("unhandled error", extra={"request_id": request_id(request)})
                request.context["error_code"] = "internal_error"
                failure = errors.DomainError("システムエラーが発生しました。しばらくしてからもう一度お試しください。")
                failure.code, failure.status = "internal_error", 500
                return error_response(failure, request)

        return wrapped

    return decorate


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max([level] + [_depth(child, level + 1) for child in value.values()] + [_text_depth(key, level) for key in value])
    if isinstance(value, list):
        return max([level] + [_depth(child, level + 1) for child in value])
    return _text_depth(value, level)


def _text_depth(value: Any, level: int) -> int:
    # JSON may escape lone surrogates ("\ud800") that no UTF-8 store or log can hold: refuse them here.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise errors.ValidationFailed("文字列に不正な文字が含まれています。") from error
    return level


def raw_body(request, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    body = request.raw_body or b""
    if len(body) > max_bytes:
        raise errors.RequestTooLarge()
    return body


def json_object(request, max_bytes: int = MAX_BODY_BYTES) -> dict:
    body = raw_body(request, max_bytes)
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        # ValueError also covers an integer literal longer than Python converts (over 4,300 digits).
        raise errors.ValidationFailed("本文が正しい JSON ではありません。") from error
    if not isinstance(parsed, dict):
        raise errors.ValidationFailed("本文は JSON オブジェクトで送ってください。")
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise errors.ValidationFailed("JSON の入れ子が深すぎます。")
    _refuse_individual_numbers(parsed, "")
    return parsed


def _refuse_individual_numbers(value: Any, path: str, free_text: bool = False) -> None:
    """docs/CONTRACTS.md#individual-number, at the one door every JSON body passes: no field anywhere may carry an Individual Number.

    Checked over the whole body rather than field by field, so that a field added later (a name, a
    reason, a file name, a queue name) is covered without anyone remembering to. A field named in
    `FREE_TEXT_FIELDS` is searched for one written anywhere inside it; any other string is refused when
    its whole value is one.
    """
    from chalicelib.domain import identifiers

    if isinstance(value, dict):
        for key, child in value.items():
            _refuse_individual_numbers(child, f"{path}.{key}" if path else str(key), key in FREE_TEXT_FIELDS)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _refuse_individual_numbers(child, f"{path}[{index}]", free_text)
    elif isinstance(value, str) and (identifiers.contains_individual_number(value) if free_text
                                     else identifiers.looks_like_individual_number(value)):
        raise errors.IndividualNumberForbidden(field=path or None)


def _refuse_individual_numbers_in_address(request) -> None:
    """Path parameters and query values are identifier fields too: refused before anything reads them."""
    for name, value in sorted((request.uri_params or {}).items()):
        _refuse_individual_numbers(value, name)
    query = request.query_params or {}
    for name in sorted(query):
        values = query.getlist(name) if hasattr(query, "getlist") else [query[name]]
        for value in values:
            _refuse_individual_numbers(value, name)


def required(body: dict, field: str) -> Any:
    if field not in body or body[field] is None:
        raise errors.ValidationFailed(f"{field} がありません。", field=field)
    return body[field]


def refuse_unknown_fields(body: dict, allowed: set[str], where: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise errors.ValidationFailed(f"{where}未知の項目があります: {', '.join(unknown)}", field=unknown[0])


def base64_field(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise errors.ValidationFailed(f"{field} は base64 で指定してください。", field=field)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise errors.ValidationFailed(f"{field} は base64 で指定してください。", field=field) from error


def signed_card(body: dict) -> tuple[bytes, bytes]:
    """`card: {certificate, signature}` of a challenge answer, as DER and signature bytes."""
    card = required(body, "card")
    if not isinstance(card, dict):
        raise errors.ValidationFailed("card はオブジェクトで指定してください。", field="card")
    refuse_unknown_fields(card, {"certificate", "signature"}, "card: ")
    return (base64_field(required(card, "certificate"), "card.certificate"),
            base64_field(required(card, "signature"), "card.signature"))


def ed25519_public_key_field(value: Any, field: str = "public_key") -> str:
    """A registered signer's key: base64 of the raw 32-byte Ed25519 public key."""
    if not isinstance(value, str) or len(base64_field(value, field)) != 32:
        raise errors.ValidationFailed(f"{field} は Ed25519 公開鍵（32バイト）の base64 です。", field=field)
    return value


def fingerprint(body: dict, *extra: str) -> str:
    """What makes two requests "the same body" for idempotency: the parsed body, key order aside."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256("\n".join((canonical,) + extra).encode("utf-8")).hexdigest()


def created(body: dict) -> Response:
    return Response(body=body, status_code=201, headers={"Content-Type": "application/json"})
