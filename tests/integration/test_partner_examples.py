"""The partner examples run as a partner runs them, knowing only the documents: `examples/send_conversion.py`
against the SQS endpoint (moto server) with the conversion handler polled as Lambda would, and
`examples/reconcile_day.py` through `examples/partner_api.py` against the Chalice app in-process."""
from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import hashlib
import json
import sys
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.test_conversions import JST, Partner, conversion_queues, partner  # noqa: F401
from tools.localcloud.processes import REPOSITORY_ROOT

# The examples are scripts, not a package: they import each other from their own folder, as when run.
sys.path.insert(0, str(REPOSITORY_ROOT / "examples"))
import partner_api  # noqa: E402
import reconcile_day  # noqa: E402
import send_conversion  # noqa: E402

pytestmark = pytest.mark.integration
# Production base URLs carry the stage (`…/v/`); the signed path starts at /v1 without it.
BASE_URL = "https://partner-api.example.test/v/"


def _partner_file(path, partner: Partner, **extra) -> str:
    private = partner.key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
    path.write_text(json.dumps({"partner_id": partner.partner_id, "private_key": base64.b64encode(private).decode(),
                                "result_queue": partner.result_queue, **extra}), encoding="utf-8")
    return str(path)


def _poll_until(poller, stop: threading.Event) -> None:
    while not stop.is_set():
        if poller.poll_once() == 0:
            stop.wait(0.05)


def test_two_senders_on_one_result_queue__each_gets_its_own_result_and_others_stay_queued(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    # One partner file names the result queue, the other gives its URL (as production partners get it).
    by_name = _partner_file(tmp_path / "by-name.json", partner)
    by_url = _partner_file(tmp_path / "by-url.json", partner, result_queue_url=partner.result_url)
    someone_else = {"partner_txn_id": "someone-else", "status": "credited", "reason": None,
                    "municipality_code": world.home_code, "points": 7}
    partner.sqs.send_message(QueueUrl=partner.result_url, MessageBody=json.dumps(someone_else))

    def send(partner_file: str, txn_id: str, *extra: str) -> int:
        return send_conversion.main(["--partner-file", partner_file, "--mykey-id", mykey, "--partner-points", "1000",
                                     "--municipality", world.home_code, "--txn-id", txn_id, "--wait-seconds", "20", *extra])

    stop = threading.Event()
    consumer = threading.Thread(target=_poll_until, args=(partner.poller, stop))
    consumer.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(send, by_name, "sender-a")
            second = pool.submit(send, by_url, "sender-b", "--conversion-queue-url", partner.queue_url)
            codes = [first.result(timeout=60), second.result(timeout=60)]
    finally:
        stop.set()
        consumer.join()

    assert codes == [0, 0]
    # The app's own log lines share stdout here: keep the result lines the senders print.
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"partner_txn_id"')]
    assert sorted((r["partner_txn_id"], r["status"], r["points"]) for r in printed) == [
        ("sender-a", "credited", 500), ("sender-b", "credited", 500)]
    assert partner.results() == [someone_else]
    assert world.store.get_wallet(mykey, world.home_code).balance == 1000


def _send_while_consuming(partner, arguments: list[str]) -> int:
    stop = threading.Event()
    consumer = threading.Thread(target=_poll_until, args=(partner.poller, stop))
    consumer.start()
    try:
        return send_conversion.main([*arguments, "--wait-seconds", "20"])
    finally:
        stop.set()
        consumer.join()


def test_send_conversion__run_again_with_the_same_txn_id__resends_the_kept_bytes_not_a_conflict(partner, tmp_path):
    world = partner.http.world
    mykey = world.add_card()
    partner_file = _partner_file(tmp_path / "partner.json", partner)
    first = ["--partner-file", partner_file, "--mykey-id", mykey, "--municipality", world.home_code, "--txn-id", "again-1"]
    assert _send_while_consuming(partner, [*first, "--partner-points", "1000"]) == 0
    # The second run's arguments differ (and its occurred_at would): the kept message is what is sent.
    assert _send_while_consuming(partner, [*first, "--partner-points", "3000"]) == 0
    assert world.store.get_wallet(mykey, world.home_code).balance == 500
    kept = (tmp_path / f"{partner.partner_id}-outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["partner_txn_id"] for line in kept] == ["again-1"]


def test_send_conversion__another_message_decided_under_the_id__exit_3_conflict(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 200, municipality_code=world.home_code, txn="taken-1"))
    partner.drain()
    partner.results()
    code = _send_while_consuming(partner, ["--partner-file", _partner_file(tmp_path / "partner.json", partner),
                                           "--mykey-id", mykey, "--partner-points", "1000", "--txn-id", "taken-1"])
    assert code == 3 and "partner_txn_conflict" in capsys.readouterr().err
    assert world.store.get_wallet(mykey, world.home_code).balance == 100


class StubInquiries:
    """The read API as the documents describe it, over a transport: checks each request's signature and
    answers the day listing in pages and id inquiries from `decided`."""

    def __init__(self, partner_id: str, public_key, listing_pages: list[list[dict]], decided: dict[str, dict]):
        self.partner_id, self.public_key = partner_id, public_key
        self.listing_pages, self.decided = listing_pages, decided
        self.requests: list[dict] = []

    def __call__(self, method: str, url: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        assert url.startswith(BASE_URL.rstrip("/"))
        path = url[len(BASE_URL.rstrip("/")):]
        signed = (f"POINTS-PARTNER-V1\n{method}\n{path}\n{headers['X-Timestamp']}\n{headers['X-Nonce']}\n"
                  f"{hashlib.sha256(body).hexdigest()}").encode()
        self.public_key.verify(base64.b64decode(headers["X-Signature"]), signed)  # raises if it does not verify
        assert (path, headers["X-Partner-Id"], len(headers["X-Nonce"])) == ("/v1/partner/conversion-inquiries", self.partner_id, 32)
        request = json.loads(body)
        self.requests.append(request)
        if "date" in request:
            page = int(request["cursor"] or 0)
            cursor = str(page + 1) if page + 1 < len(self.listing_pages) else None
            answer = {"partner_id": self.partner_id, "date": request["date"], "conversions": self.listing_pages[page], "cursor": cursor}
        else:
            unknown = {"status": "unknown", "reason": None, "municipality_code": None, "points": 0, "partner_points": None,
                       "campaign_code": None, "decided_at": None}
            answer = {"partner_id": self.partner_id, "date": None, "cursor": None, "conversions": [
                self.decided.get(txn_id, {**unknown, "partner_txn_id": txn_id}) for txn_id in request["partner_txn_ids"]]}
        return 200, json.dumps(answer).encode()


def _credit(txn_id: str, partner_points: int, decided_at: str = "2026-12-01T01:00:00.000Z") -> dict:
    return {"partner_txn_id": txn_id, "status": "credited", "reason": None, "municipality_code": "252034",
            "points": partner_points // 2, "partner_points": partner_points, "campaign_code": None, "decided_at": decided_at}


def _write_sent(path, sent: dict[str, int]) -> str:
    path.write_text("".join(json.dumps({"partner_txn_id": txn_id, "partner_points": points, "mykey_id": "ABCD2345"}) + "\n"
                            for txn_id, points in sent.items()), encoding="utf-8")
    return str(path)


def test_reconcile_day__follows_the_cursor_then_asks_a_hundred_ids_at_a_time(tmp_path, capsys):
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    partner_file = tmp_path / "partner.json"
    partner_file.write_text(json.dumps({"partner_id": "stub-air", "private_key": base64.b64encode(private).decode()}))
    listed = {f"day-{index}": 100 for index in range(5)}
    elsewhere = {f"late-{index}": 200 for index in range(250)}
    stub = StubInquiries("stub-air", key.public_key(),
                         listing_pages=[[_credit(t, p) for t, p in list(listed.items())[:3]],
                                        [_credit(t, p) for t, p in list(listed.items())[3:]]],
                         decided={t: _credit(t, p, "2026-11-30T14:59:59.999Z") for t, p in elsewhere.items()})
    sent = _write_sent(tmp_path / "sent.jsonl", {**listed, **elsewhere})

    code = reconcile_day.main(["--partner-file", str(partner_file), "--base-url", BASE_URL, "--date", "2026-12-01",
                               "--sent", sent], transport=stub)

    assert code == 0, capsys.readouterr()
    assert [r.get("cursor", "ids") for r in stub.requests] == [None, "1", "ids", "ids", "ids"]
    assert [len(r["partner_txn_ids"]) for r in stub.requests[2:]] == [100, 100, 50]
    assert sorted(t for r in stub.requests[2:] for t in r["partner_txn_ids"]) == sorted(elsewhere)
    assert "一致 / matched: 255" in capsys.readouterr().out


def test_partner_api__signs_the_example_of_the_partner_guide_byte_for_byte():
    # docs/PARTNERS.md §15: the RFC 8032 test key, a fixed timestamp and nonce, the first page of a day.
    bodies = []

    def answer(method, url, headers, body):
        bodies.append(body)
        return 200, b'{"partner_id": "jal", "date": "2026-12-01", "conversions": [], "cursor": null}'

    api = partner_api.PartnerApi(BASE_URL, "jal", "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=", transport=answer)
    assert api.day_conversions("2026-12-01") == []
    assert bodies == [b'{"date":"2026-12-01","cursor":null}']
    headers = api.headers("POST", "/v1/partner/conversion-inquiries", bodies[0], timestamp=1795948800,
                          nonce="0123456789abcdef0123456789abcdef")
    assert headers["X-Signature"] == ("fBqL6dpcEY7d2eu62foh6Zy0V/8Xsqn6zt+Qf4uIzE/ApPtcjbqgOIBAYSQzY9nOJumzHv3vmJA4V9GJmV2xBA==")
    assert (headers["X-Partner-Id"], headers["X-Timestamp"]) == ("jal", "1795948800")


def test_partner_api__error_answer__raises_with_its_code_and_message():
    def refuse(method, url, headers, body):
        return 401, json.dumps({"error": {"code": "partner_authentication_failed", "message": "認証できません。",
                                          "request_id": "r-1"}}).encode()

    api = partner_api.PartnerApi(BASE_URL, "stub-air", base64.b64encode(b"\1" * 32).decode(), transport=refuse)
    with pytest.raises(partner_api.PartnerApiError) as refused:
        api.conversion_inquiries(date="2026-12-01")
    assert (refused.value.status, refused.value.code, refused.value.message) == (401, "partner_authentication_failed", "認証できません。")
    assert "partner_authentication_failed" in str(refused.value) and "認証できません。" in str(refused.value)


# --- against the application ---------------------------------------------------------------------------------------

def _app_transport(http):
    """Routes partner_api's requests to the Chalice app in-process, as API Gateway would (stage removed)."""

    def send(method: str, url: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        assert url.startswith(BASE_URL.rstrip("/"))
        response = http.client.http.request(method, url[len(BASE_URL.rstrip("/")):], headers=headers, body=body)
        return response.status_code, response.body

    return send


def _today() -> str:
    return dt.datetime.now(JST).date().isoformat()


def _reconcile(partner, tmp_path, sent: dict[str, int], date: str | None = None, private_key: bytes | None = None):
    replaced = {"private_key": base64.b64encode(private_key).decode()} if private_key else {}
    partner_file = _partner_file(tmp_path / "partner.json", partner, **replaced)
    return reconcile_day.main(["--partner-file", partner_file, "--base-url", BASE_URL, "--date", date or _today(),
                               "--sent", _write_sent(tmp_path / "sent.jsonl", sent)], transport=_app_transport(partner.http))


def test_reconcile_day__every_sent_conversion_credited_as_sent__exit_0(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="t-1"))
    partner.send(partner.message(mykey, 400, txn="t-2"))  # to the reserve account
    partner.drain()

    code = _reconcile(partner, tmp_path, {"t-1": 1000, "t-2": 400})

    out = capsys.readouterr().out
    assert code == 0, out
    assert "一致 / matched: 2" in out and "拒否 / rejected: 0" in out and "未着 / missing: 0" in out
    assert "相違 / differing: 0" in out and "すべて一致 / all matched" in out
    assert f"t-1: 1,000 → 500 pt ({world.home_code}," in out and "t-2: 400 → 200 pt (留保口座 / reserve," in out


def test_reconcile_day__rejected_missing_and_differing__each_reported_exit_1(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="t-matched"))
    partner.send(partner.message("ZZZZ2345", 1000, txn="t-rejected"))
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="t-other-points"))
    partner.send(partner.message(mykey, 300, municipality_code=world.home_code, txn="t-not-in-file"))
    partner.drain()

    code = _reconcile(partner, tmp_path, {"t-matched": 1000, "t-rejected": 1000, "t-other-points": 2000, "t-missing": 500})

    out = capsys.readouterr().out
    assert code == 1, out
    assert "一致 / matched: 1\n  t-matched: 1,000 → 500 pt" in out
    assert "拒否 / rejected: 1\n  t-rejected: unknown_mykey_id\n" in out
    assert "未着 / missing: 1" in out and "同じ取引IDで再送してください" in out and "\n  t-missing: 500\n" in out
    assert "相違 / differing: 2\n" in out
    assert "  t-other-points: 送信記録 / sent 2,000、交換 / credited 1,000 → 500 pt" in out
    assert "  t-not-in-file: 送信記録にない交換 / credited but not in the sent file: 300 → 150 pt" in out
    assert "確認が必要です / needs attention" in out


def test_reconcile_day__conversions_decided_on_another_day__found_by_id(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="t-today"))
    partner.drain()
    yesterday = (dt.datetime.now(JST).date() - dt.timedelta(days=1)).isoformat()

    code = _reconcile(partner, tmp_path, {"t-today": 1000}, date=yesterday)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "一致 / matched: 1\n  t-today: 1,000 → 500 pt" in out


def test_reconcile_day__a_key_the_platform_does_not_know__exit_2_with_the_error_code(partner, tmp_path, capsys):
    code = _reconcile(partner, tmp_path, {"t-1": 1000}, private_key=b"\7" * 32)

    captured = capsys.readouterr()
    assert code == 2 and "matched" not in captured.out  # no report (the app's own log lines share stdout here)
    assert "HTTP 401 partner_authentication_failed" in captured.err


def test_reconcile_day__a_sent_id_holding_an_individual_number__reported_rejected_not_an_error(partner, tmp_path, capsys):
    world = partner.http.world
    mykey = world.add_card()
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="t-ok"))
    partner.send(partner.message(mykey, 1000, municipality_code=world.home_code, txn="order 123456789018"))
    partner.drain()

    code = _reconcile(partner, tmp_path, {"order 123456789018": 1000, "t-ok": 1000})

    out = capsys.readouterr().out
    assert code == 1, out
    assert "一致 / matched: 1\n  t-ok: 1,000 → 500 pt" in out
    # The day lists the refusal without its id, and the id asked about is answered by the API's own refusal:
    # one refusal, counted once.
    assert "拒否 / rejected: 1\n" in out
    assert "invalid partner_txn_id" not in out
    assert "  order 123456789018: individual_number_forbidden（取引IDそのものが受け付けられません / the id itself is refused）" in out
