"""The local services the benchmark runs against, started and stopped by the benchmark itself.

DynamoDB Local in memory (Amazon's engine, as the integration tests use it) and moto's server for SQS
and Secrets Manager, each on a free port, with the environment pointed at them the way the local cloud
does it. The app is configured through its environment only (table prefix, card trust store, the name of
the card-hash secret, whose value it reads from Secrets Manager), so the stores and the card authority
the benchmark measures are built by `chalicelib.api.dependencies` exactly as a Lambda container builds
them, caches included. moto's server always runs: without SQS it still serves the card-hash secret.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tools.localcloud.processes import (
    LOCAL_CARD_HASH_SECRET_ID,
    DynamoDBLocal,
    MotoServer,
    free_port,
    local_aws_environment,
    store_local_secret,
)

REGION = "ap-northeast-1"
TABLE_PREFIX = "bench-"


class LocalStack:
    def __init__(self, with_sqs: bool = True):
        self.with_sqs = with_sqs
        self.database: DynamoDBLocal | None = None
        self.queues: MotoServer | None = None
        self._previous_environment: dict[str, str | None] = {}
        self._scratch = tempfile.TemporaryDirectory(prefix="bench-")

    @property
    def scratch(self) -> Path:
        return Path(self._scratch.name)

    def start(self) -> "LocalStack":
        from tests.world import HASH_SECRET, shared_ca

        self.database = DynamoDBLocal(free_port())
        self.database.start()
        self.queues = MotoServer(free_port())
        self.queues.start()
        store_local_secret(self.queues.endpoint_url, LOCAL_CARD_HASH_SECRET_ID, HASH_SECRET.decode())
        trust_store = self.scratch / "trust-store.pem"
        trust_store.write_bytes(shared_ca().certificate_pem)
        # The test CA with its key, for child processes (bench.contention) to issue cards the app trusts.
        authority_file = self.scratch / "dev-ca.pem"
        authority_file.write_bytes(shared_ca().to_pem())
        environment = local_aws_environment(self.database.endpoint_url, self.queues.endpoint_url)
        if not self.with_sqs:
            environment["AWS_ENDPOINT_URL_SQS"] = "http://127.0.0.1:9"
        environment.update({
            "POINTS_TABLE_PREFIX": TABLE_PREFIX,
            "CARD_TRUST_STORE": str(trust_store),
            "CARD_HASH_SECRET_ID": LOCAL_CARD_HASH_SECRET_ID,
            "BENCH_DEV_CA_PEM": str(authority_file),
        })
        for key, value in environment.items():
            self._previous_environment.setdefault(key, os.environ.get(key))
            os.environ[key] = value

        from chalicelib.api import dependencies
        from chalicelib.config import reset_secrets, reset_settings
        from chalicelib.storage.schema import create_tables

        reset_settings()
        reset_secrets()
        dependencies.reset()
        create_tables(self.dynamodb_client(), TABLE_PREFIX)
        dependencies.get_ledger_store()  # binds every model to the benchmark's tables
        return self

    def stop(self) -> None:
        from chalicelib.api import dependencies

        dependencies.reset()
        if self.queues is not None:
            self.queues.stop()
        if self.database is not None:
            self.database.stop()
        for key, value in self._previous_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._scratch.cleanup()

    def __enter__(self) -> "LocalStack":
        return self.start()

    def __exit__(self, *_) -> None:
        self.stop()

    def dynamodb_client(self, **config):
        """A plain boto3 client (no PynamoDB), configured as PynamoDB configures its own."""
        import boto3
        import botocore.config

        settings = {"parameter_validation": False, "max_pool_connections": 10, **config}
        return boto3.session.Session().client("dynamodb", endpoint_url=self.database.endpoint_url, region_name=REGION,
                                              config=botocore.config.Config(**settings))

    def sqs_client(self):
        import boto3

        return boto3.session.Session().client("sqs", endpoint_url=self.queues.endpoint_url, region_name=REGION,
                                              aws_access_key_id="local", aws_secret_access_key="local")


def use_parent_test_ca() -> None:
    """In a child process of the bench: issue cards with the parent's test CA (the one the trust store holds)."""
    import tests.world
    from tools.devpki import DevCertificateAuthority

    path = os.environ.get("BENCH_DEV_CA_PEM")
    if path:
        authority = DevCertificateAuthority.from_pem(Path(path).read_bytes())
        tests.world.shared_ca = lambda: authority
