"""Fixtures shared by every test layer: DynamoDB Local for the session, tables, stores and worlds.

DynamoDB Local (Amazon's own engine) starts once per test process, in memory; each test module gets its
own table prefix, and each test its own random municipalities and residents, so tests never see each
other's data. Unit tests never touch it: they use the in-memory fakes.
"""
from __future__ import annotations

import contextlib
import os
import random
import time
import uuid

import pytest

from tools.localcloud.processes import DynamoDBLocal, free_port, local_aws_environment

REGION = "ap-northeast-1"
# No X-Ray daemon in tests: Powertools Tracer passes through, as in the local cloud.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


# `make test` runs the suite on two workers (pytest-xdist), each with its own DynamoDB Local. A module's
# tests stay together on one worker, in order (module fixtures, the attack and fuzz logs), as with
# `--dist loadfile`. Modules that must not run beside each other share one unit of work: the end-to-end
# tests, because the machine has one pcscd and one pair of virtual reader ports for every local cloud they
# start; the two fuzz suites, because both write reliability/results/fuzz.json when they end. (xdist's own
# `loadgroup` would do this with marks, but under pytest 9 it ignores them.)
SERIAL_GROUPS = {"tests/e2e/": "local-cloud", "tests/integration/test_fuzz_": "fuzz"}


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return next((name for prefix, name in SERIAL_GROUPS.items() if module.startswith(prefix)), module)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def dynamodb_local():
    with DynamoDBLocal(free_port()) as database:
        previous = {key: os.environ.get(key) for key in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        environment = local_aws_environment(database.endpoint_url, "http://127.0.0.1:9")
        environment.pop("AWS_ENDPOINT_URL_SQS")
        os.environ.update(environment)
        yield database
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def dynamodb_client(dynamodb_local):
    import boto3

    return boto3.client("dynamodb", endpoint_url=dynamodb_local.endpoint_url, region_name=REGION)


@pytest.fixture(scope="session")
def table_prefix(dynamodb_client):
    from chalicelib.storage.models import bind_models
    from chalicelib.storage.schema import create_tables

    prefix = f"test{uuid.uuid4().hex[:8]}-"
    create_tables(dynamodb_client, prefix)
    bind_models(prefix, REGION)
    with deliver_stream_before_list_reads(dynamodb_local_url(dynamodb_client)):
        yield prefix


def dynamodb_local_url(dynamodb_client) -> str:
    return dynamodb_client.meta.endpoint_url


@contextlib.contextmanager
def deliver_stream_before_list_reads(endpoint_url: str):
    """Transfer lists are fed from the transfers table's stream, a second behind in AWS. Here every list
    read first delivers what the stream holds, through the real projection handler, so a test reads
    the lists complete (`tools/localcloud/streams.py`; `make run` delivers from a thread instead)."""
    from chalicelib.storage.dynamo import DynamoLedgerStore
    from tools.localcloud.streams import transfer_stream_delivery

    delivery = transfer_stream_delivery(endpoint_url, REGION)
    patch = pytest.MonkeyPatch()
    for name in ("transfers_of_municipality", "transfers_of_mykey"):
        original = getattr(DynamoLedgerStore, name)

        def delivered_first(self, *arguments, _original=original, **keywords):
            delivery.deliver_pending()
            return _original(self, *arguments, **keywords)

        patch.setattr(DynamoLedgerStore, name, delivered_first)
    try:
        yield delivery
    finally:
        patch.undo()


@pytest.fixture
def dynamo_store(table_prefix):
    from chalicelib.storage.dynamo import DynamoLedgerStore

    return DynamoLedgerStore(REGION)


@pytest.fixture
def dynamo_staff_store(table_prefix):
    from chalicelib.storage.staff import DynamoStaffStore

    return DynamoStaffStore()


@pytest.fixture
def dynamo_world(dynamo_store, dynamo_staff_store):
    from tests.world import build_world

    return build_world(dynamo_store, seed=random.getrandbits(32), staff_store=dynamo_staff_store)


@pytest.fixture
def table_snapshot(dynamodb_client, table_prefix):
    """Every item of every table, to show that a refused request wrote nothing."""

    from chalicelib.storage.models import TTL_ATTRIBUTES

    # DynamoDB Local's TTL sweeper deletes expired items (challenges, nonces, sessions of earlier tests)
    # whenever it runs: an item may vanish between two snapshots without any request having touched it.
    # Items that expire within two minutes of the test's start are left out of every snapshot of the test,
    # the same ones each time; an item the test's own requests write expires later than that (every TTL
    # the platform sets is five minutes or more), so it is still seen.
    horizon = time.time() + 120

    def snapshot() -> dict[str, list]:
        result = {}
        for name in dynamodb_client.list_tables()["TableNames"]:
            if not name.startswith(table_prefix):
                continue
            base_name = name[len(table_prefix):]
            ttl_attribute = TTL_ATTRIBUTES.get(base_name)
            items = []
            paginator = dynamodb_client.get_paginator("scan")
            for page in paginator.paginate(TableName=name, ConsistentRead=True):
                items.extend(item for item in page["Items"]
                             if ttl_attribute is None or ttl_attribute not in item
                             or float(item[ttl_attribute]["N"]) > horizon)
            result[base_name] = sorted(items, key=repr)
        return result

    return snapshot


class HttpDriver:
    """Calls the Chalice app the way terminals and staff do: signed terminal requests, staff sessions."""

    def __init__(self, client, world):
        self.client = client
        self.world = world

    def terminal(self, keys, method: str, path: str, body=None, *, headers=None, sign_path: str | None = None,
                 timestamp: int | None = None, nonce: str | None = None):
        import json as json_module

        from terminal_client.signing import request_headers

        raw = body if isinstance(body, bytes) else (b"" if body is None else json_module.dumps(body).encode())
        signed = request_headers(keys.private_key, keys.terminal_id, method, sign_path or path, raw,
                                 timestamp=timestamp, nonce=nonce)
        signed.update(headers or {})
        return self.client.http.request(method, path, headers=signed, body=raw)

    def sign_in(self, role: str, code: str | None = None, counter_terminal_id: str | None = None) -> str:
        import json as json_module

        from tests.world import STAFF_PASSWORD

        code = code or self.world.home_code
        body = {"staff_id": f"{role}-{code}-{self.world.staff_suffix}", "password": STAFF_PASSWORD}
        if counter_terminal_id:
            body["counter_terminal_id"] = counter_terminal_id
        response = self.client.http.post(
            "/v1/staff/sessions", headers={"Content-Type": "application/json"}, body=json_module.dumps(body).encode(),
        )
        assert response.status_code == 201, response.body
        return response.json_body["token"]

    def card_response(self, card, purpose: str) -> dict:
        """Ask the platform for a challenge and sign it with the card, as the card does after its PIN."""
        import base64
        import json as json_module

        from chalicelib.services.identity import challenge_message

        issued = self.client.http.post("/v1/challenges", headers={"Content-Type": "application/json"},
                                       body=json_module.dumps({"purpose": purpose}).encode())
        assert issued.status_code == 201, issued.body
        challenge = issued.json_body
        message = challenge_message(purpose, challenge["challenge_id"], challenge["challenge"])
        assert message.decode() == challenge["message_to_sign"]
        return {"challenge_id": challenge["challenge_id"],
                "card": {"certificate": card.certificate_base64, "signature": base64.b64encode(card.sign(message)).decode()}}

    def post(self, path: str, body: dict, token: str | None = None):
        import json as json_module

        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.http.post(path, headers=headers, body=json_module.dumps(body).encode())

    def staff(self, token: str, method: str, path: str, body=None):
        import json as json_module

        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        raw = b"" if body is None else json_module.dumps(body).encode()
        return self.client.http.request(method, path, headers=headers, body=raw)


@pytest.fixture
def http(dynamo_world, dynamo_staff_store):
    import time

    from chalice.test import Client

    import app as application
    from chalicelib.api import dependencies
    from chalicelib.config import Settings

    dynamo_world.now = time.time()
    from chalicelib.storage.grants import DynamoGrantStore
    from chalicelib.storage.identity import DynamoIdentityStore
    from tests.fakes import FakeGrantBatchQueue
    from tests.world import HASH_SECRET

    dependencies.override(
        grant_batch_store=DynamoGrantStore(REGION),
        grant_batch_queue=FakeGrantBatchQueue(),
        ledger_store=dynamo_world.store,
        staff_store=dynamo_staff_store,
        identity_store=DynamoIdentityStore(REGION),
        card_authority=dynamo_world.authority,
        hash_secret=lambda: HASH_SECRET,
        clock=time.time,
        settings=Settings(
            table_prefix="unused", region=REGION, card_trust_store_path="", card_hash_secret_id="unused",
            staff_session_idle_seconds=900, terminal_clock_skew_seconds=300, card_signature_max_age_seconds=600,
        ),
    )
    with Client(application.app, stage_name="dev") as client:
        yield HttpDriver(client, dynamo_world)
    dependencies.reset()


@pytest.fixture(scope="session")
def moto_sqs():
    from tools.localcloud.processes import MotoServer

    with MotoServer(free_port()) as server:
        previous = os.environ.get("AWS_ENDPOINT_URL_SQS")
        os.environ["AWS_ENDPOINT_URL_SQS"] = server.endpoint_url
        yield server
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL_SQS", None)
        else:
            os.environ["AWS_ENDPOINT_URL_SQS"] = previous


@pytest.fixture(scope="session")
def sqs_client(moto_sqs):
    import boto3

    return boto3.client("sqs", endpoint_url=moto_sqs.endpoint_url, region_name=REGION,
                        aws_access_key_id="local", aws_secret_access_key="local")
