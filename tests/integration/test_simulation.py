"""The fault-injection simulation (reliability/simulation.py), short: fixed seeds on DynamoDB Local.

`make soak` runs the long one (≥ 100,000 operations). Here three fixed seeds of a few hundred operations
each must end without any violation outside the documented known issues, every kind of fault must have
been injected (a run whose faults never fired proves nothing), and the checker must be able to fail:
a wallet corrupted behind the services' back is reported as a broken invariant.
"""
from __future__ import annotations

import warnings
from collections import Counter

import pytest

from reliability.simulation import FAULT_KINDS, KNOWN_ISSUES, Config, Simulation, isolated_tables, run_seed

pytestmark = pytest.mark.integration

SEEDS = (1, 2, 3)
OPERATIONS = 250


@pytest.fixture(scope="module")
def runs(dynamodb_local):
    # keep-going: a known issue must not hide what the rest of the seed would have found.
    return [run_seed(Config(seed=seed, operations=OPERATIONS, check_every=100, residents=24, stop_on_violation=False),
                     dynamodb_local.endpoint_url) for seed in SEEDS]


def _show(violations) -> str:
    return "\n".join(f"seed {v['seed']} step {v['step']} [{v['check']}] {v['detail']}\n    operation: {v['operation']}"
                     for v in violations)


def test_fixed_seeds__no_violation_outside_the_known_issues(runs):
    unknown = [v for run in runs for v in run.violations if v["signature"] not in KNOWN_ISSUES]
    assert not unknown, "reproduce with python -m reliability.simulation --seed N --operations %d --residents 24 " \
                        "--check-every 100\n%s" % (OPERATIONS, _show(unknown))
    known = Counter()
    for run in runs:
        known.update(run.violation_counts)
    if known:
        warnings.warn("known issues found again (see RELIABILITY.md): " + "; ".join(f"{n}× {s}" for s, n in known.items()))
    assert sum(run.operations for run in runs) >= len(SEEDS) * OPERATIONS


def test_fixed_seeds__every_refusal_as_the_model_expects_and_no_transient_error_escapes(runs):
    # Findings move no money, but each was a defect: a throttled write answered with a 500 (fixed in the budget
    # move and the transfer-out confirmation) or a stopped card refused for its balance first (fixed in e4e3086).
    findings = [finding for run in runs for finding in run.findings]
    assert not findings, "\n".join(f"seed {f['seed']} step {f['step']} [{f['check']}] {f['signature']}: {f['detail']}"
                                    for f in findings)


def test_fixed_seeds__every_kind_of_fault_was_injected(runs):
    faults = Counter()
    for run in runs:
        faults.update(run.faults_by_kind)
    assert set(faults) == set(FAULT_KINDS)
    assert all(faults[kind] > 0 for kind in FAULT_KINDS), dict(faults)


def test_fixed_seeds__every_kind_of_operation_ran_and_money_moved(runs):
    operations, outcomes, stats = Counter(), Counter(), Counter()
    for run in runs:
        operations.update(run.operations_by_kind)
        outcomes.update(run.outcomes)
        stats.update(run.stats)
    for kind in ("grant", "payment", "refund", "deliver", "transfer_out", "confirm", "reject", "allocate_reserve"):
        assert operations[kind] > 0, kind
    for outcome in ("grant:ok", "payment:ok", "refund:ok", "transfer_out:ok", "allocate_reserve:ok", "deliver:credited:None"):
        assert outcomes[outcome] > 0, (outcome, dict(outcomes))
    # Retries with the same key happened, at once and later from an outbox, and replays of earlier requests.
    assert stats["immediate_retries"] > 0 and stats["replays"] > 0
    assert sum(run.checks["full"] for run in runs) >= len(SEEDS) * 2


def test_checker__a_wallet_changed_behind_the_services_back__is_reported(dynamodb_local, dynamodb_client):
    with isolated_tables(dynamodb_local.endpoint_url) as tables:
        simulation = Simulation(Config(seed=7, operations=80, check_every=1000, residents=12, stop_on_violation=False))
        simulation.run()
        assert simulation.full_check() == []
        (mykey_id, code), lots = next((key, lots) for key, lots in sorted(simulation.model.lots.items()) if lots and key[1] != "reserve")
        day = sorted(lots)[0]
        # Seven points appear from nowhere: balance and lots stay consistent with each other, so only the
        # ledger's invariant and the model can tell.
        dynamodb_client.update_item(
            TableName=f"{tables.prefix}wallets", Key={"mykey_id": {"S": mykey_id}, "municipality_code": {"S": code}},
            UpdateExpression="SET balance = balance + :n, lots.#day = lots.#day + :n",
            ExpressionAttributeNames={"#day": day}, ExpressionAttributeValues={":n": {"N": "7"}})
        failed = simulation.full_check()
        assert "invariant" in failed and "wallet_matches_model" in failed, failed
        invariant = next(v for v in simulation.result.violations if v["check"] == "invariant")
        assert code in invariant["detail"] and invariant["step"] == simulation.step
        # And a balance that no longer matches its lots is reported as such.
        dynamodb_client.update_item(
            TableName=f"{tables.prefix}wallets", Key={"mykey_id": {"S": mykey_id}, "municipality_code": {"S": code}},
            UpdateExpression="SET balance = :minus", ExpressionAttributeValues={":minus": {"N": "-1"}})
        failed = simulation.full_check()
        assert {"no_negative_balance", "balance_is_sum_of_lots", "invariant"} <= set(failed), failed
