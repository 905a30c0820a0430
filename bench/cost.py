"""Section 2 (cost): cost per million operations at list prices, and the expense ratio of a model municipality.

Every price is a constant here, once, with where it is published. Every quantity comes from the run
(`latest.json`): Lambda duration from the measured whole-request time, DynamoDB request units from the
consumed capacity DynamoDB Local reported (on-demand bills one read request unit per 4 KB strongly
consistent read, half for an eventually consistent one, one write request unit per 1 KB written and two
in a transaction — the same units), SQS requests from what the handlers do per message. The Lambda
memory is read from `.chalice/config.json` (prod stage) and the API type from
`infrastructure/platform.json`.

The model municipality's figures are assumptions, stated in `MODEL_MUNICIPALITY` and repeated in
`latest.json` and BENCHMARKS.md.
"""
from __future__ import annotations

import json
import math

from bench.stats import rounded
from tools.localcloud.processes import REPOSITORY_ROOT

# ap-northeast-1 (Tokyo) list prices, USD. The benchmark machine reaches package registries only, so these
# were not re-read on the run date: they are the published figures as of PRICES_AS_OF (DynamoDB's after
# its on-demand price cut of 2024-11-01). Free tiers are not deducted. Re-check them before quoting a bill.
PRICES_AS_OF = "2025-06"
PRICES = {
    "lambda_arm64_per_gb_second": {
        "usd": 0.0000133334, "source": "https://aws.amazon.com/lambda/pricing/",
        "note": "Arm, first 7.5 billion GB-seconds a month"},
    "lambda_per_request": {"usd": 0.20 / 1e6, "source": "https://aws.amazon.com/lambda/pricing/", "note": "$0.20 per million"},
    "api_gateway_http_api_per_request": {
        "usd": 1.29 / 1e6, "source": "https://aws.amazon.com/api-gateway/pricing/",
        "note": "HTTP API, first 300 million a month, $1.29 per million (Tokyo)"},
    "api_gateway_rest_api_per_request": {
        "usd": 4.25 / 1e6, "source": "https://aws.amazon.com/api-gateway/pricing/",
        "note": "REST API, first 333 million a month, $4.25 per million (Tokyo)"},
    "dynamodb_per_write_request_unit": {
        "usd": 0.7135 / 1e6, "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "note": "on-demand, Standard table class, $0.7135 per million WRU (Tokyo)"},
    "dynamodb_per_read_request_unit": {
        "usd": 0.1427 / 1e6, "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "note": "on-demand, Standard table class, $0.1427 per million RRU (Tokyo)"},
    "dynamodb_storage_per_gb_month": {
        "usd": 0.285, "source": "https://aws.amazon.com/dynamodb/pricing/on-demand/", "note": "Standard table class (Tokyo)"},
    "sqs_standard_per_request": {
        "usd": 0.40 / 1e6, "source": "https://aws.amazon.com/sqs/pricing/",
        "note": "standard queue, per 64 KB request, $0.40 per million"},
    "cloudwatch_alarm_per_month": {
        "usd": 0.10, "source": "https://aws.amazon.com/cloudwatch/pricing/", "note": "standard-resolution metric alarm"},
}
USD_JPY = 150.0  # assumption: yen per dollar, for the expense ratio (1 point = 1 yen)

# The model municipality, sized like 長浜市 (Nagahama, Shiga). Every figure is an assumption.
MODEL_MUNICIPALITY = {
    "name": "長浜市-sized model municipality",
    "residents": 115_000,
    "participation": 0.30,
    "grants_per_participant_per_year": 3,
    "points_per_grant": 1_000,
    "share_of_grants_by_bulk_csv": 0.8,
    "payments_per_participant_per_year": 12,
    "refunds_per_payment": 0.01,
    "converting_participants_share": 0.10,
    "conversions_per_converting_participant_per_year": 4,
    "tenants_sharing_fixed_costs": 1,
    "note": "fixed platform costs (alarms) are charged wholly to this one municipality: the worst case of a "
            "platform with a single tenant; CloudWatch Logs ingestion, data transfer and backups are not counted",
}
TARGET_EXPENSE_RATIO = 0.10  # original specification: the shared cloud's system cost under 10% (docs/ARCHITECTURE.md#what-it-is)


def lambda_memory_mb() -> int:
    config = json.loads((REPOSITORY_ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    return int(config["stages"]["prod"]["lambda_memory_size"])


def deployed_api_type() -> str:
    template = json.loads((REPOSITORY_ROOT / "infrastructure" / "platform.json").read_text(encoding="utf-8"))
    types = {resource.get("Type") for resource in template.get("Resources", {}).values()}
    if "AWS::ApiGateway::RestApi" in types:
        return "REST API"
    if "AWS::ApiGatewayV2::Api" in types:
        return "HTTP API"
    return "unknown"


def alarm_count() -> int:
    template = json.loads((REPOSITORY_ROOT / "infrastructure" / "platform.json").read_text(encoding="utf-8"))
    return sum(1 for resource in template.get("Resources", {}).values() if resource.get("Type") == "AWS::CloudWatch::Alarm")


def _price(name: str) -> float:
    return PRICES[name]["usd"]


def _line(invocation_ms: float, invocations: float, api_requests: float, rru: float, wru: float, sqs_requests: float,
          memory_mb: int, basis: str) -> dict:
    """One operation's cost. `invocations` Lambda invocations per operation (a share, when one invocation
    serves many operations), each billed for `invocation_ms` rounded up to the millisecond."""
    parts = {
        "lambda_duration": invocations * math.ceil(invocation_ms) / 1000 * memory_mb / 1024
        * _price("lambda_arm64_per_gb_second"),
        "lambda_requests": invocations * _price("lambda_per_request"),
        "api_gateway_http_api": api_requests * _price("api_gateway_http_api_per_request"),
        "dynamodb_writes": wru * _price("dynamodb_per_write_request_unit"),
        "dynamodb_reads": rru * _price("dynamodb_per_read_request_unit"),
        "sqs": sqs_requests * _price("sqs_standard_per_request"),
    }
    rest = api_requests * _price("api_gateway_rest_api_per_request")
    total = sum(parts.values())
    return {
        "total_usd": rounded(total * 1e6, 3),
        "total_rest_api_usd": rounded((total - parts["api_gateway_http_api"] + rest) * 1e6, 3),
        "breakdown_usd": {name: rounded(value * 1e6, 4) for name, value in parts.items()},
        "quantities_per_operation": {
            "lambda_invocation_ms": rounded(invocation_ms, 2), "lambda_invocations": rounded(invocations, 4),
            "api_requests": api_requests, "read_request_units": rounded(rru, 3), "write_request_units": rounded(wru, 3),
            "sqs_requests": rounded(sqs_requests, 4)},
        "basis": basis,
    }


def per_million(results: dict) -> dict:
    memory_mb = lambda_memory_mb()
    operations = results["operations"]
    lines: dict[str, dict] = {}

    def http_line(name: str, fallback: str, route: str) -> dict:
        measured = name in operations
        source = operations[name] if measured else operations[fallback]
        basis = f"{route}: whole request measured in-process ({name})" if measured else f"{route}: service only ({fallback})"
        return _line(source["p50_ms"], 1, 1, source["rcu"], source["wcu"], 0, memory_mb, basis)

    lines["payment"] = http_line("payment_http", "payment", "POST /v1/payments")
    lines["refund"] = http_line("refund_http", "refund", "POST /v1/payments/{id}/refunds")
    lines["grant"] = http_line("grant_http", "grant", "POST /v1/municipalities/{code}/grants")
    bulk = (results.get("bulk_grant") or {}).get("sizes") or {}
    if bulk:
        largest = bulk[max(bulk, key=int)]
        chunk = largest["chunk_rows"]
        # Per row: a share of one chunk consumer invocation (billed for the measured chunk time) and of its
        # SQS requests (a tenth of the batched send, the receive, the delete).
        lines["grant_bulk_row"] = _line(
            largest["chunk_p50_s"] * 1000, 1 / chunk, 0, largest["rcu_per_row"], largest["wcu_per_row"],
            (0.1 + 1 + 1) / chunk, memory_mb, f"one row of a {largest['rows']:,}-row CSV posted by the chunk consumer "
            f"({chunk} rows per invocation)")
    drain = results.get("queue_drain") or {}
    if drain.get("delivered"):
        batch = drain["batch_size"]
        # Per message: the partner's send, a tenth of the batch's receive and delete, the result sent back.
        lines["conversion"] = _line(
            drain["handler_ms_per_batch_p50"], 1 / batch, 0, drain["rcu_per_message"], drain["wcu_per_message"],
            1 + 2 / batch + 1, memory_mb, f"one partner message, in batches of {batch} through the SQS handler")
    listing = results.get("projection") or {}
    if listing.get("transfers"):
        batch = listing["batch_size"]
        # Per transfer: its two list entries, and a share of the stream consumer's invocation.
        lines["transfer_listing"] = _line(
            listing["ms_per_transfer"] * batch, 1 / batch, 0, 0, listing["wcu_per_transfer"], 0, memory_mb,
            f"the list entries of one transfer, written by project_transfers from the stream in batches of {batch}")
    return {"lambda_memory_mb": memory_mb, "lambda_architecture": "arm64", "deployed_api": deployed_api_type(),
            "headline_api": "HTTP API", "per_million": lines}


def expense_ratio(results: dict, costs: dict) -> dict:
    model = MODEL_MUNICIPALITY
    participants = model["residents"] * model["participation"]
    grants = participants * model["grants_per_participant_per_year"]
    points = grants * model["points_per_grant"]
    payments = participants * model["payments_per_participant_per_year"]
    refunds = payments * model["refunds_per_payment"]
    conversions = participants * model["converting_participants_share"] * model["conversions_per_converting_participant_per_year"]
    lines = costs["per_million"]
    bulk_share = model["share_of_grants_by_bulk_csv"] if "grant_bulk_row" in lines else 0.0
    volumes = {"payment": payments, "refund": refunds, "grant": grants * (1 - bulk_share),
               "grant_bulk_row": grants * bulk_share, "conversion": conversions}

    def yearly(api: str) -> dict:
        key = "total_usd" if api == "http" else "total_rest_api_usd"
        variable = {name: volume * lines[name][key] / 1e6 for name, volume in volumes.items() if name in lines and volume}
        if "transfer_listing" in lines:
            # Every movement is listed once from the stream (payments, refunds, grants, conversions).
            variable["transfer_listing"] = sum(volumes.values()) * lines["transfer_listing"]["total_usd"] / 1e6
        alarms = alarm_count() * _price("cloudwatch_alarm_per_month") * 12 / model["tenants_sharing_fixed_costs"]
        transfer_bytes = (results.get("operations", {}).get("payment", {}).get("transfer_item_bytes") or 1024)
        transfers = payments + refunds + grants + conversions
        # Upper bound: a full year's transfer records stored all year, each in the table and its two list copies.
        storage = transfers * transfer_bytes * 3 / 1e9 * _price("dynamodb_storage_per_gb_month") * 12
        total = sum(variable.values()) + alarms + storage
        return {"variable_usd": {name: rounded(value, 4) for name, value in variable.items()},
                "alarms_usd": rounded(alarms, 2), "storage_upper_bound_usd": rounded(storage, 4),
                "total_usd": rounded(total, 2), "total_jpy": rounded(total * USD_JPY, 0),
                "ratio": total * USD_JPY / points}

    http, rest = yearly("http"), yearly("rest")
    return {
        "model": model,
        "derived": {"participants": round(participants), "grants_per_year": round(grants), "points_granted_per_year": round(points),
                    "payments_per_year": round(payments), "refunds_per_year": round(refunds),
                    "conversions_per_year": round(conversions)},
        "usd_jpy": USD_JPY,
        "http_api": {**http, "ratio": float(f"{http['ratio']:.3g}")},
        "rest_api": {**rest, "ratio": float(f"{rest['ratio']:.3g}")},
        "ratio": float(f"{http['ratio']:.3g}"),
        "target": TARGET_EXPENSE_RATIO,
        "met": http["ratio"] <= TARGET_EXPENSE_RATIO,
    }


def prices() -> dict:
    return {"as_of": PRICES_AS_OF, "region": "ap-northeast-1", "currency": "USD", "items": PRICES}
