"""The platform stack's CloudFormation template, generated from the code so the two cannot drift.

    python -m tools.infrastructure            # writes infrastructure/platform.json (make infrastructure-templates)
    python -m tools.infrastructure --check    # exits 1 if the committed file differs from what the code gives

Everything deployable is read from the code, not restated:

- the DynamoDB tables are `chalicelib.storage.schema.cloudformation_tables()` verbatim (the same resources
  as `infrastructure/tables.json`);
- one Lambda function per Chalice handler, discovered from the app object (`import app; app.app`): the
  API function for the routes, every `on_sqs_message` consumer, every `schedule` job and every pure
  `lambda_function` (the onboarding custom resource). Handler strings are Chalice's own
  (`handler_string`), memory, timeout, reserved concurrency and environment are Chalice's scoped
  `.chalice/config.json` settings for the `prod` stage (`stages.prod.lambda_functions.<name>` overrides);
- the API is a REST API whose body is Chalice's own swagger (`CFNSwaggerGenerator`, what
  `chalice package` deploys), so API Gateway hands Chalice the event it routes by
  (`requestContext.resourcePath` = the route template, `pathParameters`);
- queues, dead-letter queues and event source mappings come from the `SQSEventConfig`s (queue name,
  batch size, maximum concurrency), with `ReportBatchItemFailures`, which Chalice never sets;
- hardening (tests/unit/test_template_hardening.py): an on-failure queue with an alarm for every
  asynchronously invoked function (jobs, the custom resource), X-Ray active tracing (`xray` in the stage),
  a WAFv2 web ACL on the API stage, and the card-hash secret's id (never its value) only for the
  functions that hash certificate serials, with the right to read that one secret.

A handler kind the generator does not know (S3, SNS, websockets, authorizers...) stops it with an error
instead of being left out of the template.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_TEMPLATE = ROOT / "infrastructure" / "platform.json"
CHALICE_CONFIG = ROOT / ".chalice" / "config.json"

CHALICE_STAGE = "prod"
RUNTIME = "python3.12"
# Graviton: about 20% cheaper per GB-second than x86_64 for the same memory, and every dependency in
# requirements.txt ships manylinux2014_aarch64 wheels (scripts/package-lambda.sh builds for this).
ARCHITECTURE = "arm64"
# Chalice names the function that serves the routes `api_handler`; its swagger generator points every
# integration at the resource `APIHandler` (`${APIHandler.Arn}`), so the logical id is fixed too.
API_FUNCTION_NAME = "api_handler"
API_LOGICAL_ID = "APIHandler"
API_HANDLER = "app.app"

# SQS guidance for Lambda consumers: visibility timeout at least six times the function timeout.
VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT = 6
MAX_RECEIVE_COUNT = 5
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600
# Longer than the source queue's retention: a standard queue's message keeps its first enqueue time
# when it moves to the dead-letter queue, so the DLQ must outlive it.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600

# Queues the code sends to by name at run time (partner result queues, operator request queues): they
# must be named `points-…` in the platform's account and region.
RUNTIME_QUEUE_PATTERN = "points-*"
# Who sends where (the code cannot tell a generator which queues it writes to).
SENDS_TO_RUNTIME_QUEUES = frozenset({API_FUNCTION_NAME, "handle_partner_conversions"})

# Plain Lambda functions that consume a table's stream (Chalice's on_dynamodb_record wants the stream ARN
# at import time): function name -> the table's base name. Wired with ReportBatchItemFailures, bisection
# and an on-failure SQS destination, like the queues' consumers.
STREAM_CONSUMERS = {"project_transfers": "transfers"}
STREAM_BATCH_SIZE = 100
STREAM_MAXIMUM_RETRY_ATTEMPTS = 10
# An alarm when the projection falls a minute behind: reports and histories would be missing transfers.
STREAM_ITERATOR_AGE_ALARM_MILLISECONDS = 60_000
DYNAMODB_STREAM_ACTIONS = ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                           "dynamodb:ListStreams")

# DynamoDB rights on the tables: per function, from the declaration in tools/function_access.py.
SQS_CONSUME_ACTIONS = ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage")
SQS_SEND_ACTIONS = ("sqs:GetQueueUrl", "sqs:SendMessage")

# An IAM role's inline policies may hold 10,240 characters in all (whitespace not counted).
ROLE_POLICY_SIZE_LIMIT = 10_240
# CloudWatch: an alarm on a metric math expression may read at most 10 metrics.
ALARM_METRICS_LIMIT = 10

ALARMS_DOC = "docs/DEPLOYMENT.md#alarms"
# Queues and log groups go with the stack (their names are fixed, so a retained one would block a new
# stack); the tables are retained (their resources carry Retain, from chalicelib/storage/schema.py).
DELETE_WITH_STACK = {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}

# -- hardening: concurrency, failures of asynchronous invocations, tracing, WAF, the card-hash secret ----

# An SQS consumer whose decorator does not say `maximum_concurrency` runs at most this many invocations at
# once (Lambda accepts 2..1000), so no queue's burst scales out over the account's concurrency.
DEFAULT_SQS_MAXIMUM_CONCURRENCY = 5
# Reserved concurrency (stages.prod.lambda_functions.<name>.reserved_concurrency): the API keeps 200, the
# grant-batch consumer 5 and the partner-conversion consumer 10, their mappings' maximum concurrency, so a
# 100,000-row upload or a partner's month-end batch can never take the API's executions, and the API's
# burst cannot starve them. 215 reserved of the default quota of 1,000 per region leaves 785 unreserved;
# Lambda refuses any setting that leaves fewer than 100, which the generator checks against the default
# quota (docs/DEPLOYMENT.md, "Prerequisites").
DEFAULT_ACCOUNT_CONCURRENCY = 1000
MINIMUM_UNRESERVED_CONCURRENCY = 100

# EventBridge and CloudFormation invoke the jobs and the custom resource asynchronously: Lambda retries a
# failed invocation twice, then sends the event with the error to the function's failure queue, which
# alarms. An event older than an hour is not worth running any more (a job runs again on its schedule;
# CloudFormation gives up on a custom resource after an hour). The register_tenant event holds the
# FirstStaffPassword property: its failure queue is encrypted and read only by operators.
ASYNC_MAXIMUM_RETRY_ATTEMPTS = 2
ASYNC_MAXIMUM_EVENT_AGE_SECONDS = 3600

# X-Ray: Lambda traces with the default sampling rule (the first request each second, then 5%), which a
# function cannot change; API Gateway makes the same decision for requests and Lambda follows it. The
# two actions tracing needs do not support resource-level permissions, so they are granted on "*".
XRAY_ACTIONS = ("xray:PutTelemetryRecords", "xray:PutTraceSegments")

# Functions that hash with the card-hash secret: certificate serials (chalicelib/auth/cards.py through
# deps.get_card_authority) in the API's routes, and refused partner transaction ids (deps.get_hash_secret)
# in the API's partner reads and the conversion consumer; the other consumers, jobs, stream projection and
# the custom resource never do. Only these get CARD_HASH_SECRET_ID and may read the secret;
# tests/unit/test_template_hardening.py keeps the set true against the handlers' code.
READS_CARD_HASH_SECRET = frozenset({API_FUNCTION_NAME, "handle_partner_conversions"})

# WAF (regional web ACL on the API stage). Routes are Chalice route templates, checked against the app;
# a template's `{name}` matches one path segment, and the stage prefix (`/v`) may precede it.
WAF_RATE_WINDOW_SECONDS = 300
WAF_RATE_RULES = (
    # (rule name, parameter, default limit per source IP and window, what it protects, routes (method, path))
    ("StaffSignInRate", "StaffSignInRateLimit", 100, "staff sign-in",
     (("POST", "/v1/staff/sessions"),)),
    ("ResidentSignInRate", "ResidentSignInRateLimit", 300, "resident sign-in requests",
     (("POST", "/v1/resident-sessions"), ("POST", "/v1/portal/sign-in-requests"),
      ("POST", "/v1/portal/sign-in-requests/{code}/card-response"))),
    ("ChallengeRate", "ChallengeRateLimit", 300, "card challenges",
     (("POST", "/v1/challenges"),)),
)
# AWSManagedRulesCommonRuleSet blocks bodies over 8 KB (SizeRestrictions_BODY). These routes take more
# on purpose: a bulk-grant CSV (up to 4 MB, base64 in JSON) and J-LIS revocation and renewal feeds (up to
# 5 MB); every other route refuses bodies over 64 KB itself. The managed rule only counts, and a rule
# after it blocks a large body outside these routes with the 413 error body.
WAF_LARGE_BODY_ROUTES = (
    ("POST", "/v1/municipalities/{code}/grant-batches"),
    ("POST", "/v1/platform/revocation-feeds"),
    ("POST", "/v1/platform/renewal-feeds"),
)
WAF_MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
)
WAF_SIZE_RESTRICTION_LABEL = "awswaf:managed:aws:core-rule-set:SizeRestrictions_Body"
# The project's error shape ({"error": {"code", "message"}}; WAF cannot add the request id).
WAF_TOO_MANY_REQUESTS_BODY = json.dumps({"error": {
    "code": "too_many_requests",
    "message": "短い時間にリクエストが多すぎます。5分ほど待ってから、もう一度お試しください。",
}}, ensure_ascii=False)
WAF_REQUEST_TOO_LARGE_BODY = json.dumps({"error": {
    "code": "request_too_large",
    "message": "リクエストが大きすぎます。",
}}, ensure_ascii=False)


class UnsupportedHandler(Exception):
    """A Chalice handler kind this generator cannot deploy: add it here rather than leave it out."""


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    kind: str  # "api" | "sqs" | "schedule" | "stream" | "pure"
    queue: str | None = None
    stream_table: str | None = None
    batch_size: int | None = None
    batching_window: int = 0
    maximum_concurrency: int | None = None
    schedule: str | None = None
    settings: dict = field(default_factory=dict, compare=False)

    @property
    def logical_id(self) -> str:
        return API_LOGICAL_ID if self.kind == "api" else camel(self.name) + "Function"

    @property
    def base(self) -> str:
        return API_LOGICAL_ID if self.kind == "api" else camel(self.name)


def camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", name) if part)


def queue_logical_id(queue_name: str) -> str:
    return camel(queue_name.removeprefix("points-")) + "Queue"


def table_logical_id(base_name: str) -> str:
    from chalicelib.storage.schema import _logical_id

    return _logical_id(base_name)


def failure_queue_id(spec: "FunctionSpec") -> str:
    """The queue where what a function could not process ends up (stream records, asynchronous events)."""
    return camel(spec.name) + "FailuresQueue"


def _failure_queue(spec: "FunctionSpec", alarm_description: str) -> dict:
    """The function's failure queue (encrypted, kept as long as a dead-letter queue) and its depth alarm."""
    queue_id = failure_queue_id(spec)
    queue_name = "points-" + spec.name.replace("_", "-") + "-failures"
    return {
        queue_id: {
            "Type": "AWS::SQS::Queue",
            **DELETE_WITH_STACK,
            "Properties": {
                "QueueName": queue_name,
                "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
        queue_id + "DepthAlarm": _metric_alarm(
            f"{queue_name}-not-empty", alarm_description,
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": _get_att(queue_id, "QueueName")},
            statistic="Maximum",
        ),
    }


def dead_letter_queue_name(queue_name: str) -> str:
    from chalicelib.api.conversion_handlers import CONVERSION_DEAD_LETTER_QUEUE, CONVERSION_QUEUE
    from chalicelib.api.grant_batch_handlers import GRANT_BATCH_DEAD_LETTER_QUEUE, GRANT_BATCH_QUEUE

    known = {CONVERSION_QUEUE: CONVERSION_DEAD_LETTER_QUEUE, GRANT_BATCH_QUEUE: GRANT_BATCH_DEAD_LETTER_QUEUE}
    return known.get(queue_name, f"{queue_name}-dead-letters")


def chalice_app():
    import app

    return app.app


def chalice_config() -> dict:
    return json.loads(CHALICE_CONFIG.read_text(encoding="utf-8"))


def function_settings(name: str, config_from_disk: dict | None = None) -> dict:
    """What `chalice deploy --stage prod` would give this function (per-function overrides included)."""
    from chalice.config import Config

    config = Config(chalice_stage=CHALICE_STAGE, config_from_disk=chalice_config() if config_from_disk is None else config_from_disk)
    scoped = config.scope(CHALICE_STAGE, name)
    return {
        "memory": scoped.lambda_memory_size,
        "timeout": scoped.lambda_timeout,
        "reserved_concurrency": scoped.reserved_concurrency,
        "environment": dict(scoped.environment_variables),
        "tracing": bool(scoped.xray_enabled),
    }


def chalice_functions(application=None, config_from_disk: dict | None = None) -> list[FunctionSpec]:
    """One entry per Lambda function Chalice would deploy for this app, sorted by name."""
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    application = chalice_app() if application is None else application
    config_from_disk = chalice_config() if config_from_disk is None else config_from_disk
    if application.websocket_handlers or application.builtin_auth_handlers:
        raise UnsupportedHandler("websocket handlers and built-in authorizers are not in the platform template yet")
    specs: list[FunctionSpec] = []
    if application.routes:
        specs.append(FunctionSpec(API_FUNCTION_NAME, API_HANDLER, "api"))
    for source in application.event_sources:
        if type(source) is SQSEventConfig:
            if not source.queue:
                raise UnsupportedHandler(f"{source.name}: an SQS handler must name its queue (queue_arn is not supported)")
            specs.append(FunctionSpec(source.name, source.handler_string, "sqs", queue=source.queue,
                                      batch_size=source.batch_size,
                                      batching_window=source.maximum_batching_window_in_seconds or 0,
                                      maximum_concurrency=source.maximum_concurrency))
        elif type(source) is ScheduledEventConfig:
            expression = source.schedule_expression
            expression = expression if isinstance(expression, str) else expression.to_string()
            specs.append(FunctionSpec(source.name, source.handler_string, "schedule", schedule=expression))
        else:
            raise UnsupportedHandler(f"{source.name}: {type(source).__name__} handlers are not in the platform template yet")
    for function in application.pure_lambda_functions:
        if function.name in STREAM_CONSUMERS:
            specs.append(FunctionSpec(function.name, function.handler_string, "stream",
                                      stream_table=STREAM_CONSUMERS[function.name]))
        else:
            specs.append(FunctionSpec(function.name, function.handler_string, "pure"))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise UnsupportedHandler(f"two handlers share a name: {sorted(names)}")
    return [
        FunctionSpec(**{**spec.__dict__, "settings": function_settings(spec.name, config_from_disk)})
        for spec in sorted(specs, key=lambda spec: spec.name)
    ]


# -- pieces ----------------------------------------------------------------------------------------------


def _get_att(logical_id: str, attribute: str = "Arn") -> dict:
    return {"Fn::GetAtt": [logical_id, attribute]}


def _alarm(name_suffix: str, description: str, **properties: Any) -> dict:
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": {"Fn::Sub": "${AWS::StackName}-" + name_suffix},
            "AlarmDescription": f"{description} What to do: {ALARMS_DOC}",
            "AlarmActions": [{"Ref": "AlarmTopic"}],
            "OKActions": [{"Ref": "AlarmTopic"}],
            "ComparisonOperator": "GreaterThanThreshold",
            "Threshold": 0,
            "EvaluationPeriods": 1,
            "TreatMissingData": "notBreaching",
            **properties,
        },
    }


def _metric_alarm(name_suffix: str, description: str, namespace: str, metric: str, dimensions: dict,
                  statistic: str = "Sum") -> dict:
    return _alarm(
        name_suffix, description,
        Namespace=namespace, MetricName=metric, Statistic=statistic, Period=300,
        Dimensions=[{"Name": key, "Value": value} for key, value in dimensions.items()],
    )


def _table_statements(spec: FunctionSpec, tables: dict) -> list[dict]:
    """The function's DynamoDB rights, exactly as `tools/function_access.py` declares them: one statement per
    set of actions, naming the tables granted that set and the indexes the function reads (each index
    with only the actions declared for it). A function without a declaration, or a
    declaration naming a table or index the models do not have, stops the generator."""
    from tools.function_access import FUNCTION_TABLES

    if spec.name not in FUNCTION_TABLES:
        raise UnsupportedHandler(f"{spec.name}: declare the tables it uses in tools/function_access.py")
    resources: dict[tuple[str, ...], list] = {}
    for base_name, table_access in sorted(FUNCTION_TABLES[spec.name].items()):
        logical_id = table_logical_id(base_name)
        if logical_id not in tables:
            raise ValueError(f"{spec.name}: tools/function_access.py names {base_name!r}, which is no table")
        indexes = {index["IndexName"] for index in tables[logical_id]["Properties"].get("GlobalSecondaryIndexes", [])}
        if not table_access.indexes <= indexes:
            raise ValueError(f"{spec.name}: {base_name} has no index {sorted(table_access.indexes - indexes)}")
        if table_access.actions:  # a function may read only an index of a table
            resources.setdefault(tuple(sorted(table_access.actions)), []).append(_get_att(logical_id))
        for index in sorted(table_access.indexes):
            actions = tuple(sorted(action for name, action in table_access.index_actions if name == index))
            resources.setdefault(actions, []).append({"Fn::Sub": "${%s.Arn}/index/%s" % (logical_id, index)})
    return [
        {
            "Sid": "Tables" + "".join(action.removesuffix("Item") for action in actions),
            "Effect": "Allow",
            "Action": ["dynamodb:" + action for action in actions],
            "Resource": arns,
        }
        for actions, arns in sorted(resources.items())
    ]


def _runtime_queue_arn() -> dict:
    return {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + RUNTIME_QUEUE_PATTERN}


def _role(spec: FunctionSpec, tables: dict, api_sends_to: list[str]) -> dict:
    statements: list[dict] = [
        {
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": _get_att(spec.base + "LogGroup"),
        },
        *_table_statements(spec, tables),
    ]
    if spec.stream_table:
        statements.append({
            "Sid": "ReadOwnStream",
            "Effect": "Allow",
            "Action": list(DYNAMODB_STREAM_ACTIONS),
            "Resource": _get_att(table_logical_id(spec.stream_table), "StreamArn"),
        })
        statements.append({
            "Sid": "SendFailedRecords",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": _get_att(failure_queue_id(spec)),
        })
    if spec.queue:
        statements.append({
            "Sid": "ConsumeOwnQueue",
            "Effect": "Allow",
            "Action": list(SQS_CONSUME_ACTIONS),
            "Resource": _get_att(queue_logical_id(spec.queue)),
        })
    send_to: list = []
    if spec.kind == "api":
        send_to.extend(_get_att(queue_logical_id(queue)) for queue in api_sends_to)
    if spec.name in SENDS_TO_RUNTIME_QUEUES:
        send_to.append(_runtime_queue_arn())
    if send_to:
        statements.append({
            "Sid": "SendToQueues",
            "Effect": "Allow",
            "Action": list(SQS_SEND_ACTIONS),
            "Resource": send_to,
        })
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": f"Municipal Point Cloud: {spec.name} (least privilege, generated by tools/infrastructure.py)",
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }],
            },
            "Policies": [{
                "PolicyName": "function",
                "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
            }],
        },
    }


def estimated_policy_size(role: dict) -> int:
    """Characters the role's inline policies take once CloudFormation has resolved every ARN (estimated
    with a long ARN for each intrinsic function), whitespace excluded as IAM counts it."""
    long_arn = "arn:aws:dynamodb:ap-northeast-1:123456789012:table/points-production-a-long-table-name/index/*"

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and next(iter(node)).startswith(("Fn::", "Ref")):
                return long_arn
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return sum(len(json.dumps(resolve(policy), separators=(",", ":"))) for policy in role["Properties"].get("Policies", []))


def _function(spec: FunctionSpec) -> dict:
    settings = spec.settings
    environment: dict[str, Any] = {key: str(value) for key, value in settings["environment"].items()}
    environment["POINTS_TABLE_PREFIX"] = {"Ref": "TablePrefix"}
    # The secret's name or ARN, never its value: a function reads the value from Secrets Manager at run
    # time (a dynamic reference would copy it into the function's configuration for anyone who may read it).
    if spec.name in READS_CARD_HASH_SECRET:
        environment["CARD_HASH_SECRET_ID"] = {"Ref": "CardHashSecretId"}
    what = {
        "api": "the HTTP API (every Chalice route)",
        "sqs": f"SQS consumer of {spec.queue}",
        "schedule": f"scheduled job, {spec.schedule}",
        "stream": f"consumer of the {spec.stream_table} table's stream",
        "pure": "CloudFormation custom resource (municipality onboarding)" if spec.name == "register_tenant"
        else "plain Lambda function",
    }[spec.kind]
    properties: dict[str, Any] = {
        "Description": f"Municipal Point Cloud {spec.name}: {what}",
        "Runtime": RUNTIME,
        "Architectures": [ARCHITECTURE],
        "Handler": spec.handler,
        "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
        "Role": _get_att(spec.base + "Role"),
        "MemorySize": settings["memory"],
        "Timeout": settings["timeout"],
        "Environment": {"Variables": dict(sorted(environment.items()))},
        "LoggingConfig": {"LogGroup": {"Ref": spec.base + "LogGroup"}},
        "TracingConfig": {"Mode": "Active" if settings["tracing"] else "PassThrough"},
    }
    if settings["reserved_concurrency"] is not None:
        properties["ReservedConcurrentExecutions"] = settings["reserved_concurrency"]
    return {"Type": "AWS::Lambda::Function", "Properties": properties}


def _queues(queue_name: str, consumer_timeout: int) -> dict:
    dead_letters = dead_letter_queue_name(queue_name)
    queue_id, dead_letter_id = queue_logical_id(queue_name), queue_logical_id(dead_letters)
    return {
        queue_id: {
            "Type": "AWS::SQS::Queue",
            **DELETE_WITH_STACK,
            "Properties": {
                "QueueName": queue_name,
                "VisibilityTimeout": VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT * consumer_timeout,
                "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {"deadLetterTargetArn": _get_att(dead_letter_id), "maxReceiveCount": MAX_RECEIVE_COUNT},
            },
        },
        dead_letter_id: {
            "Type": "AWS::SQS::Queue",
            **DELETE_WITH_STACK,
            "Properties": {
                "QueueName": dead_letters,
                "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedriveAllowPolicy": {
                    "redrivePermission": "byQueue",
                    "sourceQueueArns": [
                        {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queue_name},
                    ],
                },
            },
        },
        dead_letter_id + "DepthAlarm": _metric_alarm(
            f"{dead_letters}-not-empty",
            f"Messages in the dead-letter queue {dead_letters}: records of {queue_name} failed "
            f"{MAX_RECEIVE_COUNT} times and wait for an operator (python -m tools.dead_letters).",
            "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": _get_att(dead_letter_id, "QueueName")},
            statistic="Maximum",
        ),
    }


def _stream_consumer(spec: FunctionSpec) -> dict:
    """The mapping from a table's stream to its consumer, where records that keep failing go, and alarms."""
    failures_id = failure_queue_id(spec)
    return {
        spec.base + "EventSourceMapping": {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": _get_att(table_logical_id(spec.stream_table), "StreamArn"),
                "FunctionName": {"Ref": spec.logical_id},
                "StartingPosition": "TRIM_HORIZON",
                "BatchSize": STREAM_BATCH_SIZE,
                "Enabled": True,
                # Retry from the first record the handler reports, not the whole batch; halve a batch that
                # keeps failing to isolate its record; after the retries, its description goes to the queue.
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "BisectBatchOnFunctionError": True,
                "MaximumRetryAttempts": STREAM_MAXIMUM_RETRY_ATTEMPTS,
                "DestinationConfig": {"OnFailure": {"Destination": _get_att(failures_id)}},
            },
        },
        **_failure_queue(
            spec,
            f"Stream records of the {spec.stream_table} table that {spec.name} could not process after "
            f"{STREAM_MAXIMUM_RETRY_ATTEMPTS} retries: the transfer lists miss them until an operator replays them "
            "(python -m chalicelib.storage.projection --backfill re-lists every transfer).",
        ),
        spec.base + "IteratorAgeAlarm": _alarm(
            f"{spec.name}-behind",
            f"{spec.name} is more than {STREAM_ITERATOR_AGE_ALARM_MILLISECONDS // 1000} s behind the "
            f"{spec.stream_table} table: reports and resident histories lag the ledger.",
            Namespace="AWS/Lambda", MetricName="IteratorAge", Statistic="Maximum", Period=60,
            Dimensions=[{"Name": "FunctionName", "Value": {"Ref": spec.logical_id}}],
            Threshold=STREAM_ITERATOR_AGE_ALARM_MILLISECONDS,
        ),
    }


def _table_throttle_alarms(tables: dict) -> dict:
    alarms: dict = {}
    for logical_id, table in sorted(tables.items()):
        base_name = table["Properties"]["TableName"]["Fn::Sub"].removeprefix("${TablePrefix}")
        scopes: list[dict] = [{}] + [
            {"GlobalSecondaryIndexName": index["IndexName"]}
            for index in table["Properties"].get("GlobalSecondaryIndexes", [])
        ]
        metrics = [(scope, metric) for scope in scopes for metric in ("ReadThrottleEvents", "WriteThrottleEvents")]
        groups = [metrics[start:start + ALARM_METRICS_LIMIT] for start in range(0, len(metrics), ALARM_METRICS_LIMIT)]
        for number, group in enumerate(groups, start=1):
            suffix = "" if number == 1 else str(number)
            queries = [
                {
                    "Id": f"m{position}",
                    "ReturnData": False,
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/DynamoDB",
                            "MetricName": metric,
                            "Dimensions": [{"Name": "TableName", "Value": {"Ref": logical_id}}]
                            + [{"Name": key, "Value": value} for key, value in scope.items()],
                        },
                        "Period": 300,
                        "Stat": "Sum",
                    },
                }
                for position, (scope, metric) in enumerate(group)
            ]
            queries.append({
                "Id": "throttled",
                "Label": "throttled requests",
                "ReturnData": True,
                "Expression": " + ".join(f"FILL(m{position}, 0)" for position in range(len(group))),
            })
            alarms[f"{logical_id}ThrottleAlarm{suffix}"] = _alarm(
                f"{base_name}-throttled{suffix and '-' + suffix}",
                f"DynamoDB throttled reads or writes on the {base_name} table or its indexes.",
                Metrics=queries,
            )
    return alarms


def _swagger(application) -> dict:
    from chalice.deploy.swagger import CFNSwaggerGenerator

    return CFNSwaggerGenerator().generate_swagger(application)


# -- hardening -------------------------------------------------------------------------------------------


def sqs_maximum_concurrency(spec: FunctionSpec) -> int:
    return spec.maximum_concurrency or DEFAULT_SQS_MAXIMUM_CONCURRENCY


def check_concurrency(functions: list[FunctionSpec], account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY) -> None:
    """Refuse settings Lambda would refuse or that would throttle a queue's consumer against itself."""
    for spec in functions:
        if spec.kind == "sqs":
            maximum = sqs_maximum_concurrency(spec)
            if not 2 <= maximum <= 1000:
                raise ValueError(f"{spec.name}: an SQS mapping's maximum concurrency must be 2..1000, not {maximum}")
            reserved = spec.settings["reserved_concurrency"]
            if reserved is not None and reserved < maximum:
                raise ValueError(f"{spec.name}: reserved concurrency {reserved} is below its mapping's maximum "
                                 f"concurrency {maximum}; Lambda would throttle its own consumer")
    reserved_total = sum(spec.settings["reserved_concurrency"] or 0 for spec in functions)
    if account_concurrency - reserved_total < MINIMUM_UNRESERVED_CONCURRENCY:
        raise ValueError(f"{reserved_total} reserved executions leave fewer than {MINIMUM_UNRESERVED_CONCURRENCY} "
                         f"unreserved in an account quota of {account_concurrency}")


def is_invoked_asynchronously(spec: FunctionSpec) -> bool:
    """EventBridge invokes the jobs, CloudFormation the custom resource: both without waiting for an answer."""
    return spec.kind in ("schedule", "pure")


# The custom resource's event carries the municipality stack's parameters, the first staff member's initial
# password among them: its failures are diagnosed and purged, never replayed (docs/DEPLOYMENT.md §8.2).
_ASYNC_FAILURE_ADVICE = {
    "register_tenant": "each message holds the CloudFormation event, including the first staff member's initial "
                       "password: read it only to diagnose, purge the queue, never replay it, and redeploy the "
                       "municipality stack (with a new password) once the cause is fixed.",
}


def _async_failures(spec: FunctionSpec) -> dict:
    """Where an asynchronous invocation that keeps failing goes (the event and the error), and its alarm."""
    return {
        **_failure_queue(
            spec,
            f"Invocations of {spec.name} failed {ASYNC_MAXIMUM_RETRY_ATTEMPTS + 1} times or expired: "
            + _ASYNC_FAILURE_ADVICE.get(spec.name, "each message holds the event and the error; fix the cause, "
                                                   "then run the function again with that event."),
        ),
        spec.base + "EventInvokeConfig": {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": {"Ref": spec.logical_id},
                "Qualifier": "$LATEST",
                "MaximumRetryAttempts": ASYNC_MAXIMUM_RETRY_ATTEMPTS,
                "MaximumEventAgeInSeconds": ASYNC_MAXIMUM_EVENT_AGE_SECONDS,
                # Lambda sends with the function's role (SendOwnFailures in its policy).
                "DestinationConfig": {"OnFailure": {"Destination": _get_att(failure_queue_id(spec))}},
            },
        },
    }


def card_hash_secret_arn() -> dict:
    """The secret's ARN from the CardHashSecretId parameter, which may be a name or an ARN. Secrets Manager
    appends six random characters to a secret's name in its ARN; `-??????` matches exactly those, not
    another secret whose name merely starts with this one's."""
    return {"Fn::If": [
        "CardHashSecretIdIsArn",
        {"Ref": "CardHashSecretId"},
        {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${CardHashSecretId}-??????"},
    ]}


def hardening_statements(spec: FunctionSpec) -> list[dict]:
    """The role statements the hardening needs: tracing, the card-hash secret, the failure queue."""
    statements: list[dict] = []
    if spec.settings.get("tracing"):
        statements.append({"Sid": "Tracing", "Effect": "Allow", "Action": list(XRAY_ACTIONS), "Resource": "*"})
    if spec.name in READS_CARD_HASH_SECRET:
        statements.append({
            "Sid": "ReadCardHashSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": card_hash_secret_arn(),
        })
    if is_invoked_asynchronously(spec):
        statements.append({
            "Sid": "SendOwnFailures",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": _get_att(failure_queue_id(spec)),
        })
    return statements


def route_regex(routes: list[str]) -> str:
    """A WAF regex for the URI paths of Chalice route templates: `{name}` is one segment; one leading segment
    (execute-api's stage, or a custom domain's base path) may precede; a trailing slash is tolerated."""
    alternatives = [
        "".join("/" + ("[^/]+" if segment.startswith("{") else re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", segment))
                for segment in route.strip("/").split("/"))
        for route in routes
    ]
    body = alternatives[0] if len(alternatives) == 1 else "(" + "|".join(alternatives) + ")"
    return "^(/[^/]+)?" + body + "/?$"


def _routes_statement(application, routes: tuple[tuple[str, str], ...]) -> dict:
    """A WAF statement matching requests to these (method, route) pairs of the app."""
    for method, route in routes:
        if method not in application.routes.get(route, {}):
            raise ValueError(f"WAF rule names {method} {route}, which is not a route of the app")
    by_method: dict[str, list[str]] = {}
    for method, route in routes:
        by_method.setdefault(method, []).append(route)
    statements = [
        {"AndStatement": {"Statements": [
            {"ByteMatchStatement": {
                "FieldToMatch": {"Method": {}}, "PositionalConstraint": "EXACTLY", "SearchString": method,
                "TextTransformations": [{"Priority": 0, "Type": "NONE"}],
            }},
            {"RegexMatchStatement": {
                "FieldToMatch": {"UriPath": {}}, "RegexString": route_regex(paths),
                "TextTransformations": [{"Priority": 0, "Type": "URL_DECODE"}],
            }},
        ]}}
        for method, paths in sorted(by_method.items())
    ]
    return statements[0] if len(statements) == 1 else {"OrStatement": {"Statements": statements}}


def _visibility(metric_name: Any) -> dict:
    return {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": metric_name}


def waf_rule_metric(rule_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", rule_name).lower()


def _web_acl(application, stage: str) -> dict:
    """A regional web ACL on the API stage: AWS managed rule groups and rate limits on the sign-in routes."""
    rules: list[dict] = [{
        "Name": "AmazonIpReputation",
        "Priority": 0,
        "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesAmazonIpReputationList"}},
        "OverrideAction": {"None": {}},
        "VisibilityConfig": _visibility("amazon-ip-reputation"),
    }]
    for rule_name, parameter, _, _, routes in WAF_RATE_RULES:
        rules.append({
            "Name": rule_name,
            "Priority": len(rules),
            "Statement": {"RateBasedStatement": {
                "Limit": {"Ref": parameter},
                "EvaluationWindowSec": WAF_RATE_WINDOW_SECONDS,
                "AggregateKeyType": "IP",
                "ScopeDownStatement": _routes_statement(application, routes),
            }},
            "Action": {"Block": {"CustomResponse": {"ResponseCode": 429, "CustomResponseBodyKey": "too_many_requests"}}},
            "VisibilityConfig": _visibility(waf_rule_metric(rule_name)),
        })
    rules.append({
        "Name": "CommonRuleSet",
        "Priority": len(rules),
        "Statement": {"ManagedRuleGroupStatement": {
            "VendorName": "AWS",
            "Name": "AWSManagedRulesCommonRuleSet",
            # Counted (and labelled) here, blocked by LargeBodyOutsideUploads below.
            "RuleActionOverrides": [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}],
        }},
        "OverrideAction": {"None": {}},
        "VisibilityConfig": _visibility("common-rule-set"),
    })
    rules.append({
        "Name": "LargeBodyOutsideUploads",
        "Priority": len(rules),
        "Statement": {"AndStatement": {"Statements": [
            {"LabelMatchStatement": {"Scope": "LABEL", "Key": WAF_SIZE_RESTRICTION_LABEL}},
            {"NotStatement": {"Statement": _routes_statement(application, WAF_LARGE_BODY_ROUTES)}},
        ]}},
        "Action": {"Block": {"CustomResponse": {"ResponseCode": 413, "CustomResponseBodyKey": "request_too_large"}}},
        "VisibilityConfig": _visibility("large-body-outside-uploads"),
    })
    rules.append({
        "Name": "KnownBadInputs",
        "Priority": len(rules),
        "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesKnownBadInputsRuleSet"}},
        "OverrideAction": {"None": {}},
        "VisibilityConfig": _visibility("known-bad-inputs"),
    })
    resources: dict[str, Any] = {
        "ApiWebACL": {
            "Type": "AWS::WAFv2::WebACL",
            "Properties": {
                "Name": {"Fn::Sub": "${AWS::StackName}-api"},
                "Description": "Municipal Point Cloud API: AWS managed rules and rate limits on sign-in and challenges",
                "Scope": "REGIONAL",
                "DefaultAction": {"Allow": {}},
                "CustomResponseBodies": {
                    "too_many_requests": {"ContentType": "APPLICATION_JSON", "Content": WAF_TOO_MANY_REQUESTS_BODY},
                    "request_too_large": {"ContentType": "APPLICATION_JSON", "Content": WAF_REQUEST_TOO_LARGE_BODY},
                },
                "Rules": rules,
                "VisibilityConfig": _visibility({"Fn::Sub": "${AWS::StackName}-api"}),
            },
        },
        "ApiWebACLAssociation": {
            "Type": "AWS::WAFv2::WebACLAssociation",
            # The stage must exist before a web ACL can be associated with it.
            "DependsOn": ["RestAPIStage"],
            "Properties": {
                "ResourceArn": {"Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/" + stage},
                "WebACLArn": _get_att("ApiWebACL"),
            },
        },
    }
    for rule_name, _, _, what, _ in WAF_RATE_RULES:
        metric = waf_rule_metric(rule_name)
        resources[rule_name + "BlockedAlarm"] = _metric_alarm(
            f"waf-{metric}-blocked",
            f"The web ACL blocked {what} over its rate limit: an attack, or a limit too low for a shared address "
            "(raise the stack parameter).",
            "AWS/WAFV2", "BlockedRequests",
            {"WebACL": {"Fn::Sub": "${AWS::StackName}-api"}, "Region": {"Ref": "AWS::Region"}, "Rule": metric},
        )
    return resources


def _waf_parameters() -> dict:
    return {
        parameter: {
            "Type": "Number",
            "Default": default,
            "MinValue": 10,
            "MaxValue": 2_000_000_000,
            "Description": f"Requests per source IP address in {WAF_RATE_WINDOW_SECONDS // 60} minutes to {what} "
                           "before the web ACL answers 429 (many people may share one address: a town hall, a mobile carrier)",
        }
        for _, parameter, default, what, _ in WAF_RATE_RULES
    }


# -- the template ----------------------------------------------------------------------------------------


def platform_template(application=None, config_from_disk: dict | None = None) -> dict:
    from chalicelib.api.grant_batch_handlers import GRANT_BATCH_QUEUE
    from chalicelib.storage.schema import cloudformation_tables

    application = chalice_app() if application is None else application
    config_from_disk = chalice_config() if config_from_disk is None else config_from_disk
    functions = chalice_functions(application, config_from_disk)
    check_concurrency(functions)
    tables = cloudformation_tables()["Resources"]
    stage_config = config_from_disk["stages"][CHALICE_STAGE]
    api_stage = stage_config.get("api_gateway_stage", "api")
    endpoint_type = stage_config.get("api_gateway_endpoint_type", "EDGE")
    consumed = {spec.queue for spec in functions if spec.queue}
    api_sends_to = [GRANT_BATCH_QUEUE] if GRANT_BATCH_QUEUE in consumed else []

    resources: dict[str, Any] = dict(tables)
    outputs: dict[str, Any] = {}

    for spec in functions:
        resources[spec.base + "LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            **DELETE_WITH_STACK,
            "Properties": {
                "LogGroupName": {"Fn::Sub": "/municipal-point-cloud/${AWS::StackName}/" + spec.name},
                "RetentionInDays": {"Ref": "LogRetentionDays"},
            },
        }
        role = _role(spec, tables, api_sends_to)
        role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].extend(hardening_statements(spec))
        size = estimated_policy_size(role)
        if size > ROLE_POLICY_SIZE_LIMIT:
            raise ValueError(f"{spec.name}: its role policy would take about {size} characters, over IAM's "
                             f"{ROLE_POLICY_SIZE_LIMIT}; group the table ARNs (e.g. by the TablePrefix) instead")
        resources[spec.base + "Role"] = role
        resources[spec.logical_id] = _function(spec)
        if is_invoked_asynchronously(spec):
            resources.update(_async_failures(spec))
        resources[spec.base + "ErrorsAlarm"] = _metric_alarm(
            f"{spec.name}-errors", f"The Lambda function {spec.name} ended invocations with an error.",
            "AWS/Lambda", "Errors", {"FunctionName": {"Ref": spec.logical_id}},
        )
        resources[spec.base + "ThrottlesAlarm"] = _metric_alarm(
            f"{spec.name}-throttles", f"Invocations of the Lambda function {spec.name} were throttled.",
            "AWS/Lambda", "Throttles", {"FunctionName": {"Ref": spec.logical_id}},
        )
        if spec.kind == "sqs":
            resources.update(_queues(spec.queue, spec.settings["timeout"]))
            mapping: dict[str, Any] = {
                "EventSourceArn": _get_att(queue_logical_id(spec.queue)),
                "FunctionName": {"Ref": spec.logical_id},
                "BatchSize": spec.batch_size,
                "Enabled": True,
                # Only the records the handler reports fail are retried; Chalice never sets this.
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
            }
            if spec.batching_window:
                mapping["MaximumBatchingWindowInSeconds"] = spec.batching_window
            mapping["ScalingConfig"] = {"MaximumConcurrency": sqs_maximum_concurrency(spec)}
            resources[spec.base + "EventSourceMapping"] = {"Type": "AWS::Lambda::EventSourceMapping", "Properties": mapping}
            outputs[queue_logical_id(spec.queue) + "Url"] = {
                "Description": f"URL of {spec.queue}",
                "Value": {"Ref": queue_logical_id(spec.queue)},
            }
            dead_letters = queue_logical_id(dead_letter_queue_name(spec.queue))
            outputs[dead_letters + "Url"] = {
                "Description": f"URL of {dead_letter_queue_name(spec.queue)}",
                "Value": {"Ref": dead_letters},
            }
        elif spec.kind == "stream":
            resources.update(_stream_consumer(spec))
        elif spec.kind == "schedule":
            resources[spec.base + "Schedule"] = {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Description": f"Municipal Point Cloud job {spec.name}",
                    "ScheduleExpression": spec.schedule,
                    "State": "ENABLED",
                    "Targets": [{"Arn": _get_att(spec.logical_id), "Id": spec.name}],
                },
            }
            resources[spec.base + "SchedulePermission"] = {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": {"Ref": spec.logical_id},
                    "Principal": "events.amazonaws.com",
                    "SourceArn": _get_att(spec.base + "Schedule"),
                },
            }

    api = next((spec for spec in functions if spec.kind == "api"), None)
    if api is not None:
        resources.update(_rest_api(application, api_stage, endpoint_type, tracing=api.settings["tracing"]))
        resources.update(_web_acl(application, api_stage))
        outputs["ApiUrl"] = {
            "Description": "Base URL of the HTTP API (terminals, staff, portal)",
            "Value": {"Fn::Sub": "https://${RestAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/" + api_stage + "/"},
        }
        outputs["RestApiId"] = {"Value": {"Ref": "RestAPI"}}

    if any(spec.name == "register_tenant" for spec in functions):
        outputs["OnboardingServiceToken"] = {
            "Description": "ServiceToken of Custom::MunicipalityTenant (infrastructure/municipality.yaml)",
            "Value": _get_att("RegisterTenantFunction"),
            "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-OnboardingServiceToken"}},
        }

    conversion = next((spec for spec in functions if spec.name == "handle_partner_conversions"), None)
    if conversion is not None:
        resources["PartnerSendPolicy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Condition": "HasPartnerAccounts",
            "Properties": {
                "Queues": [{"Ref": queue_logical_id(conversion.queue)}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "PartnersSendConversions",
                        "Effect": "Allow",
                        "Principal": {"AWS": {"Ref": "PartnerAccountIds"}},
                        "Action": "sqs:SendMessage",
                        "Resource": _get_att(queue_logical_id(conversion.queue)),
                    }],
                },
            },
        }
        # A message naming no registered, active partner has no result queue to be answered on: the
        # consumer counts it (chalicelib/api/conversion_handlers.py) and this alarm tells the operator.
        from chalicelib.observability import NAMESPACE, SERVICE_NAME

        # Powertools adds the `service` dimension (POWERTOOLS_SERVICE_NAME in .chalice/config.json) to every
        # metric it publishes; an alarm must name exactly the metric's dimensions to see it.
        resources["PartnerMessagesUnattributedAlarm"] = _metric_alarm(
            "partner-messages-unattributed",
            "A partner conversion message named no registered, active partner_id and was dropped unanswered "
            "(a partner not yet onboarded, deactivated, or sending a wrong partner_id).",
            NAMESPACE, "PartnerMessagesUnattributed", {"service": SERVICE_NAME},
        )

    resources["AlarmTopic"] = {
        "Type": "AWS::SNS::Topic",
        "Properties": {"DisplayName": "Municipal Point Cloud alarms"},
    }
    resources["AlarmEmailSubscription"] = {
        "Type": "AWS::SNS::Subscription",
        "Condition": "HasAlarmEmail",
        "Properties": {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}},
    }
    resources.update(_table_throttle_alarms(tables))
    outputs["AlarmTopicArn"] = {"Value": {"Ref": "AlarmTopic"}}

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            "Municipal Point Cloud platform stack (generated by `python -m tools.infrastructure` from the Chalice "
            "app, .chalice/config.json stage prod and the PynamoDB models: do not edit). API Gateway is a REST API "
            "built from Chalice's own swagger, because Chalice routes by requestContext.resourcePath, the route "
            "template, which REST proxy integrations carry. See docs/DEPLOYMENT.md."
        ),
        "Metadata": {
            "GeneratedBy": "python -m tools.infrastructure",
            "Chalice": {"stage": CHALICE_STAGE, "functions": {spec.name: spec.handler for spec in functions}},
        },
        # The tables' own parameters (TableDeletionProtection), then the platform's (its TablePrefix wins).
        "Parameters": {**cloudformation_tables()["Parameters"], **_parameters(config_from_disk)},
        "Conditions": {
            "HasAlarmEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]},
            "HasPartnerAccounts": {"Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "PartnerAccountIds"}]}, ""]}]},
            "CardHashSecretIdIsArn": {"Fn::Equals": [
                {"Fn::Select": [0, {"Fn::Split": [":", {"Ref": "CardHashSecretId"}]}]}, "arn"]},
        },
        "Resources": resources,
        "Outputs": outputs,
    }


def _parameters(config_from_disk: dict) -> dict:
    stage_environment = config_from_disk["stages"][CHALICE_STAGE].get("environment_variables", {})
    return {
        "TablePrefix": {
            "Type": "String",
            "Default": stage_environment.get("POINTS_TABLE_PREFIX", "points-prod-"),
            "AllowedPattern": "^[A-Za-z0-9_.-]{1,100}$",
            "Description": "Prefix of every DynamoDB table name (the app reads it as POINTS_TABLE_PREFIX)",
        },
        "CodeBucket": {
            "Type": "String",
            "MinLength": 3,
            "Description": "S3 bucket holding the Lambda package built by scripts/package-lambda.sh",
        },
        "CodeKey": {
            "Type": "String",
            "MinLength": 1,
            "Description": "S3 key of the Lambda package (a new key per build, e.g. with its SHA-256, so functions update)",
        },
        "CardHashSecretId": {
            "Type": "String",
            "Default": "municipal-point-cloud/card-hash-secret",
            "Description": "Secrets Manager secret (name or full ARN) whose SecretString is the card-hash secret; the "
                           "functions that hash card serials get it as CARD_HASH_SECRET_ID and read the value at run time",
        },
        "AlarmEmail": {
            "Type": "String",
            "Default": "",
            "Description": "E-mail address subscribed to the alarm topic (empty: no subscription)",
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": 365,
            "AllowedValues": [30, 90, 180, 365, 400, 731, 1827, 3653],
            "Description": "Retention of the functions' and the API's log groups",
        },
        "ApiThrottleRateLimit": {
            "Type": "Number",
            "Default": 200,
            "MinValue": 1,
            "Description": "Steady-state requests per second the API stage accepts (every route)",
        },
        "ApiThrottleBurstLimit": {
            "Type": "Number",
            "Default": 400,
            "MinValue": 1,
            "Description": "Burst of requests the API stage accepts (every route)",
        },
        "PartnerAccountIds": {
            "Type": "CommaDelimitedList",
            "Default": "",
            "Description": "AWS account ids of partners allowed to send to the conversion queue (empty: none)",
        },
        **_waf_parameters(),
    }


def _rest_api(application, stage: str, endpoint_type: str, tracing: bool = False) -> dict:
    swagger = _swagger(application)
    digest = hashlib.sha256(json.dumps(swagger, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    # A deployment is a snapshot: a new logical id whenever the API changes makes CloudFormation create a
    # new one and point the stage at it.
    deployment_id = "RestAPIDeployment" + digest
    access_log_format = json.dumps({
        "requestId": "$context.requestId",
        "requestTime": "$context.requestTimeEpoch",
        "sourceIp": "$context.identity.sourceIp",
        "httpMethod": "$context.httpMethod",
        # The route template, never the path: paths carry MyKey IDs and card codes.
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
        "integrationStatus": "$context.integrationStatus",
        "errorMessage": "$context.error.message",
    }, sort_keys=True)
    return {
        "RestAPI": {
            "Type": "AWS::ApiGateway::RestApi",
            "Properties": {
                "Name": {"Fn::Sub": "${AWS::StackName}-api"},
                "Description": "Municipal Point Cloud HTTP API (Chalice routes, proxy integration)",
                "EndpointConfiguration": {"Types": [endpoint_type]},
                "Body": swagger,
            },
        },
        deployment_id: {
            "Type": "AWS::ApiGateway::Deployment",
            "Properties": {"RestApiId": {"Ref": "RestAPI"}, "Description": f"swagger sha256 {digest}"},
        },
        "ApiAccessLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            **DELETE_WITH_STACK,
            "Properties": {
                "LogGroupName": {"Fn::Sub": "/municipal-point-cloud/${AWS::StackName}/api-access"},
                "RetentionInDays": {"Ref": "LogRetentionDays"},
            },
        },
        # API Gateway writes access logs through one role per account and region. Kept on stack deletion:
        # other APIs of the account may rely on the setting.
        "ApiGatewayCloudWatchRole": {
            "Type": "AWS::IAM::Role",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Service": "apigateway.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }],
                },
                "ManagedPolicyArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"},
                ],
            },
        },
        "ApiGatewayAccount": {
            "Type": "AWS::ApiGateway::Account",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"CloudWatchRoleArn": _get_att("ApiGatewayCloudWatchRole")},
        },
        "RestAPIStage": {
            "Type": "AWS::ApiGateway::Stage",
            "DependsOn": ["ApiGatewayAccount"],
            "Properties": {
                "RestApiId": {"Ref": "RestAPI"},
                "DeploymentId": {"Ref": deployment_id},
                "StageName": stage,
                "Description": "Production stage",
                "AccessLogSetting": {"DestinationArn": _get_att("ApiAccessLogGroup"), "Format": access_log_format},
                # API Gateway samples requests (X-Ray's default rule) and Lambda follows its decision.
                "TracingEnabled": tracing,
                "MethodSettings": [{
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": {"Ref": "ApiThrottleRateLimit"},
                    "ThrottlingBurstLimit": {"Ref": "ApiThrottleBurstLimit"},
                }],
            },
        },
        "APIHandlerInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": API_LOGICAL_ID},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${RestAPI}/*"},
            },
        },
        "ApiServerErrorsAlarm": _metric_alarm(
            "api-5xx",
            "The API answered with 5xx (an unhandled error in a route, a Lambda failure or throttling).",
            "AWS/ApiGateway", "5XXError",
            {"ApiName": {"Fn::Sub": "${AWS::StackName}-api"}, "Stage": stage},
        ),
    }


def render(template: dict) -> str:
    return json.dumps(template, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    parser.add_argument("--output", type=Path, default=PLATFORM_TEMPLATE)
    arguments = parser.parse_args(argv)
    text = render(platform_template())
    if arguments.check:
        current = arguments.output.read_text(encoding="utf-8") if arguments.output.exists() else ""
        if current != text:
            print(f"{arguments.output} is stale: run `make infrastructure-templates`", file=sys.stderr)
            return 1
        return 0
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(text, encoding="utf-8")
    print(f"wrote {arguments.output.relative_to(ROOT) if arguments.output.is_relative_to(ROOT) else arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
