"""The deployable templates against the code: infrastructure/platform.json and infrastructure/municipality.yaml.

The platform template is generated (`make infrastructure-templates`), so most checks here are about the
generator: every Chalice handler becomes a function, every consumed queue has a dead-letter queue and a
mapping that reports partial batch failures, the tables are the models' own, no role can touch every
table or queue, every dead-letter queue and function has its alarms, and cfn-lint finds nothing wrong.
The handlers are enumerated here from the app object, independently of the generator.
"""
from __future__ import annotations

import importlib
import json
import pathlib
import re

import pytest
import yaml

from tools import infrastructure

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "infrastructure" / "platform.json"
MUNICIPALITY = ROOT / "infrastructure" / "municipality.yaml"
NAGAHAMA = ROOT / "infrastructure" / "examples" / "nagahama.parameters.json"
CHALICE_POLICY = ROOT / ".chalice" / "policy.json"
LINT_REGION = "ap-northeast-1"


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(PLATFORM.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def municipality() -> dict:
    return yaml.safe_load(MUNICIPALITY.read_text(encoding="utf-8"))


def _of_type(template: dict, resource_type: str) -> dict:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def _chalice_handlers(app) -> dict[str, tuple[str, str]]:
    """name -> (kind, handler string), read from the app object the way Chalice's deployer reads it."""
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    handlers = {}
    if app.routes:
        handlers["api_handler"] = ("api", "app.app")
    for source in app.event_sources:
        kind = {SQSEventConfig: "sqs", ScheduledEventConfig: "schedule"}.get(type(source), type(source).__name__)
        handlers[source.name] = (kind, source.handler_string)
    for function in app.pure_lambda_functions:
        handlers[function.name] = ("pure", function.handler_string)
    return handlers


def _function_with_handler(template: dict, handler: str) -> tuple[str, dict]:
    matches = [(name, resource) for name, resource in _of_type(template, "AWS::Lambda::Function").items()
               if resource["Properties"]["Handler"] == handler]
    assert len(matches) == 1, f"expected one function with Handler {handler}, found {[name for name, _ in matches]}"
    return matches[0]


def _queue_named(template: dict, queue_name: str) -> tuple[str, dict]:
    matches = [(name, resource) for name, resource in _of_type(template, "AWS::SQS::Queue").items()
               if resource["Properties"]["QueueName"] == queue_name]
    assert len(matches) == 1, f"expected one queue named {queue_name}, found {[name for name, _ in matches]}"
    return matches[0]


# -- the committed file ----------------------------------------------------------------------------------


def test_platform_template__committed_file_is_what_the_code_generates(template):
    assert PLATFORM.read_text(encoding="utf-8") == infrastructure.render(template), (
        "infrastructure/platform.json is stale: run `make infrastructure-templates` and commit the result"
    )


def test_platform_template__generation_is_deterministic(app):
    assert infrastructure.render(infrastructure.platform_template(app)) == infrastructure.render(
        infrastructure.platform_template(app))


def test_platform_tables__byte_identical_to_the_models_schema(committed):
    from chalicelib.storage.schema import cloudformation_tables

    expected = cloudformation_tables()["Resources"]
    deployed = _of_type(committed, "AWS::DynamoDB::Table")
    assert sorted(deployed) == sorted(expected), "run `make infrastructure-templates`"
    for name, resource in expected.items():
        assert json.dumps(deployed[name], sort_keys=True, ensure_ascii=False) == json.dumps(
            resource, sort_keys=True, ensure_ascii=False), f"{name} differs from chalicelib.storage.schema"
    assert committed["Parameters"]["TablePrefix"]["Type"] == "String"


# -- cfn-lint -------------------------------------------------------------------------------------------


def _lint(text: str) -> list[str]:
    from cfnlint.api import ManualArgs, lint

    matches = lint(text, config=ManualArgs(regions=[LINT_REGION]))
    # Errors and warnings fail; informational notes (I…) are not reported by default.
    return [f"{match.rule.id} {match.message} at {'/'.join(str(part) for part in getattr(match, 'path', []) or [])}"
            for match in matches if match.rule.severity.lower() in ("error", "warning")]


def test_platform_template__passes_cfn_lint(template):
    assert _lint(infrastructure.render(template)) == []


def test_municipality_template__passes_cfn_lint():
    assert _lint(MUNICIPALITY.read_text(encoding="utf-8")) == []


def test_cfn_lint__would_report_a_broken_template(template):
    broken = json.loads(infrastructure.render(template))
    mapping = next(iter(_of_type(broken, "AWS::Lambda::EventSourceMapping").values()))
    mapping["Properties"]["FunctionResponseTypes"] = ["ReportEverything"]
    assert _lint(json.dumps(broken)), "cfn-lint did not report an invalid FunctionResponseTypes value"


# -- functions ------------------------------------------------------------------------------------------


def test_every_chalice_handler__has_exactly_one_lambda_function(app, template):
    handlers = _chalice_handlers(app)
    assert "register_tenant" in handlers and "api_handler" in handlers
    functions = _of_type(template, "AWS::Lambda::Function")
    assert len(functions) == len(handlers), (
        f"{len(handlers)} Chalice handlers but {len(functions)} functions: {sorted(handlers)}")
    for name, (kind, handler) in handlers.items():
        assert kind in ("api", "sqs", "schedule", "pure"), f"{name}: a {kind} handler the template cannot deploy"
        _function_with_handler(template, handler)


def test_function_handlers__resolve_to_what_chalice_registered(app):
    # Lambda imports the module and takes the attribute: the handler string must reach Chalice's wrapper.
    for name, (kind, handler) in _chalice_handlers(app).items():
        module_name, attribute = handler.rsplit(".", 1)
        target = getattr(importlib.import_module(module_name), attribute)
        assert target is (app if kind == "api" else app.handler_map[name]), handler


def test_functions__python312_and_settings_from_the_chalice_prod_stage(app, template):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    prod = config["stages"]["prod"]
    for name, (_, handler) in _chalice_handlers(app).items():
        _, function = _function_with_handler(template, handler)
        properties = function["Properties"]
        overrides = prod.get("lambda_functions", {}).get(name, {})
        assert properties["Runtime"] == "python3.12"
        assert properties["Architectures"] == [infrastructure.ARCHITECTURE]
        assert properties["Code"] == {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}}
        assert properties["Timeout"] == overrides.get("lambda_timeout", prod["lambda_timeout"])
        assert properties["MemorySize"] == overrides.get("lambda_memory_size", prod["lambda_memory_size"])
        variables = properties["Environment"]["Variables"]
        assert variables["POINTS_TABLE_PREFIX"] == {"Ref": "TablePrefix"}
        assert variables["CARD_TRUST_STORE"] == prod["environment_variables"]["CARD_TRUST_STORE"]
        # The secret's value is read at run time, never put in the environment (test_template_hardening.py).
        assert "CARD_HASH_SECRET" not in variables
        for key, value in config.get("environment_variables", {}).items():
            assert variables[key] == value


def test_grant_batch_consumer__has_the_longer_timeout(app, template):
    from chalicelib.api.grant_batch_handlers import handle_grant_batches

    _, function = _function_with_handler(template, _chalice_handlers(app)["handle_grant_batches"][1])
    assert function["Properties"]["Timeout"] >= 120
    assert handle_grant_batches is app.handler_map["handle_grant_batches"]


def test_scheduled_jobs__each_has_a_rule_with_its_schedule_and_a_permission(app, template):
    rules = _of_type(template, "AWS::Events::Rule")
    permissions = _of_type(template, "AWS::Lambda::Permission")
    schedules = [source for source in app.event_sources if _chalice_handlers(app)[source.name][0] == "schedule"]
    assert {source.name for source in schedules} >= {"expire_points", "move_expired_reserves", "void_expired_holds"}
    for source in schedules:
        function_id, _ = _function_with_handler(template, source.handler_string)
        rule_ids = [rule_id for rule_id, rule in rules.items()
                    if rule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}]
        assert len(rule_ids) == 1, source.name
        assert rules[rule_ids[0]]["Properties"]["ScheduleExpression"] == source.schedule_expression.to_string()
        assert any(permission["Properties"]["FunctionName"] == {"Ref": function_id}
                   and permission["Properties"]["Principal"] == "events.amazonaws.com"
                   and permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [rule_ids[0], "Arn"]}
                   for permission in permissions.values()), source.name


def test_generator__refuses_a_handler_kind_it_cannot_deploy():
    from chalice import Chalice

    other = Chalice(app_name="other")

    @other.on_s3_event(bucket="some-bucket")
    def on_upload(event):  # pragma: no cover - never invoked
        return None

    with pytest.raises(infrastructure.UnsupportedHandler):
        infrastructure.chalice_functions(other)


def test_generator__a_new_sqs_handler_gets_its_function_queue_dead_letters_and_mapping(monkeypatch):
    from chalice import Chalice

    from tools.function_access import FUNCTION_TABLES, access

    # A new function declares the tables it uses (tools/function_access.py), or the generator stops.
    monkeypatch.setitem(FUNCTION_TABLES, "handle_new_work", {"transfers": access("GetItem")})
    other = Chalice(app_name="other")

    @other.on_sqs_message(queue="points-new-work", batch_size=7)
    def handle_new_work(event):  # pragma: no cover - never invoked
        return None

    template = infrastructure.platform_template(other)
    function_id, _ = _function_with_handler(template, "app.handle_new_work")
    queue_id, queue = _queue_named(template, "points-new-work")
    _, dead_letters = _queue_named(template, "points-new-work-dead-letters")
    mapping = next(iter(_of_type(template, "AWS::Lambda::EventSourceMapping").values()))
    assert mapping["Properties"]["FunctionName"] == {"Ref": function_id}
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["Properties"]["BatchSize"] == 7
    assert queue["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5


# -- queues ---------------------------------------------------------------------------------------------


def test_sqs_event_source_mappings__report_batch_item_failures_with_the_handlers_batch_size(app, template):
    from chalice.app import SQSEventConfig

    from tools.infrastructure import STREAM_CONSUMERS

    mappings = _of_type(template, "AWS::Lambda::EventSourceMapping")
    consumers = [source for source in app.event_sources if type(source) is SQSEventConfig]
    assert len(mappings) == len(consumers) + len(STREAM_CONSUMERS) and len(consumers) >= 2
    for mapping in mappings.values():
        assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    for source in consumers:
        function_id, _ = _function_with_handler(template, source.handler_string)
        queue_id, _ = _queue_named(template, source.queue)
        [mapping] = [m for m in mappings.values() if m["Properties"]["FunctionName"] == {"Ref": function_id}]
        assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert mapping["Properties"]["BatchSize"] == source.batch_size


def test_stream_consumer__reads_the_transfers_stream_with_partial_failures_bisection_and_a_failure_queue(app, template):
    tables = _of_type(template, "AWS::DynamoDB::Table")
    assert tables["TransfersTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert "GlobalSecondaryIndexes" not in tables["TransfersTable"]["Properties"] or all(
        index["IndexName"] == "by_partner" for index in tables["TransfersTable"]["Properties"]["GlobalSecondaryIndexes"])
    [function] = [f for f in app.pure_lambda_functions if f.name == "project_transfers"]
    function_id, _ = _function_with_handler(template, function.handler_string)
    [mapping] = [m["Properties"] for m in _of_type(template, "AWS::Lambda::EventSourceMapping").values()
                 if m["Properties"]["FunctionName"] == {"Ref": function_id}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["TransfersTable", "StreamArn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON" and mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    failures_id = mapping["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert _of_type(template, "AWS::SQS::Queue")[failures_id]["Properties"]["QueueName"] == "points-project-transfers-failures"
    watched = {dimension["Value"]["Fn::GetAtt"][0]
               for alarm in _metric_alarms(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
               for dimension in alarm["Dimensions"] if dimension["Name"] == "QueueName"}
    assert failures_id in watched
    assert any(alarm["MetricName"] == "IteratorAge" and alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
               for alarm in (resource["Properties"] for resource in _of_type(template, "AWS::CloudWatch::Alarm").values())
               if "MetricName" in alarm)


def test_consumed_queues__each_has_a_dead_letter_queue_with_redrive(app, template):
    from chalice.app import SQSEventConfig
    from chalicelib.api.conversion_handlers import CONVERSION_DEAD_LETTER_QUEUE, CONVERSION_QUEUE
    from chalicelib.api.grant_batch_handlers import GRANT_BATCH_DEAD_LETTER_QUEUE, GRANT_BATCH_QUEUE

    dead_letter_names = {CONVERSION_QUEUE: CONVERSION_DEAD_LETTER_QUEUE, GRANT_BATCH_QUEUE: GRANT_BATCH_DEAD_LETTER_QUEUE}
    consumers = [source for source in app.event_sources if type(source) is SQSEventConfig]
    assert {source.queue for source in consumers} >= set(dead_letter_names)
    for source in consumers:
        _, queue = _queue_named(template, source.queue)
        dead_letter_id, dead_letters = _queue_named(
            template, dead_letter_names.get(source.queue, f"{source.queue}-dead-letters"))
        redrive = queue["Properties"]["RedrivePolicy"]
        assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_id, "Arn"]}, "maxReceiveCount": 5}
        assert dead_letters["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
        assert dead_letters["Properties"]["MessageRetentionPeriod"] > queue["Properties"]["MessageRetentionPeriod"]
        for resource in (queue, dead_letters):
            assert resource["Properties"]["SqsManagedSseEnabled"] is True
        _, function = _function_with_handler(template, source.handler_string)
        assert queue["Properties"]["VisibilityTimeout"] >= 6 * function["Properties"]["Timeout"], source.queue


# -- IAM ------------------------------------------------------------------------------------------------


def _statements(template: dict):
    for name, role in _of_type(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield name, statement
    for name, policy in _of_type(template, "AWS::SQS::QueuePolicy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield name, statement


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _data_actions(statement: dict) -> list[str]:
    return [action for action in _as_list(statement.get("Action", []))
            if action == "*" or action.split(":")[0] in ("dynamodb", "sqs")]


def _wildcard_findings(named_statements) -> list[str]:
    findings = []
    for name, statement in named_statements:
        actions = _data_actions(statement)
        if not actions:
            continue
        if any(action in ("*", "dynamodb:*", "sqs:*") for action in actions):
            findings.append(f"{name}: wildcard action {actions}")
        if "*" in _as_list(statement.get("Resource", [])) or "NotResource" in statement:
            findings.append(f"{name}: {actions} on every resource")
    return findings


def test_iam__no_dynamodb_or_sqs_rights_on_every_resource(template):
    assert list(_statements(template)), "no IAM statements found"
    assert _wildcard_findings(_statements(template)) == []


def test_iam__the_chalice_policy_file_has_no_dynamodb_or_sqs_rights_on_every_resource():
    policy = json.loads(CHALICE_POLICY.read_text(encoding="utf-8"))
    assert _wildcard_findings(("policy.json", statement) for statement in policy["Statement"]) == []


def test_iam__the_check_catches_a_grant_on_every_resource():
    statement = {"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": "*"}
    assert _wildcard_findings([("role", statement)])


def test_iam__table_rights_are_limited_to_the_stacks_tables_and_their_indexes(template):
    tables = set(_of_type(template, "AWS::DynamoDB::Table"))
    for name, statement in _statements(template):
        if not any(action.startswith("dynamodb:") for action in _data_actions(statement)):
            continue
        stream_actions = all(action.startswith(("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                                                "dynamodb:ListStreams")) for action in _data_actions(statement))
        for resource in _as_list(statement["Resource"]):
            if "Fn::GetAtt" in resource:
                # Stream reads name the table's stream; every other right names a table.
                attribute = "StreamArn" if stream_actions else "Arn"
                assert resource["Fn::GetAtt"][0] in tables and resource["Fn::GetAtt"][1] == attribute, (name, resource)
            else:
                match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/\w+", resource.get("Fn::Sub", ""))
                assert match and match.group(1) in tables, (name, resource)


def test_iam__each_consumer_reads_only_its_own_queue_and_scans_only_where_the_code_scans(app, template):
    from chalice.app import SQSEventConfig

    roles = _of_type(template, "AWS::IAM::Role")
    handlers = _chalice_handlers(app)
    for name, (kind, handler) in handlers.items():
        _, function = _function_with_handler(template, handler)
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        statements = [s for policy in roles[role_id]["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]
        actions = {action for statement in statements for action in _as_list(statement["Action"])}
        # Only reports and statements scan (API); the jobs find their work through sparse indexes.
        assert ("dynamodb:Scan" in actions) == (kind == "api"), name
        receiving = [s for s in statements if "sqs:ReceiveMessage" in _as_list(s["Action"])]
        if kind == "sqs":
            [source] = [s for s in app.event_sources if type(s) is SQSEventConfig and s.name == name]
            queue_id, _ = _queue_named(template, source.queue)
            assert [s["Resource"] for s in receiving] == [{"Fn::GetAtt": [queue_id, "Arn"]}], name
        else:
            assert receiving == [], name
        if name == "handle_grant_batches":
            assert "sqs:SendMessage" not in actions


def test_iam__role_policies_fit_iams_size_limit(template):
    for name, role in _of_type(template, "AWS::IAM::Role").items():
        assert infrastructure.estimated_policy_size(role) <= infrastructure.ROLE_POLICY_SIZE_LIMIT, name


# -- API ------------------------------------------------------------------------------------------------


def test_api__one_gateway_route_per_chalice_route_all_to_the_api_function(app, template):
    [api] = _of_type(template, "AWS::ApiGateway::RestApi").values()
    paths = api["Properties"]["Body"]["paths"]
    expected = {(path, method.lower()) for path, methods in app.routes.items() for method in methods}
    declared = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    assert declared == expected
    api_function_id, _ = _function_with_handler(template, "app.app")
    for path, method in declared:
        integration = paths[path][method]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        assert "${%s.Arn}" % api_function_id in integration["uri"]["Fn::Sub"]
    assert any(permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
               and permission["Properties"]["FunctionName"] == {"Ref": api_function_id}
               for permission in _of_type(template, "AWS::Lambda::Permission").values())
    [stage] = _of_type(template, "AWS::ApiGateway::Stage").values()
    [throttle] = stage["Properties"]["MethodSettings"]
    assert "ThrottlingRateLimit" in throttle and "ThrottlingBurstLimit" in throttle
    assert "AccessLogSetting" in stage["Properties"]
    assert "ApiUrl" in template["Outputs"]


# -- alarms ---------------------------------------------------------------------------------------------


def _metric_alarms(template: dict, namespace: str, metric: str) -> list[dict]:
    return [alarm["Properties"] for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values()
            if alarm["Properties"].get("Namespace") == namespace and alarm["Properties"].get("MetricName") == metric]


def test_alarms__every_dead_letter_queue_has_a_depth_alarm(template):
    dead_letter_ids = {
        resource["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for resource in _of_type(template, "AWS::SQS::Queue").values() if "RedrivePolicy" in resource["Properties"]
    }
    assert len(dead_letter_ids) >= 2
    failure_destinations = {
        mapping["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for mapping in _of_type(template, "AWS::Lambda::EventSourceMapping").values()
        if "DestinationConfig" in mapping["Properties"]
    } | {
        config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
        for config in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()
    }
    watched = {
        dimension["Value"]["Fn::GetAtt"][0]
        for alarm in _metric_alarms(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        for dimension in alarm["Dimensions"] if dimension["Name"] == "QueueName" and alarm["Threshold"] == 0
    }
    assert watched == dead_letter_ids | failure_destinations


def test_alarms__every_function_has_errors_and_throttles_alarms(template):
    functions = set(_of_type(template, "AWS::Lambda::Function"))
    for metric in ("Errors", "Throttles"):
        watched = {dimension["Value"]["Ref"] for alarm in _metric_alarms(template, "AWS/Lambda", metric)
                   for dimension in alarm["Dimensions"] if dimension["Name"] == "FunctionName"}
        assert watched == functions, metric


def test_alarms__tables_throttling_api_5xx_and_all_notify_the_topic(template):
    tables = set(_of_type(template, "AWS::DynamoDB::Table"))
    watched_tables = set()
    for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        for query in properties.get("Metrics", []):
            metric = query.get("MetricStat", {}).get("Metric", {})
            if metric.get("Namespace") == "AWS/DynamoDB":
                watched_tables.update(d["Value"]["Ref"] for d in metric["Dimensions"] if d["Name"] == "TableName")
        if "Metrics" in properties:
            assert sum("MetricStat" in query for query in properties["Metrics"]) <= 10
    assert watched_tables == tables
    assert _metric_alarms(template, "AWS/ApiGateway", "5XXError")
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


# -- the municipality onboarding stack ------------------------------------------------------------------


def test_municipality_template__custom_resource_properties_are_the_handlers(municipality):
    from chalicelib.api.tenant_handlers import PROPERTY_NAMES

    tenant = municipality["Resources"]["Tenant"]
    assert tenant["Type"] == "Custom::MunicipalityTenant"
    properties = dict(tenant["Properties"])
    service_token = properties.pop("ServiceToken")
    assert sorted(properties) == sorted(PROPERTY_NAMES)
    for name, value in properties.items():
        assert value == {"Ref": name}
        assert name in municipality["Parameters"]
    assert service_token == {"Fn::ImportValue": {"Fn::Sub": "${PlatformStackName}-OnboardingServiceToken"}}


def test_municipality_template__imports_what_the_platform_exports(committed):
    output = committed["Outputs"]["OnboardingServiceToken"]
    assert output["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-OnboardingServiceToken"}
    function_id = output["Value"]["Fn::GetAtt"][0]
    assert committed["Resources"][function_id]["Properties"]["Handler"] == \
        "chalicelib.api.tenant_handlers.register_tenant"


def test_municipality_template__password_is_hidden_and_long(municipality):
    password = municipality["Parameters"]["FirstStaffPassword"]
    assert password["NoEcho"] is True
    assert password["MinLength"] >= 12
    code = municipality["Parameters"]["MunicipalityCode"]
    assert re.fullmatch(code["AllowedPattern"], "252034") and not re.fullmatch(code["AllowedPattern"], "25203")


def test_example_parameters__fit_the_template_and_hold_no_password(municipality):
    entries = json.loads(NAGAHAMA.read_text(encoding="utf-8"))
    values = {entry["ParameterKey"]: entry["ParameterValue"] for entry in entries}
    assert len(values) == len(entries) and all(set(entry) == {"ParameterKey", "ParameterValue"} for entry in entries)
    assert "FirstStaffPassword" not in values
    parameters = municipality["Parameters"]
    assert set(values) <= set(parameters)
    required = {name for name, parameter in parameters.items() if "Default" not in parameter}
    assert required - set(values) == {"FirstStaffPassword"}
    for name, value in values.items():
        parameter = parameters[name]
        assert isinstance(value, str)
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], value), name
        if parameter["Type"] == "Number":
            assert int(value) >= parameter.get("MinValue", 0), name
    assert values["MunicipalityCode"] == "252034" and values["MunicipalityName"] == "長浜市"
