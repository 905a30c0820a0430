"""Tests for the local-cloud child processes: DynamoDB Local, moto's server and their shared life cycle.

The DynamoDB Local and moto tests start the real services (about two seconds
each for the JVM); the life-cycle tests use tiny Python scripts as stand-in
services so that failure paths run in well under a second.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from tools.localcloud.processes import (
    ChildProcess,
    DynamoDBLocal,
    LocalProcessError,
    MotoServer,
    find_dynamodb_local_directory,
    free_port,
    local_aws_environment,
    local_client,
    store_local_secret,
)


def process_exists(pid: int) -> bool:
    """Return True if a process with this id exists (stopped children are reaped, so they do not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def port_accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class ScriptProcess(ChildProcess):
    """A stand-in service: a Python one-liner that is 'ready' once it prints a marker."""

    display_name = "script process"

    def __init__(self, script: str, **keyword_arguments: object) -> None:
        super().__init__(free_port(), **keyword_arguments)  # type: ignore[arg-type]
        self.script = script

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]

    def is_ready(self) -> bool:
        return "ready" in self.read_log_tail()


PRINT_READY_THEN_SLEEP = "import time; print('ready', flush=True); time.sleep(60)"


# free_port and local_aws_environment


def test_free_port__returns_a_port_that_can_be_bound():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_local_aws_environment__returns_endpoints_region_and_dummy_credentials():
    environment = local_aws_environment("http://127.0.0.1:8000", "http://127.0.0.1:5000")

    assert environment == {
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000",
        "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://127.0.0.1:5000",
        "AWS_DEFAULT_REGION": "ap-northeast-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def test_local_aws_environment__is_honoured_by_boto3_without_endpoint_arguments(monkeypatch):
    for name, value in local_aws_environment("http://127.0.0.1:8000", "http://127.0.0.1:5000").items():
        monkeypatch.setenv(name, value)

    session = boto3.session.Session()

    assert session.client("dynamodb").meta.endpoint_url == "http://127.0.0.1:8000"
    assert session.client("sqs").meta.endpoint_url == "http://127.0.0.1:5000"
    assert session.client("sqs").meta.region_name == "ap-northeast-1"
    assert session.client("secretsmanager").meta.endpoint_url == "http://127.0.0.1:5000"


# DynamoDB Local


def test_dynamodb_local__command__is_the_pinned_jvm_invocation_with_in_memory_store():
    port = free_port()
    library_directory = find_dynamodb_local_directory()

    command = DynamoDBLocal(port).command()

    assert Path(command[0]).name == "java"
    assert command[1:] == [
        f"-Djava.library.path={library_directory}/DynamoDBLocal_lib",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-jar",
        f"{library_directory}/DynamoDBLocal.jar",
        "-sharedDb",
        "-disableTelemetry",
        "-port",
        str(port),
        "-inMemory",
    ]


def test_dynamodb_local__command_with_data_dir__persists_to_that_directory(tmp_path):
    command = DynamoDBLocal(free_port(), data_dir=str(tmp_path)).command()

    assert command[-2:] == ["-dbPath", str(tmp_path)]
    assert "-inMemory" not in command


def test_find_dynamodb_local_directory__without_npm_install__tells_you_to_run_npm_ci(tmp_path):
    with pytest.raises(LocalProcessError, match="npm ci"):
        find_dynamodb_local_directory(repository_root=tmp_path)


def test_dynamodb_local__in_memory__serves_pynamodb_through_environment_and_stops_cleanly(monkeypatch, tmp_path):
    database = DynamoDBLocal(free_port(), log_path=str(tmp_path / "dynamodb.log"))
    with database:
        pid = database.pid
        assert process_exists(pid)
        # The app's models carry no host setting; the environment variables
        # alone must route PynamoDB to DynamoDB Local.
        for name, value in local_aws_environment(database.endpoint_url, "http://127.0.0.1:1").items():
            monkeypatch.setenv(name, value)

        class Parcel(Model):
            class Meta:
                table_name = f"parcels-{uuid.uuid4().hex}"

            parcel_id = UnicodeAttribute(hash_key=True)
            ward = UnicodeAttribute()

        Parcel.create_table(read_capacity_units=1, write_capacity_units=1, wait=True)
        Parcel(parcel_id="p-1", ward="Chuo").save()

        assert Parcel.get("p-1").ward == "Chuo"
        assert Parcel.Meta.table_name in local_client("dynamodb", database.endpoint_url).list_tables()["TableNames"]

    assert database.returncode is not None
    assert not process_exists(pid)
    assert not port_accepts_connections(database.port)
    assert "Port:" in (tmp_path / "dynamodb.log").read_text()


def test_dynamodb_local__persisted_data_dir__keeps_tables_across_restart(tmp_path):
    data_directory = tmp_path / "not-yet-created" / "dynamodb"
    port = free_port()

    with DynamoDBLocal(port, data_dir=str(data_directory)) as first_run:
        client = local_client("dynamodb", first_run.endpoint_url)
        client.create_table(
            TableName="parcels",
            KeySchema=[{"AttributeName": "parcel_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "parcel_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.put_item(TableName="parcels", Item={"parcel_id": {"S": "p-1"}})

    assert any(data_directory.iterdir())

    with DynamoDBLocal(port, data_dir=str(data_directory)) as second_run:
        client = local_client("dynamodb", second_run.endpoint_url)
        assert client.list_tables()["TableNames"] == ["parcels"]
        assert client.get_item(TableName="parcels", Key={"parcel_id": {"S": "p-1"}})["Item"] == {
            "parcel_id": {"S": "p-1"}
        }


def test_dynamodb_local__port_already_in_use__refuses_to_start_without_launching():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        database = DynamoDBLocal(squatter.getsockname()[1])

        with pytest.raises(LocalProcessError, match="already in use"):
            database.start()

    assert database.pid is None


# moto server


def test_moto_server__serves_sqs_and_stops_cleanly():
    server = MotoServer(free_port())
    with server:
        pid = server.pid
        sqs = local_client("sqs", server.endpoint_url)
        queue_url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody="hello")

        assert sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"] == "hello"

        server.reset()
        assert sqs.list_queues().get("QueueUrls", []) == []

    assert not process_exists(pid)
    assert not port_accepts_connections(server.port)


def test_store_local_secret__creates_the_secret_then_replaces_its_value():
    with MotoServer(free_port()) as server:
        secrets = local_client("secretsmanager", server.endpoint_url)

        store_local_secret(server.endpoint_url, "municipal-point-cloud/card-hash-secret", "first")
        assert secrets.get_secret_value(SecretId="municipal-point-cloud/card-hash-secret")["SecretString"] == "first"

        store_local_secret(server.endpoint_url, "municipal-point-cloud/card-hash-secret", "second")
        assert secrets.get_secret_value(SecretId="municipal-point-cloud/card-hash-secret")["SecretString"] == "second"


# Shared life cycle, exercised with stand-in scripts


def test_child_process__exits_during_start_up__error_quotes_its_output():
    process = ScriptProcess("import sys; sys.stderr.write('simulated start-up failure\\n'); sys.exit(3)")

    with pytest.raises(LocalProcessError) as raised:
        process.start()

    assert "exited with code 3" in str(raised.value)
    assert "simulated start-up failure" in str(raised.value)
    assert not process.is_running


def test_child_process__never_ready__times_out_and_is_stopped():
    process = ScriptProcess("import time; time.sleep(60)", ready_timeout_seconds=0.5)

    with pytest.raises(LocalProcessError, match="did not answer"):
        process.start()

    assert process.returncode == -signal.SIGTERM
    assert not process_exists(process.pid)


def test_child_process__ignoring_sigterm__is_killed_after_stop_timeout():
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    process = ScriptProcess(script, stop_timeout_seconds=0.5)
    process.start()

    process.stop()

    assert process.returncode == -signal.SIGKILL
    assert not process_exists(process.pid)


def test_child_process__context_manager__stops_process_when_body_raises():
    process = ScriptProcess(PRINT_READY_THEN_SLEEP)

    with pytest.raises(ZeroDivisionError):
        with process:
            assert process.is_running
            1 / 0

    assert not process.is_running
    assert not process_exists(process.pid)


def test_child_process__default_log__is_a_temporary_file_removed_on_stop():
    process = ScriptProcess(PRINT_READY_THEN_SLEEP)
    with process:
        log_path = Path(process.log_path)
        assert "ready" in log_path.read_text()

    assert not log_path.exists()


def test_child_process__given_log_path__receives_output_and_is_kept(tmp_path):
    log_path = tmp_path / "logs" / "service.log"

    with ScriptProcess(PRINT_READY_THEN_SLEEP, log_path=str(log_path)):
        pass

    assert log_path.read_text() == "ready\n"


def test_child_process__stop_twice_and_stop_before_start__are_harmless():
    never_started = ScriptProcess(PRINT_READY_THEN_SLEEP)
    never_started.stop()

    process = ScriptProcess(PRINT_READY_THEN_SLEEP)
    process.start()
    process.stop()
    process.stop()

    assert never_started.pid is None
    assert process.returncode == -signal.SIGTERM
