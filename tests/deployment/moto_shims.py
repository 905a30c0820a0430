"""The few things moto 5.2's CloudFormation lacks to deploy this project's templates in process.

The deployment test (`test_cloudformation_deploy.py`) creates the platform stack and a municipality stack
on moto. Everything moto implements runs as moto runs it; this module fills only these gaps, each a few
lines, and `installed()` puts them in place for one test and takes them out again:

1. **Resource types moto's CloudFormation does not know.** Moto skips such a resource with a warning, so
   the stack "completes" without it, and fails any `Fn::GetAtt` on it.
   - Where moto has the service's API, the shim creates the resource through moto's backend, so the test
     reads it back like any other: `AWS::WAFv2::WebACL` and `AWS::WAFv2::WebACLAssociation` (the web ACL
     is then attached to the API stage), `AWS::Lambda::EventInvokeConfig`, `AWS::ApiGateway::Stage`.
   - The others (`RECORDED_TYPES`: CloudWatch alarms, the API Gateway account, SNS subscriptions, SQS
     queue policies, X-Ray sampling rules, log metric filters) get `RecordedResource`: created, answering
     `Ref` and the `Fn::GetAtt` attributes AWS documents for the type, its resolved properties kept.
   A type neither moto nor this module knows still deploys silently on moto; the test therefore checks
   that every resource of the template was created and names the type to add here.
2. **`AWS::ApiGateway::RestApi` with a `Body`**: moto creates the API but ignores the body, and its
   importer takes OpenAPI 3 only, while Chalice writes Swagger 2.0; the deployment then fails ("The REST
   API doesn't contain any methods"). `RestApiWithBody` creates the resources, methods and
   `x-amazon-apigateway-integration`s the body declares through moto's API Gateway backend.
3. **`AWS::Lambda::Function`**: moto's CloudFormation model drops `TracingConfig` and `Architectures`;
   `FunctionWithSettings` sets them on the function moto created.
4. **Custom resources**: moto runs the function in a Docker container (there is no Docker engine in the
   test) and gives it a ResponseURL on `host.docker.internal`. `run_functions_in_process` runs the
   function's `Handler` instead, in this process, imported from the function's own code as moto holds it
   (the zip the stack's `Code` names in S3, unpacked), with the function's environment as moto stored it
   from the template (a `{{resolve:secretsmanager:…}}` dynamic reference is resolved from moto's Secrets
   Manager, as CloudFormation resolves it at deployment); the ResponseURL points at a moto server thread
   on 127.0.0.1 (`MOTO_PORT`), so the handler's own HTTP PUT reaches moto's CloudFormation, which records
   the answer and completes the stack. Third-party libraries come from the test's virtualenv (botocore
   must be the one moto intercepts), so the zip the test uploads holds only the application part of the
   package (`scripts/package-lambda.sh --app-only`): app.py, chalicelib/ and Chalice's runtime.
5. **Speed**: moto parses every template with PyYAML's pure-Python loader, about 20 s for the 290 KB
   JSON platform template; a template that is JSON is read with `json` (JSON is YAML: the same result).
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
import threading
import traceback
from typing import Any, Iterator

from moto.apigateway import models as apigateway_models
from moto.awslambda.models import LambdaFunction, lambda_backends
from moto.cloudformation import custom_model, parsing
from moto.cloudformation import models as cloudformation_models
from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.wafv2.models import wafv2_backends

# Type → the Fn::GetAtt attributes AWS documents for it (each answered with a made-up but well-formed
# value). Ref answers the physical id.
RECORDED_TYPES: dict[str, tuple[str, ...]] = {
    "AWS::ApiGateway::Account": ("Id",),
    "AWS::CloudWatch::Alarm": ("Arn",),
    "AWS::Logs::MetricFilter": (),
    "AWS::SNS::Subscription": ("Arn",),
    "AWS::SQS::QueuePolicy": ("Id",),
    "AWS::XRay::SamplingRule": ("RuleArn",),
}

# Every stand-in created while the shims are installed, by logical id (the test reads their properties).
recorded: dict[str, "RecordedResource"] = {}


class RecordedResource:
    """A resource of a type moto lacks: created, referable, and kept with its resolved properties."""

    def __init__(self, resource_type: str, logical_id: str, name: str, properties: dict, account_id: str, region: str):
        self.resource_type = resource_type
        self.logical_id = logical_id
        self.properties = properties
        self.physical_resource_id = str(properties.get("Name") or properties.get("AlarmName") or name)
        service = resource_type.split("::")[1].lower()
        self.arn = f"arn:aws:{service}:{region}:{account_id}:{logical_id.lower()}/{self.physical_resource_id}"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        resource = cls(kwargs["ResourceType"], kwargs["LogicalId"], resource_name,
                       cloudformation_json.get("Properties", {}), account_id, region_name)
        recorded[resource.logical_id] = resource
        return resource

    @classmethod
    def has_cfn_attr(cls, attribute: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute: str) -> Any:
        if attribute not in RECORDED_TYPES[self.resource_type]:
            # An attribute this stand-in does not know fails the stack, as on AWS, rather than resolving
            # to nothing: add it to RECORDED_TYPES.
            raise UnformattedGetAttTemplateException()
        if attribute in ("Arn", "RuleArn"):
            return self.arn
        if attribute == "Capacity":
            return 0
        return self.physical_resource_id

    def is_created(self) -> bool:
        return True


class RestApiWithBody(apigateway_models.RestAPI):
    """Moto's RestApi, plus the resources, methods and integrations of the template's Swagger `Body`.

    Built here rather than by moto's importer (`put_rest_api`, which refuses Swagger 2.0 by its version
    label only): the importer looks every parent up by path, which takes seconds for this API's 65 paths."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        api = apigateway_models.RestAPI.create_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = apigateway_models.apigateway_backends[account_id][region_name]
        paths = (cloudformation_json["Properties"].get("Body") or {}).get("paths", {})
        resource_ids = {"": api.default.id}
        for path in sorted(paths):
            parent = ""
            for part in path.strip("/").split("/") if path != "/" else []:
                child = f"{parent}/{part}"
                if child not in resource_ids:
                    resource_ids[child] = backend.create_resource(api.id, resource_ids[parent], part).id
                parent = child
            for method, declaration in paths[path].items():
                method = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                backend.put_method(api.id, resource_ids[parent], method, "NONE")
                integration = declaration.get("x-amazon-apigateway-integration")
                if integration:
                    backend.put_integration(api.id, resource_ids[parent], method, integration_type=integration["type"],
                                            uri=integration["uri"], integration_method=integration["httpMethod"])
        return api


class _BackendShim:
    """A resource made through a moto backend that has the API but no CloudFormation model."""

    physical_resource_id = ""
    attributes: dict[str, Any] = {}

    @classmethod
    def has_cfn_attr(cls, attribute: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute: str) -> Any:
        if attribute not in self.attributes:
            raise UnformattedGetAttTemplateException()
        return self.attributes[attribute]

    def is_created(self) -> bool:
        return True


class StageModel(_BackendShim):
    """An API Gateway stage, created through moto's backend (moto has no CloudFormation model for it).
    Moto's Deployment has no physical id, so `Ref` to it resolves to the model itself."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        backend = apigateway_models.apigateway_backends[account_id][region_name]
        deployment = properties["DeploymentId"]
        backend.create_stage(
            properties["RestApiId"], properties["StageName"], getattr(deployment, "id", deployment),
            variables=properties.get("Variables"), description=properties.get("Description", ""),
            tracing_enabled=properties.get("TracingEnabled"))
        model = cls()
        model.physical_resource_id = properties["StageName"]
        return model


class FunctionWithSettings(LambdaFunction):
    """Moto's function, keeping the TracingConfig and Architectures its CloudFormation model drops."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        function = LambdaFunction.create_from_cloudformation_json(
            resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties = cloudformation_json["Properties"]
        function.tracing_config = properties.get("TracingConfig", function.tracing_config)
        function.architectures = properties.get("Architectures", function.architectures)
        return function


def _search_strings_as_the_api_sends_them(value):
    """CloudFormation takes a ByteMatchStatement's SearchString as text; the WAFv2 API, which moto's backend
    serves, as a base64 blob."""
    import base64

    if isinstance(value, list):
        return [_search_strings_as_the_api_sends_them(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _search_strings_as_the_api_sends_them(item) for key, item in value.items()}
    if isinstance(converted.get("SearchString"), str) and "FieldToMatch" in converted:
        converted["SearchString"] = base64.b64encode(converted["SearchString"].encode("utf-8")).decode("ascii")
    return converted


class WebACLModel(_BackendShim):
    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = _search_strings_as_the_api_sends_them(cloudformation_json["Properties"])
        acl = wafv2_backends[account_id][region_name].create_web_acl(
            properties.get("Name", resource_name), properties["VisibilityConfig"], properties["DefaultAction"],
            properties["Scope"], properties.get("Description", ""), properties.get("Tags", []),
            properties.get("Rules", []), properties.get("AssociationConfig"), properties.get("CaptchaConfig"),
            properties.get("ChallengeConfig"), properties.get("CustomResponseBodies"), properties.get("TokenDomains"))
        model = cls()
        model.physical_resource_id = f"{acl.name}|{acl.id}|{properties['Scope']}"  # what Ref answers on AWS
        model.attributes = {"Arn": acl.arn, "Id": acl.id, "Capacity": acl.capacity,
                            "LabelNamespace": f"awswaf:{account_id}:webacl:{acl.name}:"}
        return model


class WebACLAssociationModel(_BackendShim):
    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = cloudformation_json["Properties"]
        wafv2_backends[account_id][region_name].associate_web_acl(properties["WebACLArn"], properties["ResourceArn"])
        model = cls()
        model.physical_resource_id = resource_name
        return model


class EventInvokeConfigModel(_BackendShim):
    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        properties = dict(cloudformation_json["Properties"])
        function_name = properties.pop("FunctionName")
        properties.pop("Qualifier", None)  # moto keeps one configuration per function ($LATEST)
        lambda_backends[account_id][region_name].put_function_event_invoke_config(function_name, properties)
        model = cls()
        model.physical_resource_id = resource_name
        return model


SHIMMED_CLASSES: dict[str, Any] = {
    "AWS::ApiGateway::RestApi": RestApiWithBody,
    "AWS::ApiGateway::Stage": StageModel,
    "AWS::Lambda::Function": FunctionWithSettings,
    "AWS::WAFv2::WebACL": WebACLModel,
    "AWS::WAFv2::WebACLAssociation": WebACLAssociationModel,
    "AWS::Lambda::EventInvokeConfig": EventInvokeConfigModel,
}


@contextlib.contextmanager
def installed(monkeypatch) -> Iterator[None]:
    """Install shims 1–3 and 5 for the duration of a test; `monkeypatch` undoes them (shim 4 is
    `run_functions_in_process`)."""
    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str):
        if resource_type in SHIMMED_CLASSES:
            return SHIMMED_CLASSES[resource_type]
        if resource_type in RECORDED_TYPES and resource_type not in parsing.get_model_map():
            return RecordedResource
        return original(resource_type)

    def parse_template(template: str) -> dict:
        try:
            return json.loads(template)
        except ValueError:
            return original_parse_template(template)

    original_parse_template = cloudformation_models.Stack.parse_template
    recorded.clear()
    monkeypatch.setattr(parsing, "resource_class_from_type", resource_class_from_type)
    monkeypatch.setattr(cloudformation_models.Stack, "parse_template", staticmethod(parse_template))
    try:
        yield
    finally:
        recorded.clear()


# -- custom resources: the packaged handler, in process -------------------------------------------------

# {{resolve:secretsmanager:<name or ARN>:SecretString[:<json key>[:…]]}}
_DYNAMIC_SECRET = re.compile(r"\{\{resolve:secretsmanager:(.+?):SecretString(?::([^:}]*))?(?::[^}]*)?\}\}")
_PACKAGED_TOP_LEVEL = ("app", "chalice", "chalicelib")


class Invocation:
    """One function invocation run by the shim: its event, what it returned, any exception, and the
    answers moto's CloudFormation received for its request (moto drops a FAILED one; this keeps it)."""

    def __init__(self, function_name: str, handler: str, event: dict):
        self.function_name = function_name
        self.handler = handler
        self.event = event
        self.answers: list[dict] = []
        self.result: Any = None
        self.error: str | None = None
        self.module_file: str | None = None
        self.done = threading.Event()


def _is_packaged_module(name: str) -> bool:
    return name.split(".")[0] in _PACKAGED_TOP_LEVEL


@contextlib.contextmanager
def packaged_modules(code_root: str) -> Iterator[None]:
    """Import app, chalice and chalicelib from the function's code, not from the checkout or the
    virtualenv, and put the test process's own modules back afterwards."""
    saved = {name: module for name, module in sys.modules.items() if _is_packaged_module(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, code_root)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(code_root)
        for name in [name for name in sys.modules if _is_packaged_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _unpacked_code(function, folder: str) -> str:
    """The function's deployment package, unpacked once per distinct zip."""
    import hashlib
    import io
    import zipfile

    root = os.path.join(folder, hashlib.sha256(function.code_bytes).hexdigest()[:16])
    if not os.path.isdir(root):
        with zipfile.ZipFile(io.BytesIO(function.code_bytes)) as archive:
            archive.extractall(root)
    return root


def _resolve_dynamic_references(value: str, secrets_client) -> str:
    def secret(match: re.Match) -> str:
        text = secrets_client.get_secret_value(SecretId=match.group(1))["SecretString"]
        return json.loads(text)[match.group(2)] if match.group(2) else text

    return _DYNAMIC_SECRET.sub(secret, value)


def _lambda_context(function_name: str, request_id: str):
    class Context:
        aws_request_id = request_id
        function_name = ""
        function_version = "$LATEST"
        invoked_function_arn = ""
        memory_limit_in_mb = 1024
        log_group_name = ""
        log_stream_name = ""

        def get_remaining_time_in_millis(self) -> int:
            return 60_000

    context = Context()
    context.function_name = function_name
    context.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    return context


@contextlib.contextmanager
def run_functions_in_process(monkeypatch, code_folder: str, region: str) -> Iterator[list[Invocation]]:
    """Shim 4: moto's Lambda invocations run the function's Handler from its own code (unpacked under
    `code_folder`), in this process, and a custom resource's ResponseURL reaches moto's CloudFormation
    through a local moto server thread.

    Yields the list of invocations; each has a `done` event the test waits on (the custom resource is
    invoked on moto's own thread, as CloudFormation invokes it asynchronously)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    monkeypatch.setenv("MOTO_PORT", str(port))
    # Moto addresses the answer to its Docker Lambda's view of the host; the handler runs here.
    monkeypatch.setattr(custom_model.settings, "moto_server_host", lambda: "http://127.0.0.1")
    invocations: list[Invocation] = []
    lock = threading.Lock()  # one invocation at a time: each swaps the process's modules and environment

    def invoke(function: LambdaFunction, body, request_headers, response_headers):
        event = json.loads(body) if isinstance(body, (str, bytes)) else body
        invocation = Invocation(function.function_name, function.handler, event)
        invocations.append(invocation)
        with lock:
            try:
                code_root = _unpacked_code(function, code_folder)
                secrets = boto3.client("secretsmanager", region_name=region)
                # What Lambda gives a function: its template environment and the runtime's own variables,
                # nothing of this test process (its table prefix or endpoints must not leak in).
                environment = {name: _resolve_dynamic_references(str(value), secrets)
                               for name, value in (function.environment_vars or {}).items()}
                environment.update({
                    "AWS_REGION": region, "AWS_DEFAULT_REGION": region, "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                    "LAMBDA_TASK_ROOT": code_root, "PATH": os.environ.get("PATH", ""), "LANG": "en_US.UTF-8", "TZ": ":UTC",
                })
                saved_environment, saved_directory = dict(os.environ), os.getcwd()
                os.environ.clear()
                os.environ.update(environment)
                os.chdir(code_root)  # Lambda runs a function from its task root
                try:
                    with packaged_modules(code_root):
                        module_name, _, attribute = function.handler.rpartition(".")
                        module = importlib.import_module(module_name)
                        invocation.module_file = module.__file__
                        invocation.result = getattr(module, attribute)(
                            event, _lambda_context(function.function_name, event.get("RequestId", "request")))
                finally:
                    os.chdir(saved_directory)
                    os.environ.clear()
                    os.environ.update(saved_environment)
            except BaseException:  # the test reports it; moto's invoking thread would swallow it
                invocation.error = traceback.format_exc()
            finally:
                invocation.done.set()
        return json.dumps(invocation.result)

    from moto.cloudformation.responses import CloudFormationResponse

    process_answer = CloudFormationResponse.process_cfn_response

    def recorded_answer(response: CloudFormationResponse):
        answer = json.loads(response.body)
        for invocation in invocations:
            if invocation.event.get("RequestId") == answer.get("RequestId"):
                invocation.answers.append(answer)
        return process_answer(response)

    monkeypatch.setattr(LambdaFunction, "invoke", invoke)
    monkeypatch.setattr(CloudFormationResponse, "process_cfn_response", recorded_answer)
    try:
        yield invocations
    finally:
        server.stop()
