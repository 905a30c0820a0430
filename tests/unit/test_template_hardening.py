"""The platform template's hardening (issue 15, item 3), checked on the generated template.

Concurrency: every SQS mapping has a maximum concurrency, the consumers a burst could flood have reserved
concurrency, and the reservations leave Lambda's 100 unreserved executions in a default quota. Failures:
every asynchronously invoked function (the jobs, the onboarding custom resource) sends what keeps failing
to its own queue, which it may write and which alarms. Tracing: X-Ray active on every function and the API
stage, Powertools Tracer in the code, imported only on first use and off in tests. WAF: a regional web ACL
on the API stage with AWS managed rule groups and rate limits scoped to the sign-in and challenge routes.
Secrets: no function's environment holds a secret; only the functions that hash card serials are told the
secret's id and may read it.
"""
from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tools import infrastructure

ROOT = Path(__file__).resolve().parents[2]


def _of_type(template: dict, resource_type: str) -> dict:
    return {name: resource for name, resource in template["Resources"].items() if resource["Type"] == resource_type}


def _statements(role: dict) -> list[dict]:
    return [statement for policy in role["Properties"].get("Policies", []) for statement in policy["PolicyDocument"]["Statement"]]


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _role_of(template: dict, function_id: str) -> dict:
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return template["Resources"][role_id]


def _function_id(template: dict, handler: str) -> str:
    [function_id] = [name for name, resource in _of_type(template, "AWS::Lambda::Function").items()
                     if resource["Properties"]["Handler"] == handler]
    return function_id


def _depth_alarms(template: dict) -> dict[str, dict]:
    """queue logical id -> the alarm on its visible messages."""
    alarms = {}
    for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("Namespace") == "AWS/SQS" and properties.get("MetricName") == "ApproximateNumberOfMessagesVisible":
            for dimension in properties["Dimensions"]:
                if dimension["Name"] == "QueueName":
                    alarms[dimension["Value"]["Fn::GetAtt"][0]] = properties
    return alarms


# -- concurrency -----------------------------------------------------------------------------------------


def _sqs_mappings(template: dict) -> dict:
    queues = set(_of_type(template, "AWS::SQS::Queue"))
    return {name: mapping["Properties"] for name, mapping in _of_type(template, "AWS::Lambda::EventSourceMapping").items()
            if mapping["Properties"]["EventSourceArn"].get("Fn::GetAtt", [None])[0] in queues}


def test_sqs_mappings__each_has_a_maximum_concurrency_between_2_and_1000(app, template):
    from chalice.app import SQSEventConfig

    mappings = _sqs_mappings(template)
    assert len(mappings) == len([source for source in app.event_sources if type(source) is SQSEventConfig]) >= 2
    for name, mapping in mappings.items():
        assert 2 <= mapping["ScalingConfig"]["MaximumConcurrency"] <= 1000, name


def test_sqs_mappings__take_the_maximum_concurrency_the_handlers_declare(template):
    from chalicelib.api.conversion_handlers import CONVERSION_MAXIMUM_CONCURRENCY, handle_partner_conversions
    from chalicelib.api.grant_batch_handlers import GRANT_BATCH_MAXIMUM_CONCURRENCY, handle_grant_batches

    for handler, declared in ((handle_grant_batches, GRANT_BATCH_MAXIMUM_CONCURRENCY),
                              (handle_partner_conversions, CONVERSION_MAXIMUM_CONCURRENCY)):
        function_id = _function_id(template, f"{handler.func.__module__}.{handler.func.__name__}")
        [mapping] = [m for m in _sqs_mappings(template).values() if m["FunctionName"] == {"Ref": function_id}]
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == declared


def test_generator__gives_an_sqs_handler_without_a_declared_maximum_the_default():
    from chalice import Chalice

    other = Chalice(app_name="other")

    @other.on_sqs_message(queue="points-new-work", batch_size=3)
    def handle_new_work(event):  # pragma: no cover - never invoked
        return None

    [spec] = infrastructure.chalice_functions(other)
    assert spec.maximum_concurrency is None
    assert infrastructure.sqs_maximum_concurrency(spec) == infrastructure.DEFAULT_SQS_MAXIMUM_CONCURRENCY
    assert 2 <= infrastructure.DEFAULT_SQS_MAXIMUM_CONCURRENCY <= 1000


def test_burst_consumers__have_reserved_concurrency_covering_their_mapping_and_the_api_keeps_its_own(template):
    functions = _of_type(template, "AWS::Lambda::Function")
    api = functions[_function_id(template, "app.app")]["Properties"]
    assert api["ReservedConcurrentExecutions"] >= 100
    for handler in ("chalicelib.api.grant_batch_handlers.handle_grant_batches",
                    "chalicelib.api.conversion_handlers.handle_partner_conversions"):
        function_id = _function_id(template, handler)
        reserved = functions[function_id]["Properties"]["ReservedConcurrentExecutions"]
        [mapping] = [m for m in _sqs_mappings(template).values() if m["FunctionName"] == {"Ref": function_id}]
        # Below the mapping's maximum, Lambda would throttle the consumer against itself.
        assert mapping["ScalingConfig"]["MaximumConcurrency"] <= reserved < api["ReservedConcurrentExecutions"], handler


def test_reserved_concurrency__leaves_at_least_100_unreserved_in_a_default_quota_of_1000(template):
    reserved = sum(function["Properties"].get("ReservedConcurrentExecutions", 0)
                   for function in _of_type(template, "AWS::Lambda::Function").values())
    assert reserved > 200, "the consumers' reservations are missing"
    assert 1000 - reserved >= 100


def test_generator__refuses_reservations_that_leave_fewer_than_100_unreserved(app):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    config["stages"]["prod"]["lambda_functions"]["api_handler"]["reserved_concurrency"] = 900
    with pytest.raises(ValueError, match="unreserved"):
        infrastructure.platform_template(app, config)


def test_generator__refuses_a_reservation_below_the_mappings_maximum_concurrency(app):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text(encoding="utf-8"))
    config["stages"]["prod"]["lambda_functions"]["handle_partner_conversions"]["reserved_concurrency"] = 2
    with pytest.raises(ValueError, match="throttle"):
        infrastructure.platform_template(app, config)


# -- failures of asynchronous invocations ----------------------------------------------------------------


def _asynchronously_invoked(app, template) -> set[str]:
    """Function ids EventBridge or CloudFormation invoke: the rules' targets and the custom resource's token."""
    targets = {target["Arn"]["Fn::GetAtt"][0] for rule in _of_type(template, "AWS::Events::Rule").values()
               for target in rule["Properties"]["Targets"]}
    targets.add(template["Outputs"]["OnboardingServiceToken"]["Value"]["Fn::GetAtt"][0])
    schedules = [source for source in app.event_sources if type(source).__name__ == "ScheduledEventConfig"]
    assert len(targets) == len(schedules) + 1 >= 4
    return targets


def test_async_functions__each_sends_what_keeps_failing_to_its_own_queue_which_it_may_write(app, template):
    configs = {config["Properties"]["FunctionName"]["Ref"]: config["Properties"]
               for config in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()}
    queues = _of_type(template, "AWS::SQS::Queue")
    destinations = []
    for function_id in _asynchronously_invoked(app, template):
        config = configs[function_id]
        assert config["Qualifier"] == "$LATEST"
        assert config["MaximumRetryAttempts"] <= 2 and config["MaximumEventAgeInSeconds"] <= 6 * 3600
        destination = config["DestinationConfig"]["OnFailure"]["Destination"]
        queue_id = destination["Fn::GetAtt"][0]
        assert destination == {"Fn::GetAtt": [queue_id, "Arn"]}
        assert queues[queue_id]["Properties"]["SqsManagedSseEnabled"] is True
        # Lambda delivers the failure record with the function's own role.
        assert any("sqs:SendMessage" in _actions(statement) and statement["Resource"] == destination
                   for statement in _statements(_role_of(template, function_id))), function_id
        destinations.append(queue_id)
    assert len(set(destinations)) == len(destinations), "each function has its own failure queue"


def test_async_failure_queues__each_has_a_depth_alarm_on_the_alarm_topic(app, template):
    alarms = _depth_alarms(template)
    failure_queues = {config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
                      for config in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()}
    assert len(failure_queues) == len(_asynchronously_invoked(app, template))
    for queue_id in failure_queues:
        alarm = alarms[queue_id]
        assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_only_async_functions__have_an_invoke_config(app, template):
    configured = {config["Properties"]["FunctionName"]["Ref"]
                  for config in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()}
    assert configured == _asynchronously_invoked(app, template)


# -- tracing ---------------------------------------------------------------------------------------------


def test_every_function__traces_actively_and_its_role_may_send_traces(template):
    for function_id, function in _of_type(template, "AWS::Lambda::Function").items():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}, function_id
        granted = {action for statement in _statements(_role_of(template, function_id))
                   if statement["Resource"] == "*" for action in _actions(statement)}
        assert granted == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, function_id


def test_api_stage__traces_requests(template):
    [stage] = _of_type(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["TracingEnabled"] is True


def test_roles__grant_nothing_but_the_xray_actions_on_every_resource(template):
    for role_id, role in _of_type(template, "AWS::IAM::Role").items():
        for statement in _statements(role):
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "*" in resources:
                assert set(_actions(statement)) <= set(infrastructure.XRAY_ACTIONS), role_id


def test_import_app__imports_neither_the_tracer_nor_the_xray_sdk():
    code = ("import sys, app; "
            "print(sorted(m for m in sys.modules if m.startswith(('aws_xray_sdk', 'aws_lambda_powertools.tracing'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_app__traces_every_kind_of_lambda_entry(app):
    from chalicelib.observability import http_middleware, tracing_middleware

    registered = list(app.middleware_handlers)
    assert (tracing_middleware, "all") in registered
    # Outside the request log, so the log line and the metrics belong to the traced entry.
    assert registered.index((tracing_middleware, "all")) < registered.index((http_middleware, "http"))


def test_api_request__runs_with_the_tracer_disabled(app, monkeypatch):
    from chalice.test import Client

    from chalicelib import observability

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    observability.get_tracer.cache_clear()
    try:
        with Client(app) as client:
            response = client.http.get("/v1/health")
        assert response.status_code == 200 and json.loads(response.body) == {"status": "ok"}
        assert observability.get_tracer.cache_info().currsize == 1, "the request did not go through the tracer"
        assert observability.get_tracer().disabled
        assert observability.get_tracer() is observability.get_tracer(), "one tracer per container"
    finally:
        observability.get_tracer.cache_clear()


class _RecordingTracer:
    """Stands in for Powertools' Tracer: records what each entry asked to capture."""

    def __init__(self):
        self.captured: list[tuple[str, bool | None]] = []
        self.annotations: dict[str, str] = {}

    def put_annotation(self, key, value):
        self.annotations[key] = value

    def capture_lambda_handler(self, handler, capture_response=None):
        self.captured.append((handler.__name__, capture_response))
        return handler


def test_tracing_middleware__captures_api_sqs_scheduled_and_plain_entries_without_their_responses(monkeypatch):
    from chalice import Chalice, Rate
    from chalice.test import Client

    from chalicelib import observability

    tracer = _RecordingTracer()
    monkeypatch.setattr(observability, "get_tracer", lambda: tracer)
    other = Chalice(app_name="traced")
    other.register_middleware(observability.tracing_middleware, "all")

    @other.route("/v1/things/{thing_id}")
    def thing(thing_id):
        return {"thing_id": thing_id}

    @other.on_sqs_message(queue="points-things")
    def handle_things(event):
        return {"batchItemFailures": []}

    @other.schedule(Rate(5, unit=Rate.MINUTES))
    def tidy(event):
        return {"tidied": 1}

    @other.lambda_function(name="plain")
    def plain(event, context):
        return {"plain": event["value"]}

    with Client(other) as client:
        assert json.loads(client.http.get("/v1/things/abc").body) == {"thing_id": "abc"}
        assert client.lambda_.invoke("handle_things", client.events.generate_sqs_event(["m"], "points-things")).payload == \
            {"batchItemFailures": []}
        assert client.lambda_.invoke("tidy", client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])).payload == {"tidied": 1}
        assert client.lambda_.invoke("plain", {"value": 7}).payload == {"plain": 7}
    assert tracer.captured == [("api_request", False), ("sqs_batch", False), ("scheduled_job", False),
                               ("lambda_function", False)]
    # The route template, not the requested path.
    assert tracer.annotations == {"route": "GET /v1/things/{thing_id}"}


def test_requirements__pin_the_xray_sdk_the_tracer_needs():
    requirements = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^aws-xray-sdk==\d+\.\d+\.\d+$", requirements, re.MULTILINE)


def test_local_cloud_environment__turns_tracing_off():
    from tools.localcloud.processes import local_aws_environment

    assert local_aws_environment("http://127.0.0.1:1", "http://127.0.0.1:2")["POWERTOOLS_TRACE_DISABLED"] == "true"


# -- WAF -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_acl(template) -> dict:
    [acl] = _of_type(template, "AWS::WAFv2::WebACL").values()
    return acl["Properties"]


def _rule(web_acl: dict, name: str) -> dict:
    [rule] = [rule for rule in web_acl["Rules"] if rule["Name"] == name]
    return rule


def test_web_acl__is_regional_and_associated_with_the_api_stage(template, web_acl):
    [stage] = _of_type(template, "AWS::ApiGateway::Stage").values()
    [association] = _of_type(template, "AWS::WAFv2::WebACLAssociation").values()
    acl_id = next(iter(_of_type(template, "AWS::WAFv2::WebACL")))
    assert web_acl["Scope"] == "REGIONAL" and web_acl["DefaultAction"] == {"Allow": {}}
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert association["Properties"]["ResourceArn"] == {"Fn::Sub": (
        "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/" + stage["Properties"]["StageName"])}
    assert "RestAPIStage" in association["DependsOn"]


def test_web_acl__runs_the_aws_managed_rule_groups(web_acl):
    groups = {rule["Statement"]["ManagedRuleGroupStatement"]["Name"]: rule for rule in web_acl["Rules"]
              if "ManagedRuleGroupStatement" in rule["Statement"]}
    assert set(groups) == {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                           "AWSManagedRulesAmazonIpReputationList"}
    for rule in groups.values():
        assert rule["Statement"]["ManagedRuleGroupStatement"]["VendorName"] == "AWS"
        assert rule["OverrideAction"] == {"None": {}}, "a managed group left in count mode blocks nothing"


def test_web_acl__metrics_and_sampled_requests_on_for_the_acl_and_every_rule(web_acl):
    names = []
    for visibility in [web_acl["VisibilityConfig"]] + [rule["VisibilityConfig"] for rule in web_acl["Rules"]]:
        assert visibility["CloudWatchMetricsEnabled"] is True and visibility["SampledRequestsEnabled"] is True
        names.append(json.dumps(visibility["MetricName"]))
    assert len(set(names)) == len(names)
    assert sorted(rule["Priority"] for rule in web_acl["Rules"]) == list(range(len(web_acl["Rules"])))


def _scope(statement: dict) -> tuple[set[str], re.Pattern]:
    """(methods, compiled path regex) of a scope statement: one method AND one URI path regex."""
    parts = statement["AndStatement"]["Statements"]
    [method] = [part["ByteMatchStatement"] for part in parts if "ByteMatchStatement" in part]
    [path] = [part["RegexMatchStatement"] for part in parts if "RegexMatchStatement" in part]
    assert method["FieldToMatch"] == {"Method": {}} and method["PositionalConstraint"] == "EXACTLY"
    assert path["FieldToMatch"] == {"UriPath": {}}
    return {method["SearchString"]}, re.compile(path["RegexString"])


# (rule, paths the rule must count, with the execute-api stage prefix or without, paths it must not)
RATE_RULE_PATHS = {
    "StaffSignInRate": (["/v/v1/staff/sessions", "/v1/staff/sessions", "/v/v1/staff/sessions/"],
                        ["/v/v1/staff/sessions/current", "/v/v1/staff/sessionsX", "/v/v1/challenges"]),
    "ResidentSignInRate": (["/v/v1/resident-sessions", "/v/v1/portal/sign-in-requests",
                            "/v/v1/portal/sign-in-requests/K7Q2M9/card-response"],
                           ["/v/v1/resident-sessions/current", "/v/v1/portal/sign-in-requests/K7Q2M9",
                            "/v/v1/portal/sign-in-requests/K7Q2M9/session", "/v/v1/staff/sessions"]),
    "ChallengeRate": (["/v/v1/challenges", "/v1/challenges"], ["/v/v1/challenges/abc", "/v/v1/registrations"]),
}


def test_rate_rules__count_per_source_ip_in_five_minutes_only_the_sign_in_and_challenge_posts(app, template, web_acl):
    for name, (counted, ignored) in RATE_RULE_PATHS.items():
        rule = _rule(web_acl, name)
        statement = rule["Statement"]["RateBasedStatement"]
        assert statement["AggregateKeyType"] == "IP" and statement["EvaluationWindowSec"] == 300
        parameter = template["Parameters"][statement["Limit"]["Ref"]]
        assert parameter["Type"] == "Number" and 10 <= parameter["Default"] <= 1000
        methods, regex = _scope(statement["ScopeDownStatement"])
        assert methods == {"POST"}
        for path in counted:
            assert regex.search(path), (name, path)
        for path in ignored:
            assert not regex.search(path), (name, path)
    # Every path counted is a POST route of the app (with the stage prefix removed).
    for counted, _ in RATE_RULE_PATHS.values():
        for path in counted:
            plain = re.sub(r"^/v(?=/v1/)", "", path).rstrip("/")
            assert any(re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", route), plain) and "POST" in methods
                       for route, methods in app.routes.items()), path


def test_rate_rules__answer_429_with_the_projects_json_error_in_japanese(web_acl):
    for name in RATE_RULE_PATHS:
        block = _rule(web_acl, name)["Action"]["Block"]["CustomResponse"]
        assert block["ResponseCode"] == 429
        body = web_acl["CustomResponseBodies"][block["CustomResponseBodyKey"]]
        assert body["ContentType"] == "APPLICATION_JSON"
        error = json.loads(body["Content"])["error"]
        assert error["code"] == "too_many_requests"
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", error["message"]), "the message is not Japanese"


def test_rate_rules__each_has_an_alarm_on_its_blocked_requests(template, web_acl):
    watched = set()
    for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("Namespace") == "AWS/WAFV2" and properties.get("MetricName") == "BlockedRequests":
            dimensions = {dimension["Name"]: dimension["Value"] for dimension in properties["Dimensions"]}
            assert dimensions["WebACL"] == web_acl["Name"]
            watched.add(dimensions["Rule"])
    assert watched == {_rule(web_acl, name)["VisibilityConfig"]["MetricName"] for name in RATE_RULE_PATHS}


def test_common_rule_set__lets_bulk_uploads_and_feeds_through_and_blocks_other_large_bodies(app, web_acl):
    from chalicelib.api.grant_batch_routes import MAX_UPLOAD_BODY_BYTES
    from chalicelib.api.http import MAX_BODY_BYTES
    from chalicelib.api.identity_routes import FEED_MAX_BYTES

    # Why: these routes take more than the 8 KB the managed rule allows.
    assert min(MAX_UPLOAD_BODY_BYTES, FEED_MAX_BYTES) > 8 * 1024
    common = _rule(web_acl, "CommonRuleSet")["Statement"]["ManagedRuleGroupStatement"]
    assert common["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    large = _rule(web_acl, "LargeBodyOutsideUploads")
    assert large["Priority"] > _rule(web_acl, "CommonRuleSet")["Priority"]
    label, exempt = large["Statement"]["AndStatement"]["Statements"]
    assert label == {"LabelMatchStatement": {"Scope": "LABEL",
                                             "Key": "awswaf:managed:aws:core-rule-set:SizeRestrictions_Body"}}
    methods, regex = _scope(exempt["NotStatement"]["Statement"])
    assert methods == {"POST"}
    for path in ("/v/v1/municipalities/252034/grant-batches", "/v/v1/platform/revocation-feeds",
                 "/v/v1/platform/renewal-feeds"):
        assert regex.search(path), path
    for path in ("/v/v1/municipalities/252034/grants", "/v/v1/municipalities/252034/grant-batches/b1",
                 "/v/v1/payments", "/v/v1/staff/sessions"):
        assert not regex.search(path), path
    assert large["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    error = json.loads(web_acl["CustomResponseBodies"]["request_too_large"]["Content"])["error"]
    assert error["code"] == "request_too_large"
    # Every other route refuses large bodies itself, well under what API Gateway accepts.
    assert MAX_BODY_BYTES <= 64 * 1024


def test_generator__refuses_a_waf_rule_naming_a_route_the_app_does_not_have(app, monkeypatch):
    monkeypatch.setattr(infrastructure, "WAF_RATE_RULES", (
        ("StaffSignInRate", "StaffSignInRateLimit", 100, "staff sign-in", (("POST", "/v1/staff/login"),)),
    ))
    with pytest.raises(ValueError, match="/v1/staff/login"):
        infrastructure._web_acl(app, "v")


# -- the card-hash secret --------------------------------------------------------------------------------


SECRET_LIKE_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE|CREDENTIAL|_KEY$", re.IGNORECASE)


def test_environment__holds_no_secret_and_no_secret_reference(template):
    for function_id, function in _of_type(template, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        for name, value in variables.items():
            text = json.dumps(value)
            assert "resolve:secretsmanager" not in text and "resolve:ssm" not in text, (function_id, name)
            if isinstance(value, str):
                # A literal long random-looking string is a secret pasted in.
                assert not re.fullmatch(r"[A-Za-z0-9+/=_-]{24,}", value), (function_id, name)
            if SECRET_LIKE_NAME.search(name) or SECRET_LIKE_NAME.search(name.removesuffix("_ID")):
                # A secret's variable only names it: the id of a parameter, never a value.
                assert name.endswith("_ID") and value == {"Ref": "CardHashSecretId"}, (function_id, name)


def test_environment_check__would_catch_a_dynamic_reference_or_a_pasted_secret():
    def finds(variables: dict) -> bool:
        template = {"Resources": {"F": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": variables}}}}}
        try:
            test_environment__holds_no_secret_and_no_secret_reference(template)
        except AssertionError:
            return True
        return False

    assert finds({"CARD_HASH_SECRET": {"Fn::Sub": "{{resolve:secretsmanager:${CardHashSecretId}:SecretString}}"}})
    assert finds({"SOMETHING": "q8Zr3vX1bN7mK2pL9sT4wY6cF0hJ5dGa"})
    assert finds({"CARD_HASH_SECRET": "short"})
    assert not finds({"CARD_HASH_SECRET_ID": {"Ref": "CardHashSecretId"}, "CARD_TRUST_STORE": "chalicelib/trust/a.pem"})


def _reaches(function, names: set[str], seen: set | None = None) -> bool:
    """Whether a function's code, or a function of its module that it calls, names any of `names`."""
    seen = set() if seen is None else seen
    module = sys.modules[function.__module__]

    def walk(code) -> bool:
        if code in seen:
            return False
        seen.add(code)
        for name in code.co_names:
            if name in names:
                return True
            target = getattr(module, name, None)
            if isinstance(target, types.FunctionType) and target.__module__ == module.__name__ and walk(target.__code__):
                return True
        return any(walk(const) for const in code.co_consts if isinstance(const, types.CodeType))

    return walk(function.__code__)


def _user_function(app, name: str):
    handler = app.handler_map[name]
    function = getattr(handler, "func", handler)
    return getattr(function, "_original_func", function)


def test_card_hash_secret_id__set_exactly_where_certificate_serials_are_hashed(app, template):
    hashing = {"get_card_authority", "authority_from_settings", "card_hash_secret", "get_hash_secret"}
    expected = set()
    if any(_reaches(inspect.unwrap(entry.view_function), hashing) for methods in app.routes.values() for entry in methods.values()):
        expected.add("api_handler")
    for function in app.pure_lambda_functions:
        if _reaches(_user_function(app, function.name), hashing):
            expected.add(function.name)
    for source in app.event_sources:
        if _reaches(_user_function(app, source.name), hashing):
            expected.add(source.name)
    assert expected == set(infrastructure.READS_CARD_HASH_SECRET)
    names = template["Metadata"]["Chalice"]["functions"]
    for name, handler in names.items():
        variables = template["Resources"][_function_id(template, handler)]["Properties"]["Environment"]["Variables"]
        if name in expected:
            assert variables["CARD_HASH_SECRET_ID"] == {"Ref": "CardHashSecretId"}, name
        else:
            assert "CARD_HASH_SECRET_ID" not in variables, name


def test_card_hash_reachability__is_seen_through_a_modules_helpers():
    module = types.ModuleType("fake_handlers")
    exec("def helper():\n    return deps.get_card_authority()\n\ndef handler(event):\n    return helper()\n\n"
         "def other(event):\n    return deps.get_ledger_store()\n", module.__dict__)
    sys.modules["fake_handlers"] = module
    try:
        assert _reaches(module.handler, {"get_card_authority"})
        assert not _reaches(module.other, {"get_card_authority"})
    finally:
        del sys.modules["fake_handlers"]


def test_card_hash_secret__only_the_hashing_functions_roles_may_read_it_and_only_that_secret(template):
    names = template["Metadata"]["Chalice"]["functions"]
    readers = {template["Resources"][_function_id(template, names[name])]["Properties"]["Role"]["Fn::GetAtt"][0]
               for name in infrastructure.READS_CARD_HASH_SECRET}
    assert readers
    for role_id, role in _of_type(template, "AWS::IAM::Role").items():
        reading = [statement for statement in _statements(role)
                   if any(action.startswith("secretsmanager:") for action in _actions(statement))]
        if role_id in readers:
            [statement] = reading
            assert _actions(statement) == ["secretsmanager:GetSecretValue"]
            assert statement["Resource"] == infrastructure.card_hash_secret_arn()
        else:
            assert reading == [], role_id


def _evaluate(node, parameters: dict, conditions: dict):
    """A small CloudFormation evaluator for the intrinsic functions the secret's ARN uses."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "ap-northeast-1", "AWS::AccountId": "123456789012"}
    if isinstance(node, list):
        return [_evaluate(item, parameters, conditions) for item in node]
    if not isinstance(node, dict):
        return node
    [(function, argument)] = node.items()
    if function == "Ref":
        return {**pseudo, **parameters}[argument]
    if function == "Fn::Sub":
        return re.sub(r"\$\{([\w:]+)\}", lambda match: {**pseudo, **parameters}[match.group(1)], argument)
    if function == "Fn::Split":
        separator, text = _evaluate(argument, parameters, conditions)
        return text.split(separator)
    if function == "Fn::Select":
        index, items = _evaluate(argument, parameters, conditions)
        return items[index]
    if function == "Fn::Equals":
        left, right = _evaluate(argument, parameters, conditions)
        return left == right
    if function == "Fn::If":
        condition, when_true, when_false = argument
        chosen = when_true if _evaluate(conditions[condition], parameters, conditions) else when_false
        return _evaluate(chosen, parameters, conditions)
    raise AssertionError(f"unexpected {function}")


def test_card_hash_secret_arn__from_a_secret_name_or_a_full_arn(template):
    resource = infrastructure.card_hash_secret_arn()
    conditions = template["Conditions"]
    name = template["Parameters"]["CardHashSecretId"]["Default"]
    arn = _evaluate(resource, {"CardHashSecretId": name}, conditions)
    assert arn == f"arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:{name}-??????"
    given = "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:points/card-hash-AbCdEf"
    assert _evaluate(resource, {"CardHashSecretId": given}, conditions) == given
