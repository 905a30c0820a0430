"""BENCHMARKS.md and the chart, generated from `bench/results/latest.json`; no figure is typed by hand.

The prose under each "What limits it" comes from `bench/analysis.md`, a hand-written file of sections
headed `## analysis:<key>`. It is prose: where it cites a measured value it writes a placeholder such as
`{{operations.payment.round_trips}}`, which is filled from latest.json here, so the text never holds a
figure of its own. Each section lands in BENCHMARKS.md between `<!-- analysis:<key> -->` markers; a key
with no text in analysis.md leaves a visible placeholder.

    python -m bench.report [results.json]    # rewrite BENCHMARKS.md and the chart (default: latest.json)
"""
from __future__ import annotations

import html
import json
import re
import shutil
import sys
from pathlib import Path

from tools.localcloud.processes import REPOSITORY_ROOT

RESULTS_DIR = REPOSITORY_ROOT / "bench" / "results"
LATEST = RESULTS_DIR / "latest.json"
CHART = RESULTS_DIR / "chart.png"
CHART_SVG = RESULTS_DIR / "chart.svg"
ANALYSIS = REPOSITORY_ROOT / "bench" / "analysis.md"
BENCHMARKS = REPOSITORY_ROOT / "BENCHMARKS.md"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                  "--no-first-run", "--disable-component-update", "--disable-sync"]

ANALYSIS_KEYS = ("summary", "payment", "operations", "capacity", "cost", "expense_ratio", "cold_start", "contention",
                 "bulk_grant", "queue_drain", "card_tap")
OPERATION_ORDER = ("payment", "payment_repeat", "grant", "refund", "conversion", "payment_http", "refund_http", "grant_http")


# -- values ---------------------------------------------------------------------------------------------


def lookup(results: dict, path: str):
    value = results
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def fmt(value, digits: int | None = None) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if digits is not None:
            return f"{value:,.{digits}f}"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{value:.3g}"
    return str(value)


def met(flag) -> str:
    if flag is None:
        return "not measured"
    return "**yes**" if flag else "**no**"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- analysis prose -------------------------------------------------------------------------------------


def read_analysis(path: Path = ANALYSIS) -> dict[str, str]:
    if not path.exists():
        return {}
    sections: dict[str, str] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"##\s+analysis:([a-z_]+)\s*", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return {key: text.strip() for key, text in sections.items()}


def fill(text: str, results: dict) -> str:
    def value(match: re.Match) -> str:
        path, _, digits = match.group(1).partition(":")
        return fmt(lookup(results, path.strip()), int(digits) if digits else None)

    return re.sub(r"\{\{\s*([^}]+?)\s*\}\}", value, text)


def analysis_block(key: str, sections: dict[str, str], results: dict) -> str:
    text = sections.get(key)
    body = fill(text, results) if text else f"_No analysis yet: write it in `bench/analysis.md` under `## analysis:{key}`._"
    return f"<!-- analysis:{key} -->\n{body}\n<!-- /analysis:{key} -->"


# -- the chart ------------------------------------------------------------------------------------------


def chart_svg(results: dict) -> str:
    operations = results.get("operations", {})
    names = [name for name in OPERATION_ORDER if name in operations]
    row, top, left, width = 46, 78, 130, 1120
    panel1, gap, panel2 = 470, 50, 420
    x2 = left + panel1 + gap
    bars1, bars2 = panel1 * 0.72, panel2 * 0.68  # room for the labels after the bars
    height = top + row * len(names) + 60
    latency_max = max([operations[n]["p50_ms"] for n in names] + [operations[n].get("floor_p50_ms") or 0 for n in names] + [1])
    units_max = max([operations[n]["wcu"] + operations[n]["rcu"] for n in names] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="DejaVu Sans, sans-serif" font-size="13">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="{left}" y="26" font-size="16" font-weight="bold">p50 latency (ms): operation vs its floor</text>',
             f'<text x="{left}" y="46" fill="#444" font-size="12">floor: its own TransactWriteItems, bare boto3, one round trip</text>',
             f'<text x="{left}" y="62" fill="#444" font-size="12">label: operation p50 (ratio to floor p50)</text>',
             f'<text x="{x2}" y="26" font-size="16" font-weight="bold">capacity units per operation</text>',
             f'<text x="{x2}" y="46" fill="#444" font-size="12">WCU (dark) + RCU (light), from ConsumedCapacity</text>',
             f'<text x="{x2}" y="62" fill="#444" font-size="12">dashed outline: WCU of the floor (same items)</text>']
    for index, name in enumerate(names):
        op = operations[name]
        y = top + index * row
        parts.append(f'<text x="{left - 10}" y="{y + 20}" text-anchor="end">{html.escape(name)}</text>')
        op_width = bars1 * op["p50_ms"] / latency_max
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{op_width:.1f}" height="16" fill="#1f5fa8"/>')
        parts.append(f'<text x="{left + op_width + 5}" y="{y + 17}" fill="#1f5fa8">{fmt(op["p50_ms"])}'
                     + (f' ({fmt(op["ratio_p50"])}×)' if op.get("ratio_p50") else "") + "</text>")
        if op.get("floor_p50_ms"):
            floor_width = bars1 * op["floor_p50_ms"] / latency_max
            parts.append(f'<rect x="{left}" y="{y + 22}" width="{floor_width:.1f}" height="12" fill="#9aa5b1"/>')
            parts.append(f'<text x="{left + floor_width + 5}" y="{y + 33}" fill="#555" font-size="11">floor {fmt(op["floor_p50_ms"])}</text>')
        wcu_width = bars2 * op["wcu"] / units_max
        rcu_width = bars2 * op["rcu"] / units_max
        parts.append(f'<rect x="{x2}" y="{y + 8}" width="{wcu_width:.1f}" height="20" fill="#b5651d"/>')
        parts.append(f'<rect x="{x2 + wcu_width:.1f}" y="{y + 8}" width="{rcu_width:.1f}" height="20" fill="#e8b57a"/>')
        if op.get("wcu_floor") is not None:
            parts.append(f'<rect x="{x2}" y="{y + 5}" width="{bars2 * op["wcu_floor"] / units_max:.1f}" height="26" '
                         f'fill="none" stroke="#222" stroke-dasharray="4 2"/>')
        parts.append(f'<text x="{x2 + wcu_width + rcu_width + 6}" y="{y + 23}">{fmt(op["wcu"])} W + {fmt(op["rcu"])} R</text>')
    legend_y = top + row * len(names) + 22
    parts.append(f'<rect x="{left}" y="{legend_y - 11}" width="14" height="12" fill="#1f5fa8"/><text x="{left + 20}" y="{legend_y}">operation p50</text>')
    parts.append(f'<rect x="{left + 135}" y="{legend_y - 11}" width="14" height="12" fill="#9aa5b1"/><text x="{left + 155}" y="{legend_y}">floor p50</text>')
    machine = results.get("machine", {})
    parts.append(f'<text x="{left}" y="{legend_y + 24}" fill="#666" font-size="11">{html.escape(str(results.get("date")))} · '
                 f'{html.escape(str(machine.get("cpu_model")))} · {machine.get("cores")} cores · DynamoDB Local in memory · '
                 f'generated by make bench from bench/results/latest.json</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_png(svg: str, target: Path) -> str | None:
    """Screenshot the SVG in the system Chromium through Playwright; returns why not, if it could not."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return "no Chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "no Playwright"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(device_scale_factor=2)
            page.set_content(f'<html><body style="margin:0;background:#fff">{svg}</body></html>')
            page.locator("svg").screenshot(path=str(target))
        finally:
            browser.close()
    return None


# -- BENCHMARKS.md --------------------------------------------------------------------------------------


def _operations_table(results: dict) -> str:
    operations = results["operations"]
    goal = results["goals"]["payment_ratio_p50"]
    rows = []
    for name in OPERATION_ORDER:
        if name not in operations:
            continue
        op = operations[name]
        rows.append([f"`{name}`", fmt(op["p50_ms"]), fmt(op["p99_ms"]), fmt(op["ops_per_s"]), fmt(op.get("floor_p50_ms")),
                     f'{fmt(op.get("ratio_p50"))}×', fmt(op["round_trips"]), fmt(op["reads"]),
                     f"≤ {fmt(goal)}×" if name == "payment" else "", met(op.get("ratio_p50") <= goal) if name == "payment" and op.get("ratio_p50") else ""])
    return table(["operation", "p50 ms", "p99 ms", "ops/s", "floor p50 ms", "ratio p50", "round trips", "reads", "goal", "met?"], rows)


def _calls_table(operation: dict) -> str:
    rows = []
    for call in operation.get("calls", []):
        if "operation" not in call:
            continue
        rows.append([call["operation"], call["tables"], {True: "strong", False: "eventual"}.get(call["consistent"], ""),
                     fmt(call["rcu"]), fmt(call["wcu"]), fmt(call["p50_ms"])])
    return table(["call", "tables", "read", "RCU", "WCU", "p50 ms"], rows)


def _capacity_table(results: dict) -> str:
    operations, goals = results["operations"], results["goals"]
    rows = []
    for name in OPERATION_ORDER:
        if name not in operations:
            continue
        op = operations[name]
        is_payment = name == "payment"
        rows.append([f"`{name}`", fmt(op["rcu"]), fmt(op["rcu_min"]), fmt(op["wcu"]), fmt(op["wcu_indexes"]),
                     fmt(op.get("wcu_floor")), ", ".join(op.get("floor_items", [])),
                     f"≤ {fmt(goals['payment_wcu'])} WCU, ≤ {fmt(goals['payment_rcu'])} RCU" if is_payment else "",
                     f"WCU {met(op['wcu'] <= goals['payment_wcu'])}, RCU {met(op['rcu'] <= goals['payment_rcu'])}" if is_payment else ""])
    listing = results.get("projection") or {}
    if listing.get("transfers"):
        # Not part of any request: written after each movement's transaction, from the transfers stream.
        rows.append(["transfer listing (stream, per transfer)", "0", "0", fmt(listing["wcu_per_transfer"]), "0", "",
                     "BatchWriteItem: transfer_index entries by municipality and by MyKey ID", "", ""])
    return table(["operation", "RCU", "RCU min", "WCU", "of which GSI", "WCU floor", "items written (floor)", "goal", "met?"], rows)


def _cost_tables(results: dict) -> str:
    cost = results.get("cost", {})
    lines = cost.get("per_million", {})
    rows = []
    for name, line in lines.items():
        b = line["breakdown_usd"]
        rows.append([f"`{name}`", fmt(b["lambda_duration"] + b["lambda_requests"]), fmt(b["api_gateway_http_api"]),
                     fmt(b["dynamodb_writes"]), fmt(b["dynamodb_reads"]), fmt(b["sqs"]), f"**{fmt(line['total_usd'])}**",
                     fmt(line["total_rest_api_usd"]), line["basis"]])
    per_op = table(["operation", "Lambda", "API GW (HTTP API)", "DynamoDB writes", "DynamoDB reads", "SQS",
                    "total, HTTP API", "total, REST API (deployed)", "measured as"], rows)
    prices = results.get("prices", {})
    price_rows = [[name, f"{item['usd']:.10g}", item["note"], item["source"]] for name, item in prices.get("items", {}).items()]
    price_table = table(["price", "USD", "what", "source"], price_rows)
    return (f"USD per million operations, Lambda arm64 with {fmt(cost.get('lambda_memory_mb'))} MB (prod stage of "
            f"`.chalice/config.json`); the platform template deploys a **{cost.get('deployed_api')}**, the headline uses "
            f"an HTTP API as the issue asks, and the REST API total is shown beside it.\n\n{per_op}\n\n"
            f"List prices, {prices.get('region')}, as of {prices.get('as_of')} (constants in `bench/cost.py`; not re-read "
            f"on the run date: this machine reaches package registries only; free tiers not deducted):\n\n{price_table}")


def _expense_table(results: dict) -> str:
    expense = results.get("expense_ratio", {})
    model, derived = expense.get("model", {}), expense.get("derived", {})
    assumptions = table(["assumption", "value"], [[key, fmt(value)] for key, value in model.items()])
    derived_table = table(["derived", "per year"], [[key, fmt(value)] for key, value in derived.items()])
    http, rest = expense.get("http_api", {}), expense.get("rest_api", {})
    result = table(["", "yearly platform cost (USD)", "yen", "expense ratio", "target", "met?"], [
        ["HTTP API (headline)", fmt(http.get("total_usd")), fmt(http.get("total_jpy")), f"{http.get('ratio', 0):.3%}",
         f"≤ {expense.get('target', 0):.0%}", met(expense.get("met"))],
        ["REST API (deployed)", fmt(rest.get("total_usd")), fmt(rest.get("total_jpy")), f"{rest.get('ratio', 0):.3%}",
         f"≤ {expense.get('target', 0):.0%}", met(rest.get("ratio", 1) <= expense.get("target", 0))],
    ])
    variable = table(["cost line (HTTP API)", "USD per year"],
                     [[key, fmt(value)] for key, value in http.get("variable_usd", {}).items()]
                     + [["CloudWatch alarms (platform.json)", fmt(http.get("alarms_usd"))],
                        ["DynamoDB storage (upper bound)", fmt(http.get("storage_upper_bound_usd"))]])
    return (f"Model municipality (every figure an assumption), at ¥{fmt(expense.get('usd_jpy'))} per dollar and "
            f"1 point = 1 yen:\n\n{assumptions}\n\n{derived_table}\n\n{variable}\n\n{result}")


def render_markdown(results: dict, sections: dict[str, str]) -> str:
    def block(key: str) -> str:
        return analysis_block(key, sections, results)

    machine, goals = results["machine"], results["goals"]
    ops = results["operations"]
    payment = ops.get("payment", {})
    repeat = ops.get("payment_repeat", {})
    cold, contention = results.get("cold_start", {}), results.get("contention", {})
    bulk, drain, card = results.get("bulk_grant", {}), results.get("queue_drain", {}), results.get("card_tap", {})
    expense = results.get("expense_ratio", {})
    linear = bulk.get("time_ratio")
    card_p50 = card.get("p50_ms")
    glance = table(["figure", "goal", "measured", "met?"], [
        ["payment p50 ÷ its floor p50", f"≤ {fmt(goals['payment_ratio_p50'])}×", f"{fmt(payment.get('ratio_p50'))}×",
         met(payment.get("ratio_p50") <= goals["payment_ratio_p50"]) if payment.get("ratio_p50") else met(None)],
        ["repeat payment (same container) p50 ÷ its floor p50", f"≤ {fmt(goals['payment_ratio_p50'])}×",
         f"{fmt(repeat.get('ratio_p50'))}×",
         met(repeat.get("ratio_p50") <= goals["payment_ratio_p50"]) if repeat.get("ratio_p50") else met(None)],
        ["payment WCU", f"≤ {fmt(goals['payment_wcu'])}", fmt(payment.get("wcu")), met(payment.get("wcu", 99) <= goals["payment_wcu"])],
        ["payment RCU", f"≤ {fmt(goals['payment_rcu'])}", fmt(payment.get("rcu")), met(payment.get("rcu", 99) <= goals["payment_rcu"])],
        ["`import app` ÷ `import boto3`", f"≤ {fmt(goals['cold_start_ratio'])}×", f"{fmt(cold.get('ratio'))}×",
         met(cold.get("ratio") <= goals["cold_start_ratio"]) if cold.get("ratio") else met(None)],
        ["64 concurrent payments: overdraft", "none", {True: "none", False: "OVERDRAFT"}.get(contention.get("zero_overdraft"), "—"),
         met(contention.get("zero_overdraft")) if contention else met(None)],
        ["64 concurrent payments: every request answered", "all 64, both runs",
         "yes" if contention.get("completed") else "no (see §4)", met(contention.get("completed")) if contention else met(None)],
        ["bulk grant time, largest ÷ smallest", f"≈ size ratio ({fmt(bulk.get('size_ratio'))}×, linear)",
         f"{fmt(linear)}×" if linear else f"{fmt(bulk.get('time_ratio_extrapolated'))}× (extrapolated)",
         met(bulk.get("linear")) if bulk.get("linear") is not None else met(None)],
        ["card tap to approval p50", f"≤ {fmt(goals['card_tap_p50_ms'])} ms", f"{fmt(card_p50)} ms" if card_p50 else card.get("skipped", "—"),
         met(card_p50 <= goals["card_tap_p50_ms"]) if card_p50 else met(None)],
        ["expense ratio (model municipality)", f"≤ {expense.get('target', 0):.0%}", f"{expense.get('ratio', 0):.4%}" if expense else "—",
         met(expense.get("met")) if expense else met(None)],
    ])
    machine_line = (f"{machine.get('cpu_model')}, {machine.get('cores')} cores, {fmt(machine.get('memory_gib'))} GiB, "
                    f"Python {machine.get('python')}, {machine.get('os')}")
    out = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench.run`) from [`bench/results/latest.json`](bench/results/latest.json); "
        "no figure in this file is typed by hand. The prose under each *What limits it* comes from "
        "[`bench/analysis.md`](bench/analysis.md) and cites figures only through placeholders filled from latest.json.",
        "",
        f"- **Date**: {results['date']} · **run time**: {fmt(results.get('run_seconds', 0) / 60, 1)} min",
        f"- **Machine**: {machine_line}",
        f"- **Load average** (other processes share this machine): {machine.get('load_average_start')} at the start, "
        f"{machine.get('load_average_end')} at the end",
        f"- **Code**: commit {lookup(results, 'code.commit')}"
        + (f", with uncommitted changes in {', '.join(f'`{path}`' for path in lookup(results, 'code.uncommitted_app_changes'))}"
           if lookup(results, "code.uncommitted_app_changes") else ""),
        f"- **Sections run**: {', '.join(results.get('sections_run', []))}"
        + (f" · **failed**: {'; '.join(f'{name} ({why})' for name, why in results['failures'].items())}"
           if results.get("failures") else ""),
        "",
        "![p50 of each operation against its floor, and its capacity units](bench/results/chart.png)",
        "",
        "## Goals at a glance",
        "",
        glance,
        "",
        block("summary"),
        "",
        "## 1. Operations against their floor",
        "",
        "In-process against DynamoDB Local (in memory), one client, sequential, "
        f"{fmt(payment.get('iterations'))} measured iterations after {fmt(payment.get('warmup'))} warm-up ones. The floor is "
        "the operation's own `TransactWriteItems` captured from the wire and replayed with a bare boto3 client on fresh "
        "keys (same tables, item shapes and sizes, condition expressions; the items its conditions need stored "
        "beforehand), exactly one round trip, measured interleaved with the operation.",
        "",
        _operations_table(results),
        "",
        "\n".join(f"- `{name}`: {ops[name]['description']}" for name in OPERATION_ORDER if name in ops),
        "",
        "Where a payment's time goes (one iteration, the most common call sequence):",
        "",
        _calls_table(payment),
        "",
        f"Measured: {fmt(payment.get('dynamodb_p50_ms'))} ms of the p50 inside DynamoDB calls, "
        f"{fmt(payment.get('outside_dynamodb_p50_ms'))} ms in Python outside them (certificate check, building the "
        "transaction, parsing).",
        "",
        "### What limits it",
        "",
        block("payment"),
        "",
        block("operations"),
        "",
        "## 2. Consumed capacity and cost",
        "",
        "Capacity as DynamoDB Local reports it (`ReturnConsumedCapacity=INDEXES` on every call, summed over every "
        "response). *RCU min*: the same items read once each, eventually consistent (½ unit per started 4 KB). "
        "*WCU floor*: what the bare replay of the same transaction consumed.",
        "",
        _capacity_table(results),
        "",
        "### What limits it",
        "",
        block("capacity"),
        "",
        "### Cost per million operations",
        "",
        _cost_tables(results),
        "",
        block("cost"),
        "",
        "### Expense ratio",
        "",
        _expense_table(results),
        "",
        block("expense_ratio"),
        "",
        "## 3. Cold start",
        "",
        table(["figure", "goal", "measured", "met?"], [
            ["`import app` (median of fresh interpreters)", "", f"{fmt(cold.get('import_app_ms'))} ms", ""],
            ["`import boto3` alone", "", f"{fmt(cold.get('import_boto3_ms'))} ms", ""],
            ["ratio", f"≤ {fmt(goals['cold_start_ratio'])}×", f"{fmt(cold.get('ratio'))}×",
             met(cold.get("ratio") <= goals["cold_start_ratio"]) if cold.get("ratio") else met(None)],
            ["`import app` + payment path modules", "", f"{fmt(cold.get('import_payment_path_ms'))} ms "
             f"({fmt(cold.get('payment_path_ratio'))}× boto3)", ""],
            ["from source (no byte code): app / boto3", "", f"{fmt(lookup(cold, 'source.import_app_ms'))} ms / "
             f"{fmt(lookup(cold, 'source.import_boto3_ms'))} ms ({fmt(lookup(cold, 'source.ratio'))}×)", ""],
            ["`import app` loads boto3 / PynamoDB", "no", f"{fmt(cold.get('app_imports_boto3'))} / {fmt(cold.get('app_imports_pynamodb'))}",
             met(not cold.get("app_imports_boto3") and not cold.get("app_imports_pynamodb")) if cold else met(None)],
        ]),
        "",
        f"{fmt(cold.get('samples'))} fresh interpreters of each, alternating, started with an empty environment "
        "(the app needs no variable at import), byte code compiled beforehand into a private cache; the *from source* row "
        "uses an empty cache each time, as a Lambda package without `.pyc` files does.",
        "",
        "### What limits it",
        "",
        block("cold_start"),
        "",
        "## 4. Contention",
        "",
        _contention_table(contention),
        "",
        "### What limits it",
        "",
        block("contention"),
        "",
        "## 5. Scale",
        "",
        "### Bulk grant",
        "",
        _bulk_table(bulk),
        "",
        bulk.get("note", ""),
        "",
        block("bulk_grant"),
        "",
        "### Partner conversion queue drain",
        "",
        table(["messages", "consumers", "messages/s", "handler-bound messages/s", "handler ms per batch of 10 (p50)",
               "handler ms per message",
               "of which DynamoDB", "of which the result sent to SQS", "poller's SQS calls ms per message",
               "DynamoDB round trips per message", "RCU / WCU per message", "credited"], [[
            fmt(drain.get("messages")), fmt(drain.get("consumers")), f"**{fmt(drain.get('messages_per_s'))}**",
            fmt(drain.get("handler_bound_messages_per_s")),
            fmt(drain.get("handler_ms_per_batch_p50")), fmt(drain.get("handler_ms_per_message")),
            fmt(drain.get("dynamodb_ms_per_message")), fmt(drain.get("result_send_ms_per_message")),
            fmt(drain.get("poller_sqs_ms_per_message")), fmt(drain.get("dynamodb_round_trips_per_message")),
            f"{fmt(drain.get('rcu_per_message'))} / {fmt(drain.get('wcu_per_message'))}", fmt(drain.get("credited"))]]),
        "",
        "*Handler-bound*: messages ÷ time spent inside the app's SQS handler, i.e. what one consumer does when receiving "
        "and deleting cost nothing (on AWS the event source mapping polls outside the function); the end-to-end rate also "
        "pays the poller's receive and delete calls to moto's SQS server.",
        "",
        block("queue_drain"),
        "",
        "## 6. Card path: tap to approval",
        "",
        _card_table(card, goals),
        "",
        block("card_tap"),
        "",
    ]
    return "\n".join(out)


def _contention_table(contention: dict) -> str:
    if not contention:
        return "_Not run._"
    rows = []
    for key, label in (("one_wallet", "64 payments, ONE wallet"), ("many_wallets", "64 payments, 64 wallets")):
        run = contention.get(key) or {}
        if "outcomes" not in run:
            rows.append([label] + ["—"] * 12 + [f"not measured: {run.get('error', 'not run')}"])
            continue
        funded = run.get("funded", run.get("funded_each"))
        rows.append([label, fmt(funded) + (" each" if key == "many_wallets" else ""), fmt(run["posted"]),
                     fmt(run["refused"] - run.get("unfinished", 0)), fmt(run.get("unfinished", 0)),
                     ", ".join(f"{k}: {v}" for k, v in run["outcomes"].items()), fmt(run["ops_per_s"]), fmt(run["p50_ms"]),
                     fmt(run["p99_ms"]), fmt(run["attempts_per_payment"]), fmt(run["final_balance_total"]),
                     fmt(run["funded_total"] - run["posted_total"]), fmt(run["min_balance"]),
                     met(not run["overdraft"]) + (" (audited while threads still ran)" if run.get("audited_while_running") else "")])
    return table(["run", "funded (pt)", "posted", "refused", "unfinished at the deadline", "answers", "ops/s", "p50 ms",
                  "p99 ms", "transactions per payment", "final balance", "funded − posted", "lowest balance",
                  "no overdraft?"], rows)


def _bulk_table(bulk: dict) -> str:
    sizes = bulk.get("sizes", {})
    if not sizes:
        return "_Not run._"
    rows = []
    for size, run in sizes.items():
        rows.append([fmt(int(size)), fmt(run["workers"]), fmt(run["csv_mib"]), fmt(run["upload_s"]), fmt(run["posting_s"]),
                     fmt(run["total_s"]), f"**{fmt(run['rows_per_s'])}**", fmt(run["posted_rows"]),
                     "yes" if run.get("completed", True) else f"no (stopped at the {fmt(run.get('budget_s'))} s budget)",
                     fmt(run["round_trips_per_row"]), fmt(run.get("worker_ms_per_row")), fmt(run.get("dynamodb_ms_per_row")),
                     f"{fmt(run['rcu_per_row'])} / {fmt(run['wcu_per_row'])}"])
    body = table(["rows", "workers", "CSV MiB", "upload s", "posting s", "total s", "rows/s", "rows posted", "completed",
                  "round trips per row", "worker ms per row", "of which DynamoDB", "RCU / WCU per row"], rows)
    ratio = (f"Time ratio largest ÷ smallest: **{fmt(bulk.get('time_ratio'))}×** for a size ratio of "
             f"{fmt(bulk.get('size_ratio'))}× (linear growth gives the size ratio; up to {fmt(bulk.get('linear_tolerance', 0) * 100)}% above it "
             f"counts as linear: {fmt(bulk.get('linear'))}).") if bulk.get("time_ratio") else (
             f"The largest run did not finish within its budget; from the measured rates its time would be "
             f"{fmt(bulk.get('time_ratio_extrapolated'))}× the smallest's for a size ratio of {fmt(bulk.get('size_ratio'))}×.")
    return body + "\n\n" + ratio


def _card_table(card: dict, goals: dict) -> str:
    if not card or card.get("skipped"):
        return f"_Not measured: {card.get('skipped', 'not run')}._"
    return table(["figure", "goal", "measured", "met?"], [
        ["tap → approval p50 (PIN payment)", f"≤ {fmt(goals['card_tap_p50_ms'])} ms", f"{fmt(card['p50_ms'])} ms",
         met(card["p50_ms"] <= goals["card_tap_p50_ms"])],
        ["tap → approval p95", "", f"{fmt(card['p95_ms'])} ms", ""],
        ["of which the signed HTTP POST /v1/payments (p50)", "", f"{fmt(card['http_p50_ms'])} ms", ""],
        ["card alone, same APDUs, no HTTP (p50)", "", f"{fmt(card['card_only_p50_ms'])} ms", ""],
    ] + ([["the outbox written before and cleared after the request, fsync'd (p50)", "", f"{fmt(card['outbox_p50_ms'])} ms", ""]]
         if "outbox_p50_ms" in card else [])
      + [["the rest (p50 of the tap minus the parts above)", "", f"{fmt(card.get('other_p50_ms'))} ms", ""],
         ["samples", "", fmt(card["iterations"]), ""]]) + f"\n\nPath: {card.get('path')}."


def write_report(results: dict) -> None:
    svg = chart_svg(results)
    CHART_SVG.write_text(svg, encoding="utf-8")
    why_not = render_png(svg, CHART)
    if why_not:
        print(f"[bench] chart.png not rendered ({why_not}); chart.svg written", file=sys.stderr)
    else:
        CHART_SVG.unlink(missing_ok=True)
    BENCHMARKS.write_text(render_markdown(results, read_analysis()), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    source = Path(arguments[0]) if arguments else LATEST
    write_report(json.loads(source.read_text(encoding="utf-8")))
    print(f"wrote {BENCHMARKS.relative_to(REPOSITORY_ROOT)} and {CHART.relative_to(REPOSITORY_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
