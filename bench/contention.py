"""Section 4: 64 concurrent payments on ONE wallet, and on 64 different wallets.

Each of the 64 threads is one concurrent request in its own warm Lambda container: it has its own ledger
store (built as `chalicelib.api.dependencies` builds it, with its own container cache), which has served
one payment of another resident before (so its clients exist and its settings are read), and all start
together at a barrier. The single wallet is funded for exactly half of the payments, so the other half
must be refused (`insufficient_balance`); the 64 wallets are each funded for their one payment.

Zero overdraft is shown from the database afterwards: every wallet's balance equals what was funded
minus the payments posted, the payment records agree with the answers the threads got, and no balance
is negative.

It runs in a child process (`python -m bench.contention`, same DynamoDB Local, same environment), so a
run that does not finish can be stopped after a deadline without leaving threads behind, and its 64
container stores (a botocore session each) leave with it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

from bench.operations import log
from bench.stats import rounded, summary

THREADS = 64
AMOUNT = 100
DEADLINE_SECONDS = float(os.environ.get("BENCH_CONTENTION_DEADLINE_S", "60"))  # per run: threads still busy then are "unfinished"
CHILD_TIMEOUT_SECONDS = DEADLINE_SECONDS + 150  # setting up (residents, 64 warm containers) and the audit


def _container_store():
    """A ledger store as a new Lambda container builds it (falls back to the shared one)."""
    from chalicelib.api import dependencies

    build = getattr(dependencies, "_build_ledger_store", None)
    return build() if build is not None else dependencies.get_ledger_store()


def _run(bench, meter, payers: list[str], warm_up_payers: list[str]) -> dict:
    from chalicelib import errors
    from chalicelib.services import ledger

    world = bench.world
    commands = [world.payment_command(mykey, AMOUNT, transfer_id=str(uuid.uuid4())) for mykey in payers]
    stores = [_container_store() for _ in payers]
    for store, earlier in zip(stores, warm_up_payers):  # one earlier request per container, not timed
        ledger.pay(world.payment_command(earlier, AMOUNT), store, bench.authority, time.time)
    barrier = threading.Barrier(len(payers) + 1)
    outcomes: list[str | None] = [None] * len(payers)
    latencies: list[float] = [0.0] * len(payers)

    def pay(index: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            ledger.pay(commands[index], stores[index], bench.authority, time.time)
            outcomes[index] = "posted"
        except errors.DomainError as refusal:
            outcomes[index] = refusal.code
        except BaseException as failure:  # noqa: BLE001 — a crash is an outcome to report, not to hide
            outcomes[index] = f"error:{type(failure).__name__}"
        latencies[index] = (time.perf_counter() - started) * 1000

    threads = [threading.Thread(target=pay, args=(index,), daemon=True) for index in range(len(payers))]
    for thread in threads:
        thread.start()
    before = meter.totals()
    barrier.wait()
    started = time.perf_counter()
    deadline = started + DEADLINE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()))
    wall = time.perf_counter() - started
    unfinished = sum(thread.is_alive() for thread in threads)
    outcomes = [outcome or "unfinished" for outcome in outcomes]
    used = meter.difference(meter.totals(), before)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    transactions = used.get("TransactWriteItems", {}).get("calls", 0)
    latency = summary([value for value, outcome in zip(latencies, outcomes) if outcome != "unfinished"] or [0.0])
    return {
        "threads": len(payers), "amount": AMOUNT, "outcomes": counts, "unfinished": unfinished,
        "completed": unfinished == 0 and all(o == "posted" or not o.startswith("error:") for o in outcomes),
        "posted": counts.get("posted", 0), "refused": len(payers) - counts.get("posted", 0),
        "wall_s": rounded(wall), "ops_per_s": rounded((len(payers) - unfinished) / wall, 1),
        "posted_per_s": rounded(counts.get("posted", 0) / wall, 1),
        "p50_ms": latency["p50_ms"], "p99_ms": latency["p99_ms"], "max_ms": latency["max_ms"],
        "transaction_attempts": transactions,
        "attempts_per_payment": rounded(transactions / len(payers), 2),
        "commands": commands, "outcome_list": outcomes,
    }


def _audit(bench, wallets: dict[str, int], commands, outcomes, still_running: bool = False) -> dict:
    """Balances and payment records as the database holds them after the run. While threads are still
    paying (a run past its deadline), records and balances are read at different instants, so only
    "no negative balance" is judged then."""
    checker = bench.seeder
    posted_by_wallet: dict[str, int] = {}
    answered_posted = {command.transfer_id for command, outcome in zip(commands, outcomes) if outcome == "posted"}
    records_found = 0
    for command in commands:
        record = checker.get_transfer(command.transfer_id)
        if record is not None:
            records_found += 1
            posted_by_wallet[record.mykey_id] = posted_by_wallet.get(record.mykey_id, 0) + record.amount
    balances = {mykey: checker.get_wallet(mykey, bench.world.home_code).balance for mykey in wallets}
    consistent = all(balances[mykey] == funded - posted_by_wallet.get(mykey, 0) for mykey, funded in wallets.items())
    records_match = records_found == len(answered_posted) and all(
        checker.get_transfer(transfer_id) is not None for transfer_id in answered_posted)
    return {
        "funded_total": sum(wallets.values()),
        "posted_total": sum(posted_by_wallet.values()),
        "final_balance_total": sum(balances.values()),
        "min_balance": min(balances.values()),
        "balances_equal_funded_minus_posted": consistent,
        "payment_records_match_answers": records_match,
        "audited_while_running": still_running,
        "overdraft": min(balances.values()) < 0 or (not consistent and not still_running),
    }


def run_isolated() -> dict:
    """Each of the two runs in its own child process, stopped if it outlives its deadline."""
    result: dict = {}
    for kind in ("one_wallet", "many_wallets"):
        log(f"contention: {kind.replace('_', ' ')}, in a child process")
        try:
            answer = subprocess.run([sys.executable, "-m", "bench.contention", kind], env=dict(os.environ),
                                    stdout=subprocess.PIPE, stderr=None, text=True, timeout=CHILD_TIMEOUT_SECONDS)
            lines = [line for line in answer.stdout.splitlines() if line.startswith("{")]
            result[kind] = json.loads(lines[-1]) if answer.returncode == 0 and lines else {
                "completed": False, "overdraft": None, "error": f"child exited with {answer.returncode}"}
        except subprocess.TimeoutExpired:
            log(f"contention: {kind} stopped after {CHILD_TIMEOUT_SECONDS:.0f} s")
            result[kind] = {"completed": False, "overdraft": None, "error": f"did not finish within {CHILD_TIMEOUT_SECONDS:.0f} s"}
    one, many = result["one_wallet"], result["many_wallets"]
    result["completed"] = bool(one.get("completed") and many.get("completed"))
    audited = one.get("overdraft") is not None and many.get("overdraft") is not None
    result["zero_overdraft"] = (one["overdraft"] is False and many["overdraft"] is False) if audited else None
    log(f"contention: one wallet {one.get('outcomes')}, {one.get('ops_per_s')} ops/s; 64 wallets {many.get('outcomes')}, "
        f"{many.get('ops_per_s')} ops/s; zero overdraft: {result['zero_overdraft']}")
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.meter import Meter
    from bench.operations import Workbench
    from bench.stack import use_parent_test_ca

    kind = (sys.argv[1:] if argv is None else argv)[0]
    use_parent_test_ca()
    meter = Meter().install()
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        bench = Workbench(None, 0, 0)
        result = one_wallet(bench, meter) if kind == "one_wallet" else many_wallets(bench, meter)
    finally:
        sys.stdout = real_stdout
    print(json.dumps(result), flush=True)
    # Threads still paying past the deadline must not keep the process alive.
    os._exit(0)


def _warm_up_payers(bench) -> list[str]:
    from bench.residents import add_card_residents, fund

    payers = add_card_residents(bench.world, THREADS, bench.cards)
    fund(bench.seeder, bench.world.home_code, payers, AMOUNT)
    return payers


def one_wallet(bench, meter) -> dict:
    from bench.residents import add_card_residents, fund

    single = add_card_residents(bench.world, 1, bench.cards)[0]
    funded = THREADS // 2 * AMOUNT
    fund(bench.seeder, bench.world.home_code, [single], funded)
    run = _run(bench, meter, [single] * THREADS, _warm_up_payers(bench))
    run["funded"] = funded
    run.update(_audit(bench, {single: funded}, run.pop("commands"), run.pop("outcome_list"), run["unfinished"] > 0))
    return run


def many_wallets(bench, meter) -> dict:
    from bench.residents import add_card_residents, fund

    payers = add_card_residents(bench.world, THREADS, bench.cards)
    fund(bench.seeder, bench.world.home_code, payers, AMOUNT)
    run = _run(bench, meter, payers, _warm_up_payers(bench))
    run["funded_each"] = AMOUNT
    run.update(_audit(bench, {mykey: AMOUNT for mykey in payers}, run.pop("commands"), run.pop("outcome_list"),
                      run["unfinished"] > 0))
    return run


if __name__ == "__main__":
    raise SystemExit(main())
