"""Single grants with two-person approval, and bulk uploads, on the in-memory stores."""
import dataclasses
import uuid

import pytest

from chalicelib import errors
from chalicelib.services import grant_requests, ledger, programme
from tests.fakes import FakeGrantBatchQueue, FakeGrantStore, FakeLedgerStore
from tests.world import build_world

HEADER = "申請番号,マイキーID,ポイント,付与理由\r\n"


@pytest.fixture
def world():
    world = build_world(FakeLedgerStore(), seed=11)
    programme.change_settings(world.store, world.home_code, {"approval_threshold": 10_000})
    world.grants, world.queue = FakeGrantStore(), FakeGrantBatchQueue()
    return world


def _command(world, mykey, amount, staff_id="operator-a", grant_id=None):
    return ledger.GrantCommand(
        grant_id=grant_id or str(uuid.uuid4()), municipality_code=world.home_code, mykey_id=mykey, amount=amount,
        reason="出産祝い", expires_on=None, staff_id=staff_id, request_fingerprint=f"fp-{mykey}-{amount}",
    )


def _upload(world, text: str, staff_id="operator-a", encoding="utf-8"):
    command = grant_requests.UploadCommand(world.home_code, "grants.csv", text.encode(encoding), staff_id)
    return grant_requests.upload(command, world.store, world.grants, world.queue, world.clock)


def _drain(world):
    while world.queue.messages:
        code, batch_id, number = world.queue.messages.pop(0)
        grant_requests.post_chunk(world.store, world.grants, code, batch_id, number, world.clock)


def test_grant__at_or_below_threshold__is_posted_at_once(world):
    mykey = world.add_card()
    outcome = grant_requests.request_grant(_command(world, mykey, 10_000), world.store, world.grants, world.clock)
    assert outcome.approval is None and outcome.transfer.amount == 10_000
    assert world.store.get_wallet(mykey, world.home_code).balance == 10_000


def test_grant__above_threshold__waits_for_a_second_person_then_posts_once(world):
    mykey = world.add_card()
    command = _command(world, mykey, 10_001)
    outcome = grant_requests.request_grant(command, world.store, world.grants, world.clock)
    assert outcome.transfer is None and outcome.approval["state"] == "pending"
    assert world.store.get_wallet(mykey, world.home_code).balance == 0

    with pytest.raises(errors.SelfApprovalForbidden):
        grant_requests.approve(world.store, world.grants, world.queue, world.home_code, command.grant_id, "operator-a", world.clock)
    assert world.store.get_wallet(mykey, world.home_code).balance == 0

    first = grant_requests.approve(world.store, world.grants, world.queue, world.home_code, command.grant_id, "approver-b", world.clock)
    again = grant_requests.approve(world.store, world.grants, world.queue, world.home_code, command.grant_id, "approver-b", world.clock)
    assert first["grant"] == again["grant"] and first["grant"].staff_id == "operator-a"
    with pytest.raises(errors.ApprovalAlreadyDecided):
        grant_requests.approve(world.store, world.grants, world.queue, world.home_code, command.grant_id, "approver-c", world.clock)
    # The requester's retry of the same request now gets the posted grant.
    retried = grant_requests.request_grant(command, world.store, world.grants, world.clock)
    assert retried.transfer == first["grant"]
    assert world.store.get_wallet(mykey, world.home_code).balance == 10_001


def test_grant__pending_id_reused_for_another_request__is_a_conflict(world):
    mykey = world.add_card()
    command = _command(world, mykey, 20_000)
    grant_requests.request_grant(command, world.store, world.grants, world.clock)
    with pytest.raises(errors.TransferIdConflict):
        grant_requests.request_grant(dataclasses.replace(command, amount=30_000, request_fingerprint="other"),
                                     world.store, world.grants, world.clock)


def test_grant__rejected__is_never_posted(world):
    mykey = world.add_card()
    command = _command(world, mykey, 20_000)
    grant_requests.request_grant(command, world.store, world.grants, world.clock)
    rejected = grant_requests.reject(world.grants, world.home_code, command.grant_id, "approver-b", "金額の誤り", world.clock)
    assert rejected["state"] == "rejected"
    with pytest.raises(errors.ApprovalAlreadyDecided):
        grant_requests.approve(world.store, world.grants, world.queue, world.home_code, command.grant_id, "approver-b", world.clock)
    assert world.store.get_transfer(command.grant_id) is None


def test_upload__valid_file__is_posted_chunk_by_chunk_and_completes(world):
    residents = [world.add_card() for _ in range(5)]
    rows = [f"A-{n:04d},{residents[n % 5]},10,健康ポイント\r\n" for n in range(grant_requests.CHUNK_ROWS * 2 + 7)]
    batch, created = _upload(world, HEADER + "".join(rows))
    assert created and batch["status"] == "queued" and batch["chunk_count"] == 3 and len(world.queue.messages) == 3
    _drain(world)
    batch = world.grants.get_batch(world.home_code, batch["batch_id"])
    assert batch["status"] == "completed" and batch["posted_rows"] == len(rows) and batch["posted_amount"] == 10 * len(rows)
    assert grant_requests.progress(batch) == {"processed_rows": len(rows), "percent": 100}
    assert sum(world.store.get_wallet(m, world.home_code).balance for m in residents) == 10 * len(rows)


def test_upload__same_file_again__returns_the_first_batch_and_posts_nothing_more(world):
    mykey = world.add_card()
    text = HEADER + f"B-1,{mykey},100,転入\r\n"
    first, _ = _upload(world, text)
    _drain(world)
    again, created = _upload(world, text)
    assert not created and again["batch_id"] == first["batch_id"] and world.queue.messages == []
    assert world.store.get_wallet(mykey, world.home_code).balance == 100


def test_upload__corrected_file__grants_only_the_rows_not_granted_before(world):
    known, other = world.add_card(), world.add_card()
    first, _ = _upload(world, HEADER + f"C-1,{known},100,転入\r\nC-2,ZZZZ2345,100,転入\r\n")
    _drain(world)
    first = world.grants.get_batch(world.home_code, first["batch_id"])
    assert (first["posted_rows"], first["failed_rows"]) == (1, 1)
    report = grant_requests.report_rows(world.grants, first)
    assert [(line["row"], line["code"]) for line in report] == [(2, ""), (3, "mykey_id_unknown")]

    world.now += 60  # the corrected file is queued later than the first grant was posted
    second, created = _upload(world, HEADER + f"C-1,{known},100,転入\r\nC-2,{other},100,転入\r\n")
    _drain(world)
    second = world.grants.get_batch(world.home_code, second["batch_id"])
    assert created and (second["posted_rows"], second["already_posted_rows"], second["failed_rows"]) == (1, 1, 0)
    assert world.store.get_wallet(known, world.home_code).balance == 100
    assert world.store.get_wallet(other, world.home_code).balance == 100


def test_upload__reused_application_number_with_other_content__is_reported_not_posted(world):
    mykey = world.add_card()
    _upload(world, HEADER + f"D-1,{mykey},100,転入\r\n")
    _drain(world)
    world.now += 60
    batch, _ = _upload(world, HEADER + f"D-1,{mykey},900,転入\r\n")
    _drain(world)
    batch = world.grants.get_batch(world.home_code, batch["batch_id"])
    assert batch["failed_rows"] == 1
    assert grant_requests.report_rows(world.grants, batch)[0]["code"] == "transfer_id_conflict"
    assert world.store.get_wallet(mykey, world.home_code).balance == 100


def test_upload__file_with_errors__posts_nothing_and_keeps_the_report(world):
    mykey = world.add_card()
    batch, created = _upload(world, HEADER + f"E-1,{mykey},100,転入\r\nE-2,{mykey},abc,転入\r\n", encoding="cp932")
    assert created and batch["status"] == "invalid" and batch["encoding"] == "cp932"
    assert (batch["valid_rows"], batch["invalid_rows"], batch["chunk_count"]) == (1, 1, 0)
    assert world.queue.messages == [] and world.store.get_wallet(mykey, world.home_code).balance == 0
    assert [(line["row"], line["column"], line["code"]) for line in grant_requests.report_rows(world.grants, batch)] == [
        (3, "ポイント", "invalid_amount")]


def test_upload__total_above_threshold__waits_for_approval_by_someone_else(world):
    residents = [world.add_card() for _ in range(3)]
    batch, _ = _upload(world, HEADER + "".join(f"F-{n},{m},5000,出産祝い\r\n" for n, m in enumerate(residents)))
    assert batch["status"] == "awaiting_approval" and world.queue.messages == []
    with pytest.raises(errors.SelfApprovalForbidden):
        grant_requests.approve(world.store, world.grants, world.queue, world.home_code, batch["batch_id"], "operator-a", world.clock)
    approved = grant_requests.approve(world.store, world.grants, world.queue, world.home_code, batch["batch_id"], "approver-b", world.clock)
    assert approved["batch"]["status"] == "queued" and approved["batch"]["approved_by"] == "approver-b"
    _drain(world)
    assert world.grants.get_batch(world.home_code, batch["batch_id"])["status"] == "completed"
    assert [world.store.get_wallet(m, world.home_code).balance for m in residents] == [5000] * 3


def test_upload__rejected_batch__is_never_posted(world):
    residents = [world.add_card() for _ in range(3)]
    batch, _ = _upload(world, HEADER + "".join(f"G-{n},{m},5000,出産祝い\r\n" for n, m in enumerate(residents)))
    grant_requests.reject(world.grants, world.home_code, batch["batch_id"], "approver-b", "対象者の確認中", world.clock)
    assert world.grants.get_batch(world.home_code, batch["batch_id"])["status"] == "rejected"
    assert world.queue.messages == [] and all(world.store.get_wallet(m, world.home_code).balance == 0 for m in residents)


def test_post_chunk__delivered_twice__counts_and_grants_once(world):
    mykey = world.add_card()
    rows = "".join(f"H-{n},{mykey},1,転入\r\n" for n in range(grant_requests.CHUNK_ROWS + 1))
    batch, _ = _upload(world, HEADER + rows)
    first_chunk = world.queue.messages[0]
    grant_requests.post_chunk(world.store, world.grants, *first_chunk, world.clock)
    assert grant_requests.post_chunk(world.store, world.grants, *first_chunk, world.clock) == {"skipped": "already_done"}
    batch = world.grants.get_batch(world.home_code, batch["batch_id"])
    assert batch["status"] == "queued" and batch["posted_rows"] == grant_requests.CHUNK_ROWS
    assert world.store.get_wallet(mykey, world.home_code).balance == grant_requests.CHUNK_ROWS


def test_programme__budget_raised_and_cut__moves_the_counters_and_refuses_cutting_spent_budget(world):
    municipality = world.store.get_municipality(world.home_code)
    mykey = world.add_card()
    world.grant(mykey, 1000)
    before, after = programme.change_settings(world.store, world.home_code, {"budget_total": municipality.budget_total + 500})
    assert after["budget_total"] - before["budget_total"] == 500
    assert ledger.budget_remaining(world.store, world.store.get_municipality(world.home_code)) == municipality.budget_total - 500
    with pytest.raises(errors.BudgetReductionTooLarge):
        programme.change_settings(world.store, world.home_code, {"budget_total": 0})
    assert world.store.get_municipality(world.home_code).budget_total == municipality.budget_total + 500


@pytest.mark.parametrize("changes,field", [
    ({"pin_free_limit": 60_000, "max_amount": 50_000}, "pin_free_limit"),
    ({"expiry_rule": {"kind": "months_after_grant", "months": 0}}, "expiry_rule.months"),
    ({"expiry_rule": {"kind": "forever"}}, "expiry_rule"),
    ({"budget_shards": 2}, "budget_shards"),
    ({"point_name": ""}, "point_name"),
])
def test_programme__inconsistent_or_unknown_settings__are_refused_and_nothing_changes(world, changes, field):
    before = world.store.get_municipality(world.home_code)
    with pytest.raises(errors.ValidationFailed) as refused:
        programme.change_settings(world.store, world.home_code, changes)
    assert refused.value.details["field"] == field
    assert world.store.get_municipality(world.home_code) == before


def test_grant__above_threshold_but_impossible__is_refused_before_anyone_is_asked_to_approve(world):
    mykey = world.add_card()
    maximum = world.store.get_municipality(world.home_code).max_amount
    with pytest.raises(errors.InvalidAmount):
        grant_requests.request_grant(_command(world, mykey, maximum + 1), world.store, world.grants, world.clock)
    with pytest.raises(errors.MykeyIdUnknown):
        grant_requests.request_grant(_command(world, "ZZZZ2345", 20_000), world.store, world.grants, world.clock)
    assert world.grants.approvals == {}
