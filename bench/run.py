"""`make bench`: every benchmark of issue 9 in one run, on this machine, then latest.json, the chart and
BENCHMARKS.md. It starts what it needs and stops it: DynamoDB Local and moto for sections 1, 2, 4 and 5,
fresh interpreters for section 3, and the whole local cloud with pcscd for section 6 (last, once).

    python -m bench.run                       # everything, about 15 minutes on the 2-core machine
    python -m bench.run --quick               # small counts, to try the bench itself (~3 minutes)
    python -m bench.run --skip-card           # everything but the card path (pcscd busy elsewhere)

Progress goes to standard error; the app's own log lines (one JSON line per request, metrics) are
written and discarded, as CloudWatch would take them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

from bench.operations import log
from bench.report import LATEST, RESULTS_DIR, write_report

GOALS = {"payment_ratio_p50": 1.3, "payment_wcu": 5.0, "payment_rcu": 2.0, "cold_start_ratio": 1.3, "card_tap_p50_ms": 150.0,
         "expense_ratio": 0.10}
SECTIONS = ("operations", "http", "contention", "bulk", "drain", "cold_start", "card")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
                os_name = f"{pretty} (Linux {platform.release()})"
    except OSError:
        pass
    return {"cpu_model": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib,
            "python": platform.python_version(), "os": os_name, "architecture": platform.machine(),
            "load_average_start": _load()}


def code_version() -> dict:
    """The commit measured, and which app files differed from it (the payment path changes while we measure)."""
    import subprocess

    from tools.localcloud.processes import REPOSITORY_ROOT

    def git(*arguments: str) -> str:
        try:
            return subprocess.run(["git", *arguments], cwd=REPOSITORY_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip("\n")
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "app.py", "chalicelib").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_app_changes": changed}


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: try the bench, not a result")
    parser.add_argument("--iterations", type=int, help="measured iterations per operation (default 300)")
    parser.add_argument("--warmup", type=int, help="warm-up iterations per operation (default 30)")
    parser.add_argument("--bulk-sizes", help="comma-separated bulk-grant sizes (default 10000,100000)")
    parser.add_argument("--bulk-workers", type=int, default=3, help="chunk consumers in parallel (default 3)")
    parser.add_argument("--bulk-budget", type=float,
                        help="seconds the largest bulk grant may post for before it is stopped and extrapolated "
                             "(default 240; 0: no limit, run it to the end)")
    parser.add_argument("--messages", type=int, help="partner messages for the queue drain (default 1000)")
    parser.add_argument("--card-iterations", type=int, help="measured taps (default 100)")
    parser.add_argument("--card-wait", type=float, default=300, help="seconds to wait for a busy pcscd before skipping")
    parser.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {', '.join(SECTIONS)}")
    parser.add_argument("--skip-card", action="store_true", help="same as --skip card")
    parser.add_argument("--wait-quiet", type=float, default=0,
                        help="wait up to this many seconds for the 1-minute load average to fall below 0.5 first "
                             "(other processes on this 2-core machine distort every figure)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite BENCHMARKS.md and the chart from latest.json")
    arguments = parser.parse_args(argv)
    quick = arguments.quick
    arguments.iterations = arguments.iterations or (40 if quick else 300)
    arguments.warmup = arguments.warmup or (10 if quick else 30)
    arguments.bulk_sizes = [int(size) for size in (arguments.bulk_sizes or ("1000,4000" if quick else "10000,100000")).split(",")]
    arguments.bulk_budget = arguments.bulk_budget if arguments.bulk_budget is not None else (120 if quick else 240)
    arguments.bulk_budget = arguments.bulk_budget or None
    arguments.messages = arguments.messages or (200 if quick else 1000)
    arguments.card_iterations = arguments.card_iterations or (20 if quick else 100)
    arguments.skip = {name.strip() for name in arguments.skip.split(",") if name.strip()} | ({"card"} if arguments.skip_card else set())
    unknown = arguments.skip - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return arguments


def _wait_for_quiet(seconds: float) -> float:
    started = time.monotonic()
    while seconds and time.monotonic() - started < seconds and os.getloadavg()[0] >= 0.5:
        time.sleep(5)
    waited = round(time.monotonic() - started, 1)
    if seconds:
        log(f"waited {waited} s for a quiet machine (load average now {_load()})")
    return waited


def _stop_on_sigterm() -> None:
    def stop(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through the `with` blocks, which stop every child process

    signal.signal(signal.SIGTERM, stop)


def run(arguments: argparse.Namespace) -> dict:
    from bench import coldstart, contention, cost, operations, scale
    from bench.floor import FloorReplayer
    from bench.meter import Meter
    from bench.stack import LocalStack

    waited = _wait_for_quiet(arguments.wait_quiet)
    started = time.perf_counter()
    results: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "code": code_version(),
        "goals": GOALS,
        "settings": {"iterations": arguments.iterations, "warmup": arguments.warmup, "bulk_sizes": arguments.bulk_sizes,
                     "bulk_workers": arguments.bulk_workers, "bulk_budget_s": arguments.bulk_budget,
                     "messages": arguments.messages, "card_iterations": arguments.card_iterations, "quick": arguments.quick},
        "operations": {},
        "sections_run": [],
    }
    results["machine"]["waited_for_quiet_s"] = waited

    def section(name: str, action) -> None:
        """Run one section; a failure is recorded in the results and the other sections still run."""
        if name in arguments.skip:
            return
        section_started = time.perf_counter()
        try:
            action()
            results["sections_run"].append(name)
        except Exception as failure:  # noqa: BLE001 — reported in latest.json and on standard error
            import traceback

            log(f"{name}: FAILED: {failure!r}")
            traceback.print_exc()
            results.setdefault("failures", {})[name] = repr(failure)
        results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - section_started, 1)

    def cold_start() -> None:  # first, while nothing else of the bench runs
        results["cold_start"] = coldstart.run(samples=5 if arguments.quick else 15, source_samples=2 if arguments.quick else 5)

    section("cold_start", cold_start)
    meter = Meter().install()
    try:
        with LocalStack() as stack:
            floor_client = stack.dynamodb_client()
            meter.attach(floor_client)
            replayer = FloorReplayer(stack.dynamodb_client())
            bench = operations.Workbench(stack, arguments.iterations, arguments.warmup)
            state: dict = {"bulk_world": None}

            def service_operations() -> None:
                from tools.localcloud.streams import transfer_stream_delivery

                listing = operations.measure_projection(meter, transfer_stream_delivery(stack.database.endpoint_url))
                for spec in operations.service_operations(bench):
                    results["operations"][spec.name] = operations.run_operation(spec, meter, replayer, floor_client)
                # The transfers these operations posted, listed from the stream afterwards.
                results["projection"] = operations.finish_projection(meter, listing)

            def http_operations() -> None:
                from chalice.test import Client

                import app as application

                with Client(application.app, stage_name="dev") as client:
                    for spec in operations.http_operations(bench, client):
                        results["operations"][spec.name] = operations.run_operation(spec, meter, replayer, floor_client)

            def contention_runs() -> None:
                results["contention"] = contention.run_isolated()

            def bulk() -> None:
                results["bulk_grant"], state["bulk_world"] = scale.run_bulk(
                    bench, meter, arguments.bulk_sizes, arguments.bulk_workers, arguments.bulk_budget)

            def drain() -> None:
                if state["bulk_world"] is None:
                    state["bulk_world"] = scale.BulkWorld(bench)
                    state["bulk_world"].residents[0] = bench.plain_residents(min(arguments.messages, 2000))
                results["queue_drain"] = scale.queue_drain(bench, state["bulk_world"], meter, stack, arguments.messages)

            section("operations", service_operations)
            section("http", http_operations)
            section("contention", contention_runs)
            section("bulk", bulk)
            section("drain", drain)
    finally:
        Meter.uninstall()

    def card() -> None:
        from bench import card_tap

        results["card_tap"] = card_tap.run(iterations=arguments.card_iterations, warmup=5 if arguments.quick else 10,
                                           card_only=20 if arguments.quick else 50, wait_seconds=arguments.card_wait)
        if results["card_tap"].get("skipped"):
            raise RuntimeError(f"card path not measured: {results['card_tap']['skipped']}")

    section("card", card)

    def costs() -> None:
        results["prices"] = cost.prices()
        results["cost"] = cost.per_million(results)
        results["cost_per_million_usd"] = {name: line["total_usd"] for name, line in results["cost"]["per_million"].items()}
        results["cost_per_million_rest_api_usd"] = {name: line["total_rest_api_usd"]
                                                    for name, line in results["cost"]["per_million"].items()}
        results["expense_ratio"] = cost.expense_ratio(results, results["cost"])

    if results["operations"]:
        section("cost", costs)
    results["machine"]["load_average_end"] = _load()
    results["run_seconds"] = round(time.perf_counter() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    arguments = parse(argv)
    if arguments.report_only:
        write_report(json.loads(LATEST.read_text(encoding="utf-8")))
        log("BENCHMARKS.md and the chart rewritten from latest.json")
        return 0
    _stop_on_sigterm()
    real_stdout = sys.stdout
    sys.stdout = open(os.devnull, "w", encoding="utf-8")  # the app's request logs and metrics lines
    try:
        results = run(arguments)
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    target = LATEST if not arguments.quick and not arguments.skip else RESULTS_DIR / "partial.json"
    target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if target == LATEST:
        write_report(results)
        log(f"wrote {LATEST.name}, chart.png and BENCHMARKS.md in {results['run_seconds'] / 60:.1f} min")
    else:
        log(f"a quick or partial run: wrote {target} only (latest.json and BENCHMARKS.md keep the last full run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
