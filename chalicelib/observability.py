"""Structured logs, metrics and traces with Powertools, imported on first use so cold start stays low.

`http_middleware` gives every request a request id, logs one JSON line when it ends (method, route,
status, duration, error code, terminal or staff id) and publishes the metrics the request counted:
`PaymentsPosted`, `GrantsPosted`, `RefundsPosted`, and `Refusals` with the error code as a dimension.
Metrics go out as CloudWatch embedded metric format on standard output, so they cost no API call.

`tracing_middleware` wraps every Lambda entry (API requests, SQS batches, scheduled jobs, the stream
consumer and the custom resource) in a Powertools Tracer subsegment, with the AWS SDK calls under it.
X-Ray samples (its default rule; the template turns active tracing on). The Tracer and the X-Ray SDK are
imported by the first invocation, never by `import app`; locally and in tests POWERTOOLS_TRACE_DISABLED
turns them into pass-throughs.
"""
from __future__ import annotations

import functools
import time

# Not the Chalice app name: Chalice configures a plain handler on that logger, which would print every line twice.
SERVICE_NAME = "points-api"
NAMESPACE = "MunicipalPointCloud"


@functools.lru_cache(maxsize=1)
def get_logger():
    from aws_lambda_powertools import Logger

    return Logger(service=SERVICE_NAME)


@functools.lru_cache(maxsize=1)
def get_tracer():
    from aws_lambda_powertools import Tracer

    # Only botocore (DynamoDB, SQS, Secrets Manager calls): patching every library would import them all,
    # and an HTTP trace of register_tenant's answer would record its pre-signed URL.
    return Tracer(service=SERVICE_NAME, patch_modules=("botocore",))


# Subsegment names by Chalice event class: one per kind of entry, never anything a request carries.
_ENTRY_NAMES = {"Request": "api_request", "SQSEvent": "sqs_batch", "CloudWatchEvent": "scheduled_job",
                "LambdaFunctionEvent": "lambda_function"}


def tracing_middleware(event, get_response):
    """Trace one Lambda entry of any kind (registered for 'all' event types in app.py)."""
    from chalice.app import Request

    tracer = get_tracer()
    kind = type(event).__name__
    context = event.lambda_context if isinstance(event, Request) else event.context

    def entry(_event, _context):
        if isinstance(event, Request):
            # The route template (requestContext.resourcePath), never the path: paths carry MyKey IDs.
            tracer.put_annotation(key="route", value=f"{event.method} {event.path}")
        return get_response(event)

    entry.__name__ = _ENTRY_NAMES.get(kind, kind)
    # Responses stay out of the traces: they hold balances, MyKey IDs and session tokens.
    return tracer.capture_lambda_handler(entry, capture_response=False)(event, context)


@functools.lru_cache(maxsize=1)
def get_metrics():
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=NAMESPACE, service=SERVICE_NAME)


_pending_counts: list[str] = []


def count(metric_name: str) -> None:
    """Count one business event in the current request; published when the request ends."""
    _pending_counts.append(metric_name)


def count_now(metric_name: str, **dimensions: str) -> None:
    """Count one event outside an HTTP request (a queue record), published at once with its dimensions."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=metric_name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        for name, value in dimensions.items():
            metric.add_dimension(name=name, value=value)


def _publish(error_code: str | None) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    metrics = get_metrics()
    for name in _pending_counts:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    _pending_counts.clear()
    if error_code:
        with single_metric(name="Refusals", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
            metric.add_dimension(name="code", value=error_code)
    if metrics.metric_set:
        metrics.flush_metrics()


def http_middleware(event, get_response):
    from chalicelib.api.http import request_id

    started = time.perf_counter()
    _pending_counts.clear()
    identifier = request_id(event)
    logger = get_logger()
    logger.set_correlation_id(identifier)
    response = get_response(event)
    error_code = event.context.get("error_code")
    logger.info(
        "request",
        extra={
            "request_id": identifier,
            "method": event.method,
            "route": event.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "error_code": error_code,
            "terminal_id": event.context.get("terminal_id"),
            "staff_id": event.context.get("staff_id"),
            "partner_id": event.context.get("partner_id"),
        },
    )
    _publish(error_code)
    response.headers["X-Request-Id"] = identifier
    return response
