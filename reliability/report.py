"""Merge the reliability results into `reliability/results/latest.json` and write `RELIABILITY.md`.

Inputs (each may be missing; the report says so instead of failing):

* `reliability/results/simulation.json` — `python -m reliability.simulation` (`make soak`, or a shorter run);
* `reliability/results/fuzz.json` — the fuzzing of every HTTP input and queue message (`{"cases",
  "server_errors", ...}`);
* `reliability/results/attacks.json` — the attack suite (`{"tried", "accepted", ...}`).

`latest.json` has `simulation.{operations,faults,violations,seeds}`, `fuzz.{cases,server_errors}` and
`attacks.{tried,accepted}` (plus the rest of each input). Every figure in `RELIABILITY.md` comes from
`latest.json`; the prose around them is fixed text in this module.

    python -m reliability.report [--results DIR] [--output RELIABILITY.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "reliability" / "results"
DOCUMENT = ROOT / "RELIABILITY.md"

FAULT_MEANINGS = {
    "throttle": "DynamoDB refuses a write before it is sent: `WriteContention(\"ThrottlingException\")` for the "
                "transactional writes (what the store raises for a throttled `TransactWriteItems`), a botocore "
                "`ThrottlingException` for the plain puts. Services retry the former; the latter fails the handler "
                "and the client (or SQS) retries.",
    "transaction_conflict": "`WriteContention(\"TransactionConflict\")` before a transactional write, as when another "
                            "transaction holds one of its items.",
    "crash_after_commit": "The write is performed, then the handler dies before answering. The client retries with "
                          "the same idempotency key — at once, or later from its outbox while other operations run "
                          "— and must get the first outcome, charged once.",
    "handler_timeout": "An exception at a read in the middle of an operation (before, between or after its writes); "
                       "the client retries.",
    "interleaved_write": "Just before a wallet write, the other container grants a few points to the same wallet: "
                         "the write's version guard fails and the service must start again from the new state.",
    "duplicate_delivery": "A partner message delivered again after it was processed (SQS at-least-once, or the "
                          "partner resending the same body).",
    "reordered_delivery": "A partner message delivered before messages queued earlier.",
    "stale_cache": "Not injected but counted: an operation in the caching container started from a remembered "
                   "wallet state older than the table's (the production container cache, `cache_seconds=60`).",
}


def load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def merge(results_dir: Path = RESULTS) -> dict:
    simulation = load(results_dir / "simulation.json")
    fuzz = load(results_dir / "fuzz.json")
    attacks = load(results_dir / "attacks.json")

    def section(data: dict | None, keys: tuple[str, ...]) -> dict:
        if data is None:
            return {"available": False, **{key: None for key in keys}}
        ordered = {key: data.get(key) for key in keys}
        ordered.update({key: value for key, value in data.items() if key not in ordered})
        return {"available": True, **ordered}

    return {
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "simulation": section(simulation, ("operations", "faults", "violations", "seeds")),
        "fuzz": section(fuzz, ("cases", "server_errors")),
        "attacks": section(attacks, ("tried", "accepted")),
    }


def _number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _cell(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else _number(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _duration(seconds) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes >= 90:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _records_table(rows: list[tuple[str, dict]], first: str) -> list[str]:
    columns: list[str] = []
    for _, record in rows:
        columns += [key for key in record if key not in columns]
    return _table((first, *columns), [(name, *(record.get(column) for column in columns)) for name, record in rows])


def _block(key: str, value, level: int) -> list[str]:
    """One figure of another suite's results, in the most readable shape its structure allows."""
    title = f"<details><summary><code>{key}</code></summary>"
    if isinstance(value, dict) and value and all(isinstance(v, dict) and all(_scalar(x) for x in v.values()) for v in value.values()):
        body = _records_table(list(value.items()), key)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and all(_scalar(x) for x in v.values()) for v in value):
        body = _records_table([(str(index + 1), record) for index, record in enumerate(value)], "#")
    elif isinstance(value, dict) and level < 2:
        body = _generic(value, set(), level + 1)
    elif isinstance(value, dict) and all(_scalar(v) for v in value.values()):
        body = _table((key, "value"), list(value.items()))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=1)
        body = ["```json", text if len(text) <= 6000 else text[:6000] + "\n…", "```"]
    return ["", title, "", *body, "", "</details>"]


def _generic(section: dict, skip: set[str], level: int = 0) -> list[str]:
    """Another suite's results, shown as they come: scalar figures in a table, the rest folded below it."""
    rows, lines = [], []
    for key, value in section.items():
        if key in skip or key == "available":
            continue
        if _scalar(value):
            rows.append((key, value))
        else:
            lines += _block(key, value, level)
    return (_table(("figure", "value"), rows) if rows else []) + lines


def render(latest: dict) -> str:
    sim, fuzz, attacks = latest["simulation"], latest["fuzz"], latest["attacks"]
    out = [
        "# Reliability",
        "",
        "Generated by `python -m reliability.report` (`make soak` runs it last) from "
        "[`reliability/results/latest.json`](reliability/results/latest.json), which merges `simulation.json`, "
        "`fuzz.json` and `attacks.json`. No figure in this file is typed by hand: rerun the report after a run.",
        "",
        f"- **Report generated**: {latest['generated_at']}",
    ]
    if sim["available"]:
        out.append(f"- **Simulation run**: finished {sim.get('finished_at', '—')} · `{sim.get('command', '')}` · "
                   f"{_duration(sim.get('elapsed_seconds'))} · {_number(sim.get('operations_per_second'))} operations/s · "
                   f"machine: {_number((sim.get('machine') or {}).get('cpus'))} CPUs, Python {(sim.get('machine') or {}).get('python', '—')}")
        code = sim.get("code") or {}
        out.append(f"- **Code simulated**: commit {code.get('commit', '—')} ({code.get('subject', '—')})"
                   + (", with local changes in chalicelib/" if code.get("chalicelib_changed") else "")
                   + (" — partial run" if sim.get("partial") else ""))
    out += ["", "## At a glance", ""]
    out += _table(("suite", "figure", "value", "goal", "met?"), [
        ("simulation", "operations", sim.get("operations"), "≥ 100,000 (`make soak`)",
         None if sim.get("operations") is None else sim["operations"] >= 100_000),
        ("simulation", "faults injected", sim.get("faults"), "every kind > 0",
         None if not sim["available"] else all((sim.get("faults_by_kind") or {}).get(k, 0) > 0 for k in FAULT_MEANINGS)),
        ("simulation", "violations", sim.get("violations"), "0", None if sim.get("violations") is None else sim["violations"] == 0),
        ("simulation", "seeds", ", ".join(str(s) for s in sim.get("seeds") or []) or None, "", None),
        ("fuzz", "cases", fuzz.get("cases"), "", None),
        ("fuzz", "server errors (5xx)", fuzz.get("server_errors"), "0", None if fuzz.get("server_errors") is None else fuzz["server_errors"] == 0),
        ("attacks", "tried", attacks.get("tried"), "", None),
        ("attacks", "accepted", attacks.get("accepted"), "0", None if attacks.get("accepted") is None else attacks["accepted"] == 0),
    ])
    out += ["", "## 1. Fault-injection simulation (`reliability/simulation.py`)", ""]
    if not sim["available"]:
        out += ["No `reliability/results/simulation.json` yet: run `make soak` (or `python -m reliability.simulation`).", ""]
    else:
        out += _simulation(sim)
    out += ["## 2. Fuzzing of every input", ""]
    if not fuzz["available"]:
        out += ["No `reliability/results/fuzz.json` yet.", ""]
    else:
        out += [f"**{_number(fuzz.get('cases'))}** cases, **{_number(fuzz.get('server_errors'))}** server errors.", ""]
        out += _generic(fuzz, {"cases", "server_errors"}) + [""]
    out += ["## 3. Attack suite", ""]
    if not attacks["available"]:
        out += ["No `reliability/results/attacks.json` yet.", ""]
    else:
        out += [f"**{_number(attacks.get('tried'))}** attacks tried, **{_number(attacks.get('accepted'))}** accepted.", ""]
        out += _generic(attacks, {"tried", "accepted"}) + [""]
    return "\n".join(out).rstrip() + "\n"


def _simulation(sim: dict) -> list[str]:
    world = sim.get("world") or {}
    params = sim.get("parameters") or {}
    stats = sim.get("stats") or {}
    per_seed = sim.get("per_seed") or []
    out = [
        f"**{_number(sim.get('operations'))}** operations over {len(sim.get('seeds') or [])} seeds "
        f"({_number(sim.get('operations_per_seed'))} per seed, plus each seed's final drain), "
        f"**{_number(sim.get('faults'))}** faults, **{_number(sim.get('violations'))}** violations "
        f"({_number(sim.get('violations_not_known'))} outside the known issues below), "
        f"**{_number(sim.get('findings'))}** findings, in {_duration(sim.get('elapsed_seconds'))} "
        f"({_number(sim.get('operations_per_second'))} operations/s, {_number(params.get('jobs'))} process(es)).",
        "",
        "### What it models",
        "",
        "Each seed builds a world on its own fresh DynamoDB Local tables — "
        f"{_number(world.get('municipalities'))} municipalities (two expiry rules: the fiscal year's end and N months "
        "after the grant; the last one's budget runs out during the run), "
        f"{_number(world.get('residents'))} residents with development JPKI cards, {_number(world.get('merchants'))} "
        "merchants (a shop and a public facility per municipality, large stores accepting two or three municipalities), "
        f"{_number(world.get('partners'))} partners with Ed25519 keys and agreements (integer rates with floor, half-up "
        "and ceiling rounding, daily and monthly caps, a campaign with a window and a target municipality, a partner "
        f"limited to two municipalities) and {_number(world.get('operators'))} point-management operators with a "
        "transfer-out programme per municipality — then interleaves operations chosen by `random.Random(seed)`, calling "
        "the real services: grants (some with their own expiry date, some to unknown MyKey IDs), payments (PIN-free "
        "and card-signed, some at merchants not accepting the municipality, some above the balance), partial and full "
        "refunds (some exceeding what is left, some by another merchant), signed partner messages (to a municipality, "
        "to the reserve, to a municipality outside the agreement or unknown, too old, too small, with a campaign, "
        "forged with another key — sometimes claiming a genuine message's transaction id) delivered duplicated and "
        "reordered, reserve allocations, transfer-outs (some with a mistyped account) confirmed (some with a wrong "
        "echo), rejected or voided at their deadline, client replays of earlier requests with the same body (first "
        "outcome expected) or another body (conflict expected), cards stopped and restarted by the call centre, and "
        "the scheduled jobs (`void_expired_holds`, `move_expired_reserves`, `expire_due`). A simulated clock advances "
        "about 20 s a step and jumps by hours (transfer-out deadlines), days (expiry) and 14–15 days (reserve moves). "
        "Every operation runs in one of two \"containers\": a `DynamoLedgerStore` without cache, and one with the "
        "production container cache, so each sees wallet states and card bindings the other changed.",
        "",
        "One operation is one service invocation: a client request with all its retries, one delivery of one partner "
        "message, or one run of a scheduled job.",
        "",
        "### Faults",
        "",
    ]
    faults = sim.get("faults_by_kind") or {}
    out += _table(("fault", "injected", "what it is"), [(f"`{kind}`", faults.get(kind), meaning) for kind, meaning in FAULT_MEANINGS.items()])
    out += [
        "",
        f"Probabilities per intercepted call while an operation's faults are armed (its first "
        f"{_number(params.get('max_faulty_attempts'))} attempts; later attempts run clean so every operation ends): write faults "
        f"{_cell(params.get('write_faults'))}, crash after commit {_number(params.get('crash_after_commit'))}, "
        f"timeout at a read {_number(params.get('read_timeout'))}; a processed message is delivered again with "
        f"probability {_number(params.get('duplicate_delivery'))}, a partner resends with probability "
        f"{_number(params.get('partner_resend'))}; a record failing {_number(params.get('max_receives'))} times goes "
        "to the dead letters, which the operator redrives. All of it scaled by `--fault-scale` "
        f"({_number(params.get('fault_scale'))} in this run).",
        "",
        "### What is checked, and when",
        "",
        "The checker keeps its own model of every wallet's expiry lots, payments and their refunds, holds, budgets, cap "
        "counters and partner decisions, written independently of `chalicelib.domain.lots`.",
        "",
        "- **At every commit** (the store proxies see each write that DynamoDB accepted): the write belongs to the "
        "running operation (right kind, key, amount, municipality, resident, merchant, fingerprint); no key is applied "
        "twice; no overdraft (a payment, hold or allocation the model's usable lots cannot cover); the lots taken, "
        "returned or expired are those the rules say (soonest expiry first, refunds latest first within their payment, "
        "expiry of exactly the lots past their date); refunds never exceed their payment; budgets are never overspent; "
        "caps hold; a hold is finished once, posted only before its deadline, voided for its deadline only after it; "
        "every partner message is decided once, for the model's reason; the wallet's new lots are exactly the model's.",
        "- **After every step** (cheap, reading DynamoDB): every wallet the step touched equals the model, is not "
        "negative, and its balance is the sum of its lots (one BatchGetItem); when the step could have applied a key "
        "twice (a retry, a replay, a redelivery) the key's transfer record is read and must be the one the model "
        "recorded, and the answer must be that first outcome; every refusal must be the one the model expects "
        "(a refusal where the model expects success is a violation; another documented code than the model's, with "
        "nothing written, is a *finding*); after each scheduled job, nothing it should have done is left.",
        f"- **Every {_number(sim.get('check_every'))} steps and at the end of each seed** (full scans): per "
        "municipality, `ledger.summary(...)['outstanding']` = Σ wallet balances (scanned) = the model's total; the "
        "docs/CONTRACTS.md#invariant: granted + converted in − spent + refunded − expired − transferred out = Σ wallets + "
        "pending transfer-outs; no negative balance anywhere; the municipality's transfer ids are exactly the model's, "
        "none listed twice, with the model's per-kind totals; the reserve's conversions in minus allocations out = Σ "
        "reserve balances; the budget counters; every hold's state; every genuine partner message decided, queued or "
        "dead-lettered.",
        "- **At the end of each seed**: every outbox settled, the queue drained, the dead letters redriven and "
        "drained; every genuine partner message credited exactly once (its transfer present, no rejection record) or "
        "rejected with the model's reason (no transfer); forged messages never recorded.",
        "",
        f"Checks run: {_cell(sim.get('checks'))}.",
        "",
        "### Violations",
        "",
    ]
    counts = sim.get("violation_counts") or {}
    if not counts:
        out += ["None.", ""]
    else:
        details = {}
        for violation in sim.get("violation_details") or []:
            details.setdefault(violation["signature"], violation)
        rows = []
        for signature, count in counts.items():
            first = details.get(signature, {})
            rows.append((signature, count, f"seed {first.get('seed')}, step {first.get('step')}" if first else "—"))
        out += _table(("signature", "count", "first seen"), rows) + [""]
        known = sim.get("known_issues") or {}
        if known:
            out += ["Known issues (found by this simulation, in the services; still counted above):", ""]
            for signature, text in known.items():
                out += [f"- **{signature}** — {text}"]
            out += [""]
        out += ["First occurrence of each, with its operation (`python -m reliability.simulation --seed N --operations M "
                f"--check-every {_number(sim.get('check_every'))}` with this run's M replays it):", ""]
        for signature, violation in details.items():
            out += [f"- `{signature}` — seed {violation['seed']}, step {violation['step']}, check `{violation['check']}`",
                    f"  - operation: `{violation.get('operation')}`", f"  - {violation['detail']}"]
        out += [""]
    fixed = sim.get("fixed_issues") or {}
    if fixed:
        out += ["Found by this simulation earlier and since fixed in the services (a run against the code before the "
                "fix reports them again):", ""]
        out += [f"- **{signature}** — {text}" for signature, text in fixed.items()] + [""]
    out += ["### Findings", ""]
    finding_counts = sim.get("finding_counts") or {}
    if not finding_counts:
        out += ["None.", ""]
    else:
        out += ["Deviations that moved nothing: a refusal with another documented code than the model's, or a "
                "transient storage refusal that reached the caller.", ""]
        examples = {}
        for finding in sim.get("finding_details") or []:
            examples.setdefault(finding["check"] + ": " + finding["signature"], finding)
        out += _table(("finding", "count", "first seen"), [
            (signature, count, f"seed {examples[signature]['seed']}, step {examples[signature]['step']}" if signature in examples else "—")
            for signature, count in finding_counts.items()]) + [""]
        if any("card_suspended" in signature for signature in finding_counts):
            out += ["A payment by a card the call centre stopped, in a container that remembers the card as active "
                    "(`card_for_payment` from the container cache), is refused for another reason — its balance, a "
                    "missing or old card signature — before the transaction's card guard is ever reached: the resident "
                    "is refused, and nothing moves, but with that code instead of `card_suspended` (403).", ""]
    if any(signature.startswith("transient_error_escaped") for signature in finding_counts):
        out += ["`transient_error_escaped`: an injected throttle or transaction conflict (`ports.WriteContention`, "
                "what the store raises for a throttled or conflicting transaction) raised out of the service instead of "
                "being retried (the signature names the service functions it came through). Nothing is written and "
                "the client's retry succeeds, but at the HTTP edge it is a 500 `internal_error` rather than a retry or "
                "a 503 `concurrent_update`.", ""]
    out += ["### Operations and outcomes", ""]
    operations = sim.get("operations_by_kind") or {}
    out += _table(("operation", "count"), sorted(operations.items(), key=lambda item: -item[1])) + [""]
    outcomes = sim.get("outcomes") or {}
    out += ["<details><summary>Outcomes (operation: answer)</summary>", ""]
    out += _table(("outcome", "count"), sorted(outcomes.items(), key=lambda item: (item[0].split(":")[0], -item[1]))) + ["", "</details>", ""]
    out += ["<details><summary>Retries, deliveries and other counters</summary>", ""]
    out += _table(("counter", "value"), sorted(stats.items())) + ["", "</details>", ""]
    if per_seed:
        out += ["<details><summary>Per seed</summary>", ""]
        out += _table(("seed", "operations", "faults", "violations", "findings", "simulated days", "seconds"),
                      [(s["seed"], s["operations"], s["faults"], s["violations"], s.get("findings"), s.get("simulated_days"),
                        s["elapsed_seconds"]) for s in per_seed]) + ["", "</details>", ""]
    out += [
        "### Reproducing a seed",
        "",
        "Everything — operations, amounts, actors, clock and faults — comes from the seed, so a violation replays "
        "at the same step with the same operation count (the world depends on it: the tight budget scales with it):",
        "",
        "```bash",
        f"python -m reliability.simulation --seed N --operations {_number(sim.get('operations_per_seed')).replace(',', '')} "
        f"--check-every {sim.get('check_every')}        # stops at the first violating step, prints it, exits 1",
        "python -m reliability.simulation --seeds 1-20 --operations 5000 --jobs 2 --keep-going   # what make soak runs",
        "```",
        "",
        "It starts its own DynamoDB Local in memory (or uses `--endpoint`), gives each seed fresh tables and deletes "
        "them after. On a violation it prints the seed, the step, the operation (with its key, parameters, attempts "
        "and the containers it ran in) and the failing check. `--fault-scale 0` runs the same seed without faults.",
        "",
        "### Run time",
        "",
        f"This run: {_duration(sim.get('elapsed_seconds'))} for {_number(sim.get('operations'))} operations, "
        f"{_number(sim.get('operations_per_second'))} operations/s with {_number(params.get('jobs'))} process(es) on "
        f"{_number((sim.get('machine') or {}).get('cpus'))} CPUs shared with DynamoDB Local (a Java process) and "
        "other work" + (f"; {_number(round(stats['dynamodb_calls'] / sim['operations'], 1))} DynamoDB calls per "
                        "operation (the services' own reads and transactions, and the checker's reads and scans), each "
                        "a few milliseconds on DynamoDB Local" if stats.get("dynamodb_calls") and sim.get("operations") else "")
        + (f". At this rate 100,000 operations take about {_duration(100_000 / sim['operations_per_second'])}"
           if sim.get("operations_per_second") else "")
        + ". `make test` runs three fixed seeds of a few hundred operations each "
        "(`tests/integration/test_simulation.py`).",
        "",
        "### Limits",
        "",
        "- One client at a time: the simulation is deterministic, so operations interleave (two containers, "
        "interleaved writes, deferred retries from outboxes, reordered deliveries) but never run in parallel threads; "
        "real races are the concurrency tests' and benchmarks' job.",
        "- DynamoDB Local, not DynamoDB: its transactions, conditions and indexes, but not real throttling or "
        "eventual consistency of index reads (the faults stand in for the first).",
        "- The services are called directly, not through HTTP, the SQS poller or Powertools' batch processor; request "
        "signatures, nonces and staff sessions are the fuzz and attack suites' subject.",
        "- Faults are injected at the store's boundary (before or after a whole write), not inside DynamoDB: a "
        "half-applied transaction cannot happen and is not simulated.",
        "- The model is the checker's own reading of docs/CONTRACTS.md (#money, #partner-conversions); where it and the services disagree "
        "about a refusal's code, nothing having moved, it is reported as a finding rather than a violation.",
        "- Card-status changes (suspend, restart) are modelled; revocation feeds, renewals and MyKey suspension are not.",
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(RESULTS), help="directory of simulation.json, fuzz.json, attacks.json")
    parser.add_argument("--output", default=str(DOCUMENT), help="the Markdown report (default RELIABILITY.md)")
    arguments = parser.parse_args(argv)
    results = Path(arguments.results)
    latest = merge(results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "latest.json").write_text(json.dumps(latest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    Path(arguments.output).write_text(render(latest), encoding="utf-8")
    print(f"written {results / 'latest.json'} and {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
