"""`make run`: the whole local cloud in one command.

Starts DynamoDB Local (persisted under the data folder), moto's server as the SQS and Secrets Manager
endpoint, stores the card-hash secret in it, creates the tables and queues, seeds the demo municipality, starts `chalice local` on port 8000 and the SQS poller,
prints what to try next, and stops everything it started on Ctrl-C (or SIGTERM). Data persists between
runs; `make reset` deletes the data folder.

    python -m tools.localcloud [--data-dir .local] [--port 8000] [--dynamodb-port 8100] [--sqs-port 8200]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tools.localcloud.pcsc import READER_BY_PORT, PcscDaemon, VirtualCardProcess
from tools.localcloud.processes import (
    LOCAL_CARD_HASH_SECRET_ID,
    REPOSITORY_ROOT,
    DynamoDBLocal,
    LocalProcessError,
    MotoServer,
    local_aws_environment,
    stop_process,
)

TABLE_PREFIX = "points-dev-"
# How long a stop waits for each background thread: one SQS long poll (a second per queue at most, the
# round ending at the first queue after the stop) or one stream round, plus a handler that was running.
THREAD_STOP_SECONDS = 15


def _wait_for_health(url: str, process: subprocess.Popen, timeout_seconds: float = 60) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("chalice local が起動できませんでした。ログを確認してください。")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"chalice local が {timeout_seconds} 秒以内に応答しませんでした。")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Municipal Point Cloud: local cloud")
    parser.add_argument("--data-dir", default=str(REPOSITORY_ROOT / ".local"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dynamodb-port", type=int, default=8100)
    parser.add_argument("--sqs-port", type=int, default=8200)
    parser.add_argument("--card-port", type=int, default=35963, choices=[35963, 35964],
                        help="the vpcd reader slot the demo card goes into")
    arguments = parser.parse_args(argv)

    data_dir = Path(arguments.data_dir).resolve()
    logs_dir = data_dir / "logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    stop_requested = threading.Event()
    # Handled explicitly: a shell that starts `make run` in the background ignores SIGINT for its
    # children, and Python then never raises KeyboardInterrupt.
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: stop_requested.set())

    database = DynamoDBLocal(arguments.dynamodb_port, data_dir=str(data_dir / "dynamodb"), log_path=str(logs_dir / "dynamodb.log"))
    queues = MotoServer(arguments.sqs_port, log_path=str(logs_dir / "sqs.log"))
    chalice_process: subprocess.Popen | None = None
    poller_thread: threading.Thread | None = None
    stream_thread: threading.Thread | None = None
    pcscd = PcscDaemon(log_path=str(logs_dir / "pcscd.log"))
    card: VirtualCardProcess | None = None
    try:
        print("DynamoDB Local を起動しています…", flush=True)
        database.start()
        print("SQS と Secrets Manager のエンドポイント（moto）を起動しています…", flush=True)
        queues.start()

        from tools.demo_seed import ensure_secrets, seed

        trust_path, hash_secret = ensure_secrets(data_dir / "demo", queues.endpoint_url)
        environment = {
            **local_aws_environment(database.endpoint_url, queues.endpoint_url),
            "POINTS_TABLE_PREFIX": TABLE_PREFIX,
            "CARD_TRUST_STORE": str(trust_path),
            "CARD_HASH_SECRET_ID": LOCAL_CARD_HASH_SECRET_ID,
        }
        os.environ.update(environment)

        import boto3

        from chalicelib.api import dependencies
        from chalicelib.storage import projection
        from chalicelib.storage.schema import create_missing_indexes, create_tables, enable_streams

        create_tables(boto3.client("dynamodb"), TABLE_PREFIX)
        # A database kept from an earlier version: indexes added since then (a partner's refusals by day).
        create_missing_indexes(boto3.client("dynamodb"), TABLE_PREFIX)
        if enable_streams(boto3.client("dynamodb"), TABLE_PREFIX):
            # A database kept from before the transfer lists were stream-fed: list what it already holds.
            dependencies.get_ledger_store()
            projection.backfill()
        # What `python -m tools.onboard` needs to reach this local cloud while it runs.
        (data_dir / "localcloud.json").write_text(json.dumps({
            "dynamodb_endpoint_url": database.endpoint_url, "sqs_endpoint_url": queues.endpoint_url,
            "table_prefix": TABLE_PREFIX, "region": environment.get("AWS_DEFAULT_REGION", "ap-northeast-1"),
        }), encoding="utf-8")
        demo = seed(dependencies.get_ledger_store(), dependencies.get_staff_store(), dependencies.get_identity_store().audit,
                    data_dir / "demo", hash_secret, trust_path)

        import app as application
        from tools.demo_seed import DEMO_PARTNER_RESULT_QUEUE
        from tools.localcloud.queues import create_platform_queues
        from tools.localcloud.sqs_poller import SqsPoller
        from tools.localcloud.streams import transfer_stream_delivery

        sqs = boto3.client("sqs")
        create_platform_queues(sqs)
        sqs.create_queue(QueueName=DEMO_PARTNER_RESULT_QUEUE)
        poller = SqsPoller(application.app, sqs)
        poller_thread = threading.Thread(target=poller.run_forever, args=(stop_requested,), daemon=True)
        poller_thread.start()
        # The transfers table's stream to the transfer lists, as its event source mapping does in AWS.
        streams = transfer_stream_delivery(database.endpoint_url, environment.get("AWS_DEFAULT_REGION", "ap-northeast-1"))
        stream_thread = threading.Thread(target=streams.run_forever, args=(stop_requested,), daemon=True)
        stream_thread.start()

        print("chalice local を起動しています…", flush=True)
        chalice_log = open(logs_dir / "chalice.log", "ab")
        chalice_process = subprocess.Popen(
            [sys.executable, "-m", "tools.localcloud.chalice_local", "local", "--host", "127.0.0.1", "--port",
             str(arguments.port), "--stage", "dev", "--no-autoreload"],
            cwd=REPOSITORY_ROOT, env={**os.environ, **environment}, stdout=chalice_log, stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{arguments.port}"
        _wait_for_health(f"{base_url}/v1/health", chalice_process)
        reader_name = None
        if PcscDaemon.available():
            print("カードリーダー（pcscd と仮想マイナンバーカード）を準備しています…", flush=True)
            pcscd.start()
            card = VirtualCardProcess(data_dir / "demo" / "card.json", arguments.card_port, str(logs_dir / "card.log")).start()
            reader_name = READER_BY_PORT[arguments.card_port]
        _print_welcome(base_url, demo, data_dir, reader_name, queues.endpoint_url)
        while not stop_requested.is_set():
            if chalice_process.poll() is not None:
                print("chalice local が終了しました。ログ: " + str(logs_dir / "chalice.log"), flush=True)
                return 1
            stop_requested.wait(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    except LocalProcessError as error:
        # A service that would not start is explained in words, with where its log is; a traceback here
        # would be the newcomer's first screen.
        _say(f"起動できませんでした: {error}\nログ: {logs_dir}")
        return 1
    finally:
        stop_requested.set()
        _say("\n停止しています…")
        stop_process(chalice_process)
        if card is not None:
            card.stop()
        pcscd.stop()
        stop_background(poller_thread, queues, stream_thread, database)
        (data_dir / "localcloud.json").unlink(missing_ok=True)
        _say("すべて停止しました。")


def stop_background(poller_thread, queues, stream_thread, database, wait_seconds: float = THREAD_STOP_SECONDS) -> None:
    """Stop each endpoint only after the thread that calls it has ended (the stop event is already set).

    The SQS poller and the stream delivery are daemon threads that keep calling their endpoint until they
    see the stop: stopping moto or DynamoDB Local under a call in flight made it fail, and its traceback
    was the last thing `make run` printed. Each join is bounded, so a stuck handler cannot hold the stop.
    """
    for thread, name, endpoint in ((poller_thread, "SQS ポーラー", queues), (stream_thread, "ストリーム配信", database)):
        if thread is not None:
            thread.join(timeout=wait_seconds)
            if thread.is_alive():
                _say(f"{name}が {wait_seconds} 秒以内に止まりませんでした。そのまま停止します。")
        endpoint.stop()


def _say(text: str) -> None:
    # Stopping must finish even when whoever started us has gone and our output pipe with it.
    try:
        print(text, flush=True)
    except OSError:
        pass


def _print_welcome(base_url: str, demo: dict, data_dir: Path, reader_name: str | None, sqs_endpoint: str) -> None:
    staff = demo["staff"]
    demo_dir = data_dir / "demo"
    defaults = base_url == "http://127.0.0.1:8000" and data_dir == REPOSITORY_ROOT / ".local"
    terminal = ".venv/bin/python -m terminal_client" + (
        "" if defaults else f" --base-url {base_url} --config {demo_dir / 'terminal-shop.json'}")
    staff_tool = ".venv/bin/python -m tools.demo_staff" + ("" if defaults else f" --base-url {base_url} --data-dir {data_dir}")
    if reader_name:
        card_line = f" カードリーダー:  {reader_name}（仮想マイナンバーカードが置かれています）"
        tries = f"""
 別のターミナルで試してみましょう（カードは PC/SC で読み取ります）:
   {terminal} balance            # 残高照会
   {terminal} pay 500            # 500ポイントで支払い
   {terminal} pay 5000           # 暗証番号（1234）が必要な支払い
   {terminal} refund <取引ID> 200 # 一部返金
   {terminal} status             # 未確定の支払いを確定"""
    else:
        card_line = " カードリーダー:  なし（pcscd がありません。make run が apt で入れます）"
        tries = ""
    print(
        f"""
============================================================
 自治体ポイントクラウド（ローカル）の準備ができました
============================================================
 API:            {base_url}/v1/health
 デモ自治体:      長浜市 (252034)「ながはまポイント」
 デモ店舗:        黒壁スクエア商店（端末 {demo['terminals']['shop']['terminal_id']}）
 デモ施設:        長浜城歴史博物館（端末 {demo['terminals']['museum']['terminal_id']}）
 テストカード:    マイキーID {demo['mykey_id']}（暗証番号 1234）
{card_line}
 職員:            {staff['staff_id']} / パスワード {staff['password']}
 データ:          {data_dir}（make reset で削除）
{tries}
   {staff_tool} grant 1000   # 職員として付与
   {staff_tool} report       # 自治体の集計
   AWS_ENDPOINT_URL_SQS={sqs_endpoint} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \\
     .venv/bin/python examples/send_conversion.py \\
       --partner-file {demo_dir / 'partner-demo-airline.json'} --mykey-id {demo['mykey_id']} --partner-points 1000 --municipality 252034
                              # 提携先（デモ航空）からのポイント交換（SQS）

 Ctrl-C ですべて停止します。
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
