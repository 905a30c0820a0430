"""Fixtures shared by every test layer: DynamoDB Local for the session, tables, stores and worlds.

DynamoDB Local (Amazon's own engine) starts once per test process, in memory; each test module gets its
own table prefix, and each test its own random municipalities and residents, so tests never see each
other's data. Unit tests never touch it: they use the in-memory fakes.
"""
from __future__ import annotations

import os
import random
import uuid

import pytest

from tools.localcloud.processes import DynamoDBLocal, free_port, local_aws_environment

REGION = "ap-northeast-1"


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
    return prefix


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

    def snapshot() -> dict[str, list]:
        result = {}
        for name in dynamodb_client.list_tables()["TableNames"]:
            if not name.startswith(table_prefix):
                continue
            items = []
            paginator = dynamodb_client.get_paginator("scan")
            for page in paginator.paginate(TableName=name, ConsistentRead=True):
                items.extend(page["Items"])
            result[name[len(table_prefix):]] = sorted(items, key=repr)
        return result

    return snapshot
