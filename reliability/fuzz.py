"""Property-based fuzzing of every HTTP input, driven by docs/openapi.yaml (issue 10, item 2).

The OpenAPI document is the source of the operations and of their inputs, so a route added to the
document is fuzzed without touching the tests. This module holds what does not depend on a running app:

* `operations()` — every documented operation, with its parameters, request-body schema, security and,
  per status, the error codes the document lists for it;
* strategies — values from a JSON schema (`from_schema`, with per-field hints of realistic values),
  nasty values (wrong types, huge numbers, floats, NaN, nulls, unicode, lone surrogates, 12-digit
  Individual-Number-like strings, very long strings, deep nesting), mutations of a valid body and raw
  bodies that are not JSON at all;
* the oracle — `response_problems()`: no 5xx, no stack trace or exception class name in any response,
  every refusal in the error shape of docs/CONTRACTS.md#errors with a code of the `ErrorCode` enum that the operation
  documents for that status;
* `Tally` and `write_results()` — the figures of the run, written to `reliability/results/fuzz.json`.

The tests that drive the app are `tests/integration/test_fuzz_http.py` and `test_fuzz_queue.py`;
`python -m reliability.fuzz [--examples N]` runs them (N examples per operation, default 10 in `make test`).
"""
from __future__ import annotations

import base64
import builtins
import datetime as dt
import functools
import json
import os
import pathlib
import re
import sys
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "openapi.yaml"
RESULTS = ROOT / "reliability" / "results" / "fuzz.json"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
DEFAULT_EXAMPLES = 10


def examples_per_operation() -> int:
    """Hypothesis examples per operation: modest in `make test`, `FUZZ_EXAMPLES` raises it."""
    return int(os.environ.get("FUZZ_EXAMPLES", DEFAULT_EXAMPLES))


def hypothesis_settings(**overrides):
    """Settings shared by the fuzz tests: no example database in the repo, no deadline (DynamoDB Local
    answers in tens of milliseconds), derandomized so `make test` is repeatable unless `FUZZ_SEED` is set
    (an integer, or `random`)."""
    from hypothesis import HealthCheck, settings

    seed = os.environ.get("FUZZ_SEED")
    options = dict(
        max_examples=examples_per_operation(), deadline=None, database=None, derandomize=seed is None,
        print_blob=True, suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
    )
    options.update(overrides)
    return settings(**options)


def apply_seed(test):
    """Use `FUZZ_SEED` (an integer) for a reproducible random run; `random` leaves Hypothesis free."""
    from hypothesis import seed as hypothesis_seed

    value = os.environ.get("FUZZ_SEED")
    if value and value != "random":
        return hypothesis_seed(int(value))(test)
    return test


# -- the document ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def document() -> dict:
    import yaml

    with DOCUMENT.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def deref(node, doc: dict | None = None):
    """Follow local `$ref`s until a concrete object is reached."""
    doc = doc or document()
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def error_codes() -> frozenset[str]:
    return frozenset(document()["components"]["schemas"]["ErrorCode"]["enum"])


def _documented_codes(response: dict) -> frozenset[str] | None:
    schema = deref(deref(response).get("content", {}).get("application/json", {}).get("schema"))
    if not isinstance(schema, dict):
        return None
    for part in schema.get("allOf", []):
        enum = deref(part).get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum")
        if enum:
            return frozenset(enum)
    return None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    security: str  # terminal, operator, partner, staff, optional_staff, resident, public
    path_parameters: tuple
    query_parameters: tuple
    body_schema: dict | None = field(compare=False, hash=False, repr=False)
    responses: dict = field(compare=False, hash=False, repr=False)  # status -> frozenset of codes or None
    minimum_role: str | None = None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def route_pattern(self) -> re.Pattern:
        pattern = re.escape(self.path)
        for name, _ in self.path_parameters:
            pattern = pattern.replace(re.escape("{" + name + "}"), "[^/?#]+")
        return re.compile(pattern)

    def __str__(self) -> str:
        return self.key


def _security_kind(operation: dict) -> str:
    requirements = [set(requirement) for requirement in operation.get("security", [])]
    names = set().union(*requirements) if requirements else set()
    if "terminalSignature" in names:
        return "terminal"
    if "operatorSignature" in names:
        return "operator"
    if "partnerSignature" in names:
        return "partner"
    if "residentSession" in names:
        return "resident"
    if "staffSession" in names:
        return "optional_staff" if set() in requirements else "staff"
    return "public"


def operations() -> list[Operation]:
    """Every operation of the document, in document order."""
    doc = document()
    found = []
    for path, item in doc["paths"].items():
        shared = [deref(parameter) for parameter in item.get("parameters", [])]
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            parameters = shared + [deref(parameter) for parameter in operation.get("parameters", [])]
            body = operation.get("requestBody")
            body_schema = deref(body["content"]["application/json"]["schema"]) if body else None
            found.append(Operation(
                method=method.upper(), path=path, operation_id=operation["operationId"],
                security=_security_kind(operation),
                path_parameters=tuple((p["name"], deref(p.get("schema", {}))) for p in parameters if p["in"] == "path"),
                query_parameters=tuple((p["name"], deref(p.get("schema", {}))) for p in parameters if p["in"] == "query"),
                body_schema=body_schema,
                responses={int(status): _documented_codes(response) for status, response in operation["responses"].items()},
                minimum_role=operation.get("x-minimum-role"),
            ))
    return found


# -- values ---------------------------------------------------------------------------------------------

INDIVIDUAL_NUMBER = "123456789018"  # a valid My Number check digit (docs/CONTRACTS.md#individual-number)


def individual_number_check_digit(first_eleven: str) -> int:
    remainder = sum(int(first_eleven[11 - n]) * (n + 1 if n <= 6 else n - 5) for n in range(1, 12)) % 11
    return 0 if remainder <= 1 else 11 - remainder


def individual_numbers():
    """12-digit strings whose last digit is a valid My Number check digit."""
    from hypothesis import strategies as st

    return st.integers(0, 10**11 - 1).map(lambda n: f"{n:011d}" + str(individual_number_check_digit(f"{n:011d}")))


# Lone surrogates cannot be UTF-8 encoded: `encode_json` writes them as JSON escapes ("\ud800").
LONE_SURROGATES = ("\ud800", "\udfff", "a\udc00b", "\udbff\u3042")
LONG_LENGTHS = (257, 4_097, 70_000, 140_000)
NASTY_STRINGS = (
    "", " ", "\u3000", "\x00", "\r\n", "\t", "null", "true", "0", "-1", "1e309", "NaN", "10.0", "0x10",
    INDIVIDUAL_NUMBER, " 123456789018 ", "１２３４５６７８９０１８", "12345678901", "1234567890185",
    "../../../../etc/passwd", "..%2F..%2F", "%00", "%s%s%n", "<script>alert(1)</script>", "' OR '1'='1",
    "${jndi:ldap://127.0.0.1/a}", "{{7*7}}", "\u202eevil", "🙂" * 8, "あ" * 40, "ｶﾀｶﾅ", "Ａ", "é",
    "\ufeff", "\ufffd", "A" * 65, "ABCD2345", "abcd2345", "252034", "252035", "131016", "2026-02-30",
    "2026-13-01", "9999-12-31", "0001-01-01", "2026-W48-5", "0000-00-00", "²", "١٢", "Ⅻ", "00000000-0000-0000-0000-000000000000",
    "0F8FAD5B-D9CB-469F-A165-70867728950E", "*", "platform", "reserve", "wallet:X:Y", "#", "a#b",
)
EDGE_INTEGERS = (0, -1, 1, 2, 3000, 3001, 100_000, 100_001, 999_999, 1_000_000, 1_000_001, 2**31 - 1, 2**31,
                 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 10**30, -(10**30), 10**4299)


def long_strings():
    from hypothesis import strategies as st

    return st.builds(lambda char, length: char * length, st.sampled_from(["a", "9", "あ", "0", " ", "\""]),
                     st.sampled_from(LONG_LENGTHS))


def nested(depth: int, leaf=1, kind: str = "dict"):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if kind == "dict" else [value]
    return value


def nasty_values():
    """Values of the wrong type, at the edges, or hostile."""
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(), st.booleans(), st.sampled_from(EDGE_INTEGERS), st.integers(),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.5, 1.0, -0.0, 1e308, 5e-324, 10.0]),
        st.sampled_from(NASTY_STRINGS), st.sampled_from(LONE_SURROGATES), individual_numbers(),
        st.text(max_size=40), st.text(st.characters(codec="utf-8"), max_size=20),
    )
    return st.one_of(
        scalars,
        long_strings(),
        st.lists(scalars, max_size=3),
        st.dictionaries(st.text(max_size=8), scalars, max_size=3),
        st.builds(nested, st.integers(1, 12), scalars, st.sampled_from(["dict", "list"])),
    )


def fresh_uuids():
    """A new lower-case UUID each time, even on replay: idempotency keys that no earlier example used (a
    derandomized run would otherwise draw the same ids in every test, and replay instead of post)."""
    from hypothesis import strategies as st

    return st.builds(lambda: str(__import__("uuid").uuid4()))


def weighted(*choices):
    """One of several strategies, by weight: `weighted((7, a), (2, b), (1, c))`. (`st.one_of` would merge
    repeated strategies, so repeating one does not weigh it.)"""
    from hypothesis import strategies as st

    indexes = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indexes).flatmap(lambda index: choices[index][1])


# -- schemas to strategies ------------------------------------------------------------------------------


def _merged(schema: dict) -> dict:
    schema = deref(schema)
    if "allOf" not in schema:
        return schema
    merged: dict = {key: value for key, value in schema.items() if key != "allOf"}
    for part in schema["allOf"]:
        for key, value in _merged(part).items():
            merged.setdefault(key, value)
    return merged


def _string(schema: dict):
    from hypothesis import strategies as st

    pattern, form = schema.get("pattern"), schema.get("format")
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 80), 300)
    if form == "byte":
        return st.binary(max_size=96).map(lambda raw: base64.b64encode(raw).decode())
    if form == "date":
        return st.one_of(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)), st.dates()).map(dt.date.isoformat)
    if form == "date-time" and not pattern:
        return st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(dt.timezone.utc)).map(
            lambda moment: moment.isoformat())
    if pattern and pattern.startswith("^"):
        strategy = st.from_regex(pattern, fullmatch=True)
        if "minLength" in schema or "maxLength" in schema:
            strategy = strategy.filter(lambda text: low <= len(text) <= max(high, low))
        return strategy
    strategy = st.text(min_size=low, max_size=max(high, low))
    if pattern:
        compiled = re.compile(pattern)
        strategy = strategy.filter(lambda text: compiled.search(text) is not None)
    return strategy


def from_schema(schema: dict, hints: dict | None = None, name: str | None = None, depth: int = 0):
    """Values valid for `schema`; a property whose name is in `hints` is drawn from the hint or the schema."""
    from hypothesis import strategies as st

    # `is None`, not `or`: the tests' hints are a lazy mapping that stays empty (falsy) until a field is asked.
    hints = {} if hints is None else hints
    schema = _merged(schema)
    strategy = _from_schema(schema, hints, depth)
    if name in hints:
        strategy = weighted((3, hints[name]), (1, strategy))
    if schema.get("nullable"):
        strategy = weighted((4, strategy), (1, st.none()))
    return strategy


def _from_schema(schema: dict, hints: dict, depth: int):
    from hypothesis import strategies as st

    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return st.one_of([from_schema(option, hints, None, depth + 1) for option in schema[combinator]])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = [name for name in schema.get("required", []) if name in properties]
        optional = [name for name in properties if name not in required]
        if depth > 4:
            return st.fixed_dictionaries({name: st.none() for name in required})
        return st.fixed_dictionaries(
            {name: from_schema(properties[name], hints, name, depth + 1) for name in required},
            optional={name: from_schema(properties[name], hints, name, depth + 1) for name in optional},
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), hints, None, depth + 1),
                        min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(10**6)), schema.get("maximum", 10**7))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return _string(schema)
    return nasty_values()


# -- bodies ---------------------------------------------------------------------------------------------


def encode_json(value, ensure_ascii: bool = False) -> bytes:
    """JSON bytes; strings holding lone surrogates go out as `\\udXXX` escapes, NaN as `NaN`."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, allow_nan=True).encode("utf-8")


RAW_BODIES = (
    b"", b" ", b"{", b"}", b"{not json", b'{"a":', b"null", b"[]", b"[{}]", b'"text"', b"1", b"true", b"NaN",
    b"\xff\xfe\x00", b"\xc3\x28", b"\xef\xbb\xbf{}", b'{"a":1}{"b":2}', b'{"a":1,"a":2}', b"{}" + b"\x00",
    b'{"\\ud800":1}', b'{"a":"\\ud800"}', b'{"a":"\\udfff\\ud800"}', b"\x00" * 16, b"{'single':'quotes'}",
    b'{"a":1e999999}', b'{"a":-Infinity}', b'{"a":' + b"9" * 4300 + b"}", b'{"a":' + b"9" * 5000 + b"}",
)


def raw_bodies(small: bool = False):
    """Bodies that are not a JSON object: not JSON, not UTF-8, not an object, deeply nested, oversized."""
    from hypothesis import strategies as st

    if small:
        return st.one_of(st.sampled_from([raw for raw in RAW_BODIES if len(raw) < 1024]), st.binary(max_size=64))

    def deep(depth: int, opening: bytes) -> bytes:
        closing = b"]" if opening == b"[" else b"}"
        inner = b"1"
        if opening == b"{":
            return b'{"a":' * depth + inner + closing * depth
        return opening * depth + inner + closing * depth

    return st.one_of(
        st.sampled_from(RAW_BODIES),
        st.binary(max_size=64),
        st.builds(deep, st.sampled_from([9, 30, 1_000, 20_000, 40_000]), st.sampled_from([b"[", b"{"])),
        st.sampled_from([66_000, 70_000]).map(lambda size: b'{"x":"' + b"a" * size + b'"}'),
    )


def mutated(valid, required: tuple = ()):
    """A valid body with one thing wrong: a field missing, a field added, a value (at any depth) replaced
    by a nasty one, or the object replaced by another JSON value."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        body = draw(valid)
        kind = draw(st.sampled_from(["drop", "extra", "replace", "replace", "replace", "nested", "not_object",
                                     "deeper"]))
        if not isinstance(body, dict) or kind == "not_object":
            return draw(st.one_of(nasty_values(), st.just([body])))
        body = dict(body)
        if kind == "drop" and body:
            del body[draw(st.sampled_from(sorted(body)))]
        elif kind == "extra" or not body:
            body[draw(st.one_of(st.sampled_from(["id", "__proto__", "amount ", "Amount", "mykey", "個人番号",
                                                 "\ud800", "", "x" * 300]), st.text(max_size=10)))] = draw(nasty_values())
        elif kind == "replace":
            body[draw(st.sampled_from(sorted(body)))] = draw(nasty_values())
        elif kind == "nested":
            inner_keys = sorted(key for key, value in body.items() if isinstance(value, dict) and value)
            if inner_keys:
                outer = draw(st.sampled_from(inner_keys))
                inner = dict(body[outer])
                inner[draw(st.one_of(st.sampled_from(sorted(inner)), st.text(max_size=8)))] = draw(nasty_values())
                body[outer] = inner
            else:
                body[draw(st.sampled_from(sorted(body)))] = draw(nasty_values())
        elif kind == "deeper":
            key = draw(st.sampled_from(sorted(body)))
            body[key] = nested(draw(st.integers(1, 10)), body[key])
        return body

    return build()


def body_bytes(valid):
    """Request bodies for an operation: valid ones, mutated ones and raw non-JSON ones, as bytes."""
    from hypothesis import strategies as st

    objects = weighted((1, valid), (1, mutated(valid)))
    return weighted((9, st.builds(encode_json, objects, st.booleans())), (1, raw_bodies()))


def path_values(schema: dict, realistic=None):
    """A path parameter: realistic, schema-shaped, or hostile (unicode, '../', very long, empty)."""
    from hypothesis import strategies as st

    hostile = st.one_of(
        st.sampled_from(["..", "../", "../../v1/health", "%2e%2e%2f", "a/b", ".", "~", " ", "\u3042", "🙂",
                         INDIVIDUAL_NUMBER, "\x00", "a;b", "a?b=c", "a#b", "%", "%zz", "null", "{code}"]),
        st.text(min_size=1, max_size=30), st.integers(1, 4000).map(lambda n: "a" * n), individual_numbers(),
        st.just(""),
    )
    if realistic is None:
        return weighted((8, from_schema(schema)), (2, hostile))
    return weighted((8, realistic), (1, from_schema(schema)), (1, hostile))


def encode_path_value(value: str, raw: bool) -> str:
    """Percent-encoded as a client sends it, or raw (a '/' in it then changes the route)."""
    if raw and not any(character in value for character in "?#%"):
        return value
    return urllib.parse.quote(value, safe="")


# -- requests and the oracle ----------------------------------------------------------------------------


def _short(value) -> str:
    """repr with long runs of one character folded, so a failing example stays readable and exact."""
    text = repr(value)
    return re.sub(r"(.)\1{40,}", lambda match: f"{match.group(1)}⟨×{len(match.group(0))}⟩", text)


@dataclass
class Request:
    """One generated HTTP request; `auth` says how the route's credentials are made when it is sent."""

    operation: str
    method: str
    path: str
    query: str = ""
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    auth: tuple = ()

    @property
    def url(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    def __repr__(self) -> str:
        return (f"Request({self.method} {_short(self.url)}, headers={_short(self.headers)}, auth={self.auth!r}, "
                f"body={_short(self.body)} ({len(self.body)} bytes))")


_EXCEPTION_NAMES = sorted(
    {name for name, value in vars(builtins).items()
     if isinstance(value, type) and issubclass(value, BaseException) and name not in {"Exception", "BaseException"}}
    | {"JSONDecodeError", "ClientError", "TransactionCanceledException", "ConditionalCheckFailedException",
       "ParamValidationError", "PynamoDBException", "PutError", "UpdateError", "GetError", "DoesNotExist",
       "InvalidSignature", "UnsupportedAlgorithm", "ChaliceViewError", "BadRequestError"}
)
TRACE_MARKERS = ("Traceback", 'File "', "botocore", "pynamodb", "chalicelib/", "site-packages")
_EXCEPTION_PATTERN = re.compile(r"\b(?:" + "|".join(map(re.escape, _EXCEPTION_NAMES)) + r")\b")
_FRAMEWORK_ROUTING_STATUSES = {403, 404, 405}


def leaks(text: str) -> list[str]:
    """Stack-trace markers and Python exception class names found in a response body."""
    found = [marker for marker in TRACE_MARKERS if marker in text]
    found += sorted(set(_EXCEPTION_PATTERN.findall(text)))
    return found


def response_problems(operation: Operation, request: Request, status: int, headers: dict, body: bytes) -> list[str]:
    """Everything wrong with one response, by the rules of issue 10 and docs/CONTRACTS.md#errors."""
    problems = []
    text = body.decode("utf-8", "replace")
    if status >= 500:
        problems.append(f"server error {status}")
    found = leaks(text)
    if found:
        problems.append(f"internals in the body: {found}")
    routed = operation.route_pattern.fullmatch(request.path) is not None
    if status < 400:
        if status not in operation.responses:
            problems.append(f"status {status} not documented for {operation.key}")
        return problems
    try:
        parsed = json.loads(text)
    except ValueError:
        return problems + [f"refusal {status} is not JSON"]
    framework = isinstance(parsed, dict) and ({"Code", "Message"} <= set(parsed) or set(parsed) == {"message"})
    if framework:
        # Answered by the framework before the application runs (documented: FrameworkError): an
        # unsupported Content-Type, or a path that no longer matches the route ('/' in a parameter).
        if not (status == 415 or (not routed and status in _FRAMEWORK_ROUTING_STATUSES)):
            problems.append(f"framework refusal {status} for a request that reaches the application")
        return problems
    if not (isinstance(parsed, dict) and set(parsed) == {"error"} and isinstance(parsed["error"], dict)):
        return problems + [f"refusal {status} is not the error shape of docs/CONTRACTS.md#errors"]
    error = parsed["error"]
    if not {"code", "message", "request_id"} <= set(error) or set(error) - {"code", "message", "request_id", "field"}:
        problems.append(f"error fields {sorted(error)}")
    if not all(isinstance(error.get(name), str) and error.get(name) for name in ("code", "message", "request_id")):
        problems.append("error code, message and request_id must be non-empty strings")
    code = error.get("code")
    if code not in error_codes():
        problems.append(f"code {code!r} is not in the ErrorCode enum")
    documented = operation.responses.get(status, "missing")
    if documented == "missing":
        problems.append(f"status {status} ({code}) not documented for {operation.key}")
    elif documented is not None and code not in documented:
        problems.append(f"code {code!r} not documented for {operation.key} {status} (documented: {sorted(documented)})")
    request_id = {key.lower(): value for key, value in headers.items()}.get("x-request-id")
    if request_id != error.get("request_id"):
        problems.append("X-Request-Id differs from error.request_id")
    return problems


# -- figures --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a fuzz run did: cases, server errors and the answers it got."""

    cases: int = 0
    server_errors: int = 0
    problems: int = 0
    statuses: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)
    per_operation: Counter = field(default_factory=Counter)
    answers: dict = field(default_factory=dict)  # operation -> Counter of "status code"
    known: Counter = field(default_factory=Counter)  # open finding -> cases that hit it
    reproduced: dict = field(default_factory=dict)  # known defect -> what its reproduction showed
    started: float = field(default_factory=time.time)

    def record(self, key: str, status: int, code: str | None, problems: list[str], known: str | None = None) -> None:
        self.cases += 1
        if known:
            self.known[known] += 1
        self.per_operation[key] += 1
        self.answers.setdefault(key, Counter())[f"{status} {code}" if code else str(status)] += 1
        self.statuses[str(status)] += 1
        if code:
            self.codes[code] += 1
        if status >= 500:
            self.server_errors += 1
        if problems:
            self.problems += 1

    def summary(self) -> dict:
        return {
            "cases": self.cases,
            "server_errors": self.server_errors,
            "cases_with_problems": self.problems,
            "cases_hitting_open_findings": dict(sorted(self.known.items())),
            "operations": len(self.per_operation),
            "seconds": round(time.time() - self.started, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "codes": dict(sorted(self.codes.items())),
            "answers_per_operation": {key: dict(sorted(self.answers[key].items())) for key in sorted(self.answers)},
        }


@dataclass
class QueueTally:
    """What the queue fuzzing did: messages given to each consumer, what they answered, what raised."""

    cases: int = 0
    crashes: int = 0
    invalid_credits: int = 0
    per_consumer: dict = field(default_factory=dict)  # consumer -> Counter of outcomes
    known: Counter = field(default_factory=Counter)
    reproduced: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def record(self, consumer: str, outcome: str, crash: bool = False, known: str | None = None,
               invalid_credit: bool = False, cases: int = 1) -> None:
        if consumer == "reproduction":  # a kept failing example, not a fuzz case
            self.per_consumer.setdefault(consumer, Counter())[outcome] += 1
            return
        self.cases += cases
        self.per_consumer.setdefault(consumer, Counter())[outcome] += cases
        if crash:
            self.crashes += 1
        if known:
            self.known[known] += 1
        if invalid_credit:
            self.invalid_credits += 1

    def summary(self) -> dict:
        return {
            "cases": self.cases,
            "server_errors": self.crashes,
            "consumers": len([name for name in self.per_consumer if name != "reproduction"]),
            "credited_or_granted_for_invalid_messages": self.invalid_credits,
            "seconds": round(time.time() - self.started, 1),
            "cases_hitting_known_defects": dict(sorted(self.known.items())),
            "known_defects": self.reproduced,
            "outcomes_per_consumer": {name: dict(sorted(counts.items())) for name, counts in sorted(self.per_consumer.items())},
        }


def write_results(section: str, summary: dict, path: pathlib.Path = RESULTS) -> dict:
    """Merge one part of the run (`http` or `queue`) into fuzz.json and recompute the totals.

    `server_errors` counts what the fuzz cases met: HTTP answers of 500 or more, and queue records whose
    consumer raised (which SQS would retry into the dead-letter queue), including those explained by an
    open defect; `open_defects` lists the defects still open. Each part carries its own `finished_at`;
    running one test module alone refreshes only its part.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = {}
    summary = dict(summary, finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                   examples_per_operation=examples_per_operation(), seed=os.environ.get("FUZZ_SEED", "derandomized"))
    results[section] = summary
    parts = [results[name] for name in ("http", "queue") if name in results]
    results["cases"] = sum(part["cases"] for part in parts)
    results["server_errors"] = sum(part["server_errors"] for part in parts)
    results["operations"] = results.get("http", {}).get("operations", 0)
    results["queue_consumers"] = results.get("queue", {}).get("consumers", 0)
    results["open_defects"] = [
        {"part": part, "name": name, "description": finding.get("description") or finding.get("reason")}
        for part, key in (("http", "findings"), ("queue", "known_defects"))
        for name, finding in results.get(part, {}).get(key, {}).items() if finding.get("open", True)
    ]
    ordered = {key: results[key] for key in ("cases", "server_errors", "operations", "queue_consumers", "open_defects")}
    ordered.update({key: value for key, value in results.items() if key not in ordered})
    path.write_text(json.dumps(ordered, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return ordered


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz tests (and the attack suite) with N examples per operation; print the figures."""
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="Hypothesis examples per operation")
    parser.add_argument("--seed", default=None, help="an integer for a reproducible random run, or 'random'")
    parser.add_argument("--with-attacks", action="store_true", help="also run tests/integration/test_attacks.py")
    arguments = parser.parse_args(argv)
    environment = dict(os.environ, FUZZ_EXAMPLES=str(arguments.examples))
    if arguments.seed:
        environment["FUZZ_SEED"] = arguments.seed
    files = ["tests/integration/test_fuzz_http.py", "tests/integration/test_fuzz_queue.py"]
    if arguments.with_attacks:
        files.append("tests/integration/test_attacks.py")
    status = subprocess.call([sys.executable, "-m", "pytest", "-q", *files], cwd=ROOT, env=environment)
    if RESULTS.exists():
        print(RESULTS.read_text(encoding="utf-8"))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
