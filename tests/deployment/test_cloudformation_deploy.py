"""Deployment test: the committed templates deploy on moto's CloudFormation, in process.

The platform stack (`infrastructure/platform.json`, read as committed) is created from the application
package the way an operator deploys it (the zip uploaded to the code bucket, the card-hash secret already
in Secrets Manager) and must reach CREATE_COMPLETE with every resource of the template created. Then what
CloudFormation made is compared with what the template asks, generically, so the check grows with the
template: every table with its keys, indexes and stream; every queue with its redrive policy; every event
source mapping with its response types and scaling; every role with its trust and inline policies; every
function with its handler, settings, environment and reserved concurrency; every output and export. Every
mapping must also report batch item failures, and every queue mapping must cap its concurrency.

A municipality stack (`infrastructure/municipality.yaml`, with the example parameter file) is then created
against the platform's export: its custom resource is answered by the platform's `register_tenant` function,
run from the packaged code, and the tenant (municipality, programme, budget, first staff member, audit
record) must be in the tables the platform stack created.

What moto lacks is filled by `tests/deployment/moto_shims.py` (documented there). Everything here is moto:
no network, no Docker, no DynamoDB Local.
"""
from __future__ import annotations

import copy
import io
import json
import os
import secrets
import zipfile
from pathlib import Path

import pytest

from tests.deployment import moto_shims

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_TEMPLATE = ROOT / "infrastructure" / "platform.json"
MUNICIPALITY_TEMPLATE = ROOT / "infrastructure" / "municipality.yaml"
EXAMPLE_PARAMETERS = ROOT / "infrastructure" / "examples" / "nagahama.parameters.json"

# Moto's CloudFormation accepts custom-resource answers in us-east-1 only.
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
PLATFORM_STACK = "municipal-point-cloud"  # municipality.yaml's default PlatformStackName
CODE_BUCKET = "mpc-deployment-test-code"
# The custom resource answers on moto's own thread (a cold start of the app: seconds); a bound, not a wait.
ANSWER_TIMEOUT_SECONDS = 60
# Optional conditions switched on, so that conditional resources are deployed and checked too.
PLATFORM_PARAMETERS = {"AlarmEmail": "operations@example.jp", "PartnerAccountIds": "111122223333"}


# -- the package ----------------------------------------------------------------------------------------


def application_package(folder: Path) -> bytes:
    """The application part of the Lambda package, staged and zipped by the packaging steps themselves
    (tools/lambda_package.py, what `scripts/package-lambda.sh --app-only` runs): app.py, chalicelib/ and
    Chalice's runtime, offline. Left out: the third-party wheels (the handler imports them from this
    virtualenv) and the python3.12 bytecode (this interpreter would not load it)."""
    import chalice

    from tools.lambda_package import stage_application, write_zip

    stage_application(folder / "app", Path(chalice.__file__).parent)
    write_zip(folder / "app", folder / "lambda.zip")
    return (folder / "lambda.zip").read_bytes()


# -- resolving the template's values against what was deployed ---------------------------------------------


class Unresolvable(Exception):
    pass


class Resolver:
    """Evaluates the template's intrinsic functions against the deployed stack, so the comparison below
    can say what each property should be: Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Split, Fn::Select, Fn::If and the
    condition functions. Dynamic references (`{{resolve:…}}`) stay text, as moto stores them."""

    def __init__(self, template: dict, parameters: dict, physical_ids: dict, attribute, stack_name: str):
        self.template = template
        self.physical_ids = physical_ids
        self.attribute = attribute  # (logical id, attribute name) -> value
        self.values = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws",
                       "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name, "AWS::NoValue": None}
        for name, declaration in template.get("Parameters", {}).items():
            value = parameters.get(name, declaration.get("Default"))
            if declaration.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",") if value else [""]
            self.values[name] = value

    def condition(self, name: str) -> bool:
        return bool(self(self.template.get("Conditions", {})[name]))

    def __call__(self, value):
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), = value.items()
            if function == "Ref":
                if argument in self.values:
                    return self.values[argument]
                return self.physical_ids[argument]
            if function == "Fn::GetAtt":
                logical_id, name = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.attribute(logical_id, name)
            if function == "Fn::Sub":
                text, names = (argument, {}) if isinstance(argument, str) else (argument[0], self(argument[1]))
                return self._substitute(text, names)
            if function == "Fn::Join":
                return argument[0].join(str(item) for item in self(argument[1]))
            if function == "Fn::Split":
                return str(self(argument[1])).split(argument[0])
            if function == "Fn::Select":
                return self(argument[1])[int(self(argument[0]))]
            if function == "Fn::If":
                return self(argument[1] if self.condition(argument[0]) else argument[2])
            if function == "Fn::Equals":
                return self(argument[0]) == self(argument[1])
            if function == "Fn::Not":
                return not self(argument[0])
            if function == "Fn::And":
                return all(self(item) for item in argument)
            if function == "Fn::Or":
                return any(self(item) for item in argument)
            if function == "Condition":
                return self.condition(argument)
            if function.startswith("Fn::"):
                raise Unresolvable(function)
        return {key: self(item) for key, item in value.items()}

    def _substitute(self, text: str, names: dict) -> str:
        import re

        def replace(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in names:
                return str(names[name])
            if "." in name:
                return str(self({"Fn::GetAtt": name.split(".", 1)}))
            return str(self({"Ref": name}))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


# -- what the stack deployed --------------------------------------------------------------------------------


class Deployed:
    """The resources of one deployed stack, read back through the AWS APIs (moto's)."""

    def __init__(self, stack_name: str, template: dict, parameters: dict):
        import boto3

        self.stack_name = stack_name
        self.template = template
        clients = {name: boto3.client(name, region_name=REGION)
                   for name in ("cloudformation", "dynamodb", "sqs", "lambda", "iam", "apigateway", "wafv2")}
        self.clients = clients
        self.stack = clients["cloudformation"].describe_stacks(StackName=stack_name)["Stacks"][0]
        summaries = clients["cloudformation"].list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        self.physical_ids = {item["LogicalResourceId"]: item["PhysicalResourceId"]
                             for item in summaries if item["LogicalResourceId"]}
        self._attributes: dict = {}
        self.resolve = Resolver(template, parameters, self.physical_ids, self.attribute, stack_name)

    def attribute(self, logical_id: str, name: str):
        """Fn::GetAtt, read from the deployed resource (moto's model for the types not listed)."""
        if (logical_id, name) not in self._attributes:
            self._attributes[logical_id, name] = self._read_attribute(logical_id, name)
        return self._attributes[logical_id, name]

    def _read_attribute(self, logical_id: str, name: str):
        kind = self.template["Resources"][logical_id]["Type"]
        physical = self.physical_ids[logical_id]
        if kind == "AWS::DynamoDB::Table" and name in ("Arn", "StreamArn"):
            table = self.clients["dynamodb"].describe_table(TableName=physical)["Table"]
            return table["TableArn"] if name == "Arn" else table["LatestStreamArn"]
        if kind == "AWS::SQS::Queue" and name == "Arn":
            return self.clients["sqs"].get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if kind == "AWS::Lambda::Function" and name == "Arn":
            return self.clients["lambda"].get_function_configuration(FunctionName=physical)["FunctionArn"]
        if kind == "AWS::IAM::Role" and name == "Arn":
            return self.clients["iam"].get_role(RoleName=physical)["Role"]["Arn"]
        from moto.cloudformation import cloudformation_backends

        stack = cloudformation_backends[ACCOUNT_ID][REGION].get_stack(self.stack_name)
        return stack.resource_map[logical_id].get_cfn_attribute(name)

    def of_type(self, kind: str) -> dict:
        """The template's resources of one type that its conditions deploy, by logical id."""
        return {logical_id: resource for logical_id, resource in self.template["Resources"].items()
                if resource["Type"] == kind and self.deployed_by_conditions(resource)}

    def deployed_by_conditions(self, resource: dict) -> bool:
        return "Condition" not in resource or self.resolve.condition(resource["Condition"])


# -- the checks -------------------------------------------------------------------------------------------


def missing_resources(deployed: Deployed) -> list[str]:
    """Every resource the template deploys must have been created (moto skips types it does not know)."""
    return [f"{logical_id} ({resource['Type']}) was not created: moto lacks the type; add it to "
            "tests/deployment/moto_shims.py (RECORDED_TYPES)"
            for logical_id, resource in deployed.template["Resources"].items()
            if deployed.deployed_by_conditions(resource) and logical_id not in deployed.physical_ids]


def _sorted_definitions(items) -> list:
    return sorted(items or [], key=lambda item: json.dumps(item, sort_keys=True))


def _projection(projection: dict) -> dict:
    return {"ProjectionType": projection.get("ProjectionType", "ALL"),
            "NonKeyAttributes": sorted(projection.get("NonKeyAttributes", []))}


def table_differences(deployed: Deployed) -> list[str]:
    problems = []
    for logical_id, resource in deployed.of_type("AWS::DynamoDB::Table").items():
        wanted = deployed.resolve(resource["Properties"])
        name = deployed.physical_ids[logical_id]
        table = deployed.clients["dynamodb"].describe_table(TableName=name)["Table"]
        if "TableName" in wanted and name != wanted["TableName"]:
            problems.append(f"{logical_id}: table named {name}, the template says {wanted['TableName']}")
        if table["KeySchema"] != wanted["KeySchema"]:
            problems.append(f"{logical_id}: key schema {table['KeySchema']} != {wanted['KeySchema']}")
        if _sorted_definitions(table["AttributeDefinitions"]) != _sorted_definitions(wanted["AttributeDefinitions"]):
            problems.append(f"{logical_id}: attribute definitions differ")
        indexes = {index["IndexName"]: (index["KeySchema"], _projection(index["Projection"]))
                   for index in table.get("GlobalSecondaryIndexes", [])}
        wanted_indexes = {index["IndexName"]: (index["KeySchema"], _projection(index["Projection"]))
                          for index in wanted.get("GlobalSecondaryIndexes", [])}
        if indexes != wanted_indexes:
            problems.append(f"{logical_id}: global secondary indexes {indexes} != {wanted_indexes}")
        stream = table.get("StreamSpecification") or {"StreamEnabled": False}
        wanted_stream = wanted.get("StreamSpecification")
        if wanted_stream and (not stream["StreamEnabled"] or stream.get("StreamViewType") != wanted_stream["StreamViewType"]):
            problems.append(f"{logical_id}: stream {stream} != {wanted_stream}")
        if not wanted_stream and stream["StreamEnabled"]:
            problems.append(f"{logical_id}: has a stream the template does not ask for")
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        if billing != wanted.get("BillingMode", "PROVISIONED"):
            problems.append(f"{logical_id}: billing mode {billing} != {wanted.get('BillingMode')}")
        if table.get("DeletionProtectionEnabled", False) != wanted.get("DeletionProtectionEnabled", False):
            problems.append(f"{logical_id}: deletion protection differs")
    return problems


# Queue properties moto's CloudFormation keeps, with the attribute that reads them back.
# (RedriveAllowPolicy is not kept by moto's CloudFormation, so it is not compared.)
QUEUE_ATTRIBUTES = {"MessageRetentionPeriod": "MessageRetentionPeriod", "VisibilityTimeout": "VisibilityTimeout",
                    "DelaySeconds": "DelaySeconds", "SqsManagedSseEnabled": "SqsManagedSseEnabled",
                    "FifoQueue": "FifoQueue", "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds"}


def queue_differences(deployed: Deployed) -> list[str]:
    problems = []
    for logical_id, resource in deployed.of_type("AWS::SQS::Queue").items():
        wanted = deployed.resolve(resource.get("Properties", {}))
        url = deployed.physical_ids[logical_id]
        attributes = deployed.clients["sqs"].get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if "QueueName" in wanted and not url.endswith("/" + wanted["QueueName"]):
            problems.append(f"{logical_id}: queue {url}, the template names {wanted['QueueName']}")
        for name, attribute in QUEUE_ATTRIBUTES.items():
            if name in wanted and attributes.get(attribute, "").lower() != str(wanted[name]).lower():
                problems.append(f"{logical_id}: {name} is {attributes.get(attribute)}, the template says {wanted[name]}")
        redrive = json.loads(attributes["RedrivePolicy"]) if "RedrivePolicy" in attributes else None
        wanted_redrive = wanted.get("RedrivePolicy")
        if wanted_redrive is not None:
            wanted_redrive = json.loads(wanted_redrive) if isinstance(wanted_redrive, str) else wanted_redrive
            wanted_redrive = {"deadLetterTargetArn": wanted_redrive["deadLetterTargetArn"],
                              "maxReceiveCount": int(wanted_redrive["maxReceiveCount"])}
        if redrive is not None:
            redrive = {"deadLetterTargetArn": redrive["deadLetterTargetArn"], "maxReceiveCount": int(redrive["maxReceiveCount"])}
        if redrive != wanted_redrive:
            problems.append(f"{logical_id}: redrive policy {redrive} != {wanted_redrive}")
    return problems


# Mapping properties compared with what the mapping reports.
MAPPING_PROPERTIES = ("BatchSize", "FunctionResponseTypes", "ScalingConfig", "MaximumRetryAttempts",
                      "BisectBatchOnFunctionError", "DestinationConfig", "StartingPosition",
                      "MaximumBatchingWindowInSeconds", "MaximumRecordAgeInSeconds", "FilterCriteria")


def _function_arn(deployed: Deployed, name_or_arn: str) -> str:
    return deployed.clients["lambda"].get_function_configuration(FunctionName=name_or_arn)["FunctionArn"]


def deployed_mappings(deployed: Deployed) -> dict:
    return {logical_id: deployed.clients["lambda"].get_event_source_mapping(UUID=deployed.physical_ids[logical_id])
            for logical_id in deployed.of_type("AWS::Lambda::EventSourceMapping")}


def mapping_differences(deployed: Deployed) -> list[str]:
    problems = []
    mappings = deployed_mappings(deployed)
    for logical_id, resource in deployed.of_type("AWS::Lambda::EventSourceMapping").items():
        wanted = deployed.resolve(resource["Properties"])
        mapping = mappings[logical_id]
        if mapping["EventSourceArn"] != wanted["EventSourceArn"]:
            problems.append(f"{logical_id}: reads {mapping['EventSourceArn']}, the template says {wanted['EventSourceArn']}")
        if mapping["FunctionArn"] != _function_arn(deployed, wanted["FunctionName"]):
            problems.append(f"{logical_id}: invokes {mapping['FunctionArn']}, the template says {wanted['FunctionName']}")
        for name in MAPPING_PROPERTIES:
            if name in wanted and mapping.get(name) != wanted[name]:
                problems.append(f"{logical_id}: {name} is {mapping.get(name)}, the template says {wanted[name]}")
            if name not in wanted and name in ("FunctionResponseTypes", "ScalingConfig", "DestinationConfig") and mapping.get(name):
                problems.append(f"{logical_id}: has {name} {mapping[name]} the template does not ask for")
    return problems


def mapping_rule_violations(deployed: Deployed) -> list[str]:
    """The project's rules for consumers, on what was deployed: every mapping reports batch item failures
    (one bad record never re-runs the whole batch), and every queue mapping caps its concurrency (a burst
    on a queue cannot take the account's concurrency from the API)."""
    problems = []
    for logical_id, mapping in deployed_mappings(deployed).items():
        if "ReportBatchItemFailures" not in (mapping.get("FunctionResponseTypes") or []):
            problems.append(f"{logical_id}: does not report batch item failures")
        if mapping["EventSourceArn"].startswith("arn:aws:sqs:") and not (mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"):
            problems.append(f"{logical_id}: a queue mapping without ScalingConfig.MaximumConcurrency")
    return problems


def _policy_document(document):
    """Moto's CloudFormation stores an inline policy given as a mapping by its Python repr (AWS keeps
    JSON); read either."""
    import ast

    if isinstance(document, str):
        try:
            return json.loads(document)
        except ValueError:
            return ast.literal_eval(document)
    return document


def role_differences(deployed: Deployed) -> list[str]:
    problems = []
    iam = deployed.clients["iam"]
    for logical_id, resource in deployed.of_type("AWS::IAM::Role").items():
        wanted = deployed.resolve(resource["Properties"])
        name = deployed.physical_ids[logical_id]
        role = iam.get_role(RoleName=name)["Role"]
        if role["AssumeRolePolicyDocument"] != wanted["AssumeRolePolicyDocument"]:
            problems.append(f"{logical_id}: trust policy {role['AssumeRolePolicyDocument']} != {wanted['AssumeRolePolicyDocument']}")
        policies = {policy["PolicyName"]: policy["PolicyDocument"] for policy in wanted.get("Policies", [])}
        names = set(iam.list_role_policies(RoleName=name)["PolicyNames"])
        if names != set(policies):
            problems.append(f"{logical_id}: inline policies {sorted(names)} != {sorted(policies)}")
        for policy_name in names & set(policies):
            document = _policy_document(iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"])
            if document != policies[policy_name]:
                problems.append(f"{logical_id}: policy {policy_name} differs from the template")
        # ManagedPolicyArns are not compared: moto's CloudFormation drops them (AWS-managed policies do not
        # exist in moto unless all of them are loaded, which takes longer than this whole test).
    return problems


FUNCTION_SETTINGS = ("Handler", "Runtime", "Timeout", "MemorySize", "Role", "TracingConfig", "Architectures")


def function_differences(deployed: Deployed) -> list[str]:
    problems = []
    client = deployed.clients["lambda"]
    for logical_id, resource in deployed.of_type("AWS::Lambda::Function").items():
        wanted = deployed.resolve(resource["Properties"])
        name = deployed.physical_ids[logical_id]
        configuration = client.get_function_configuration(FunctionName=name)
        for setting in FUNCTION_SETTINGS:
            if setting in wanted and configuration.get(setting) != wanted[setting]:
                problems.append(f"{logical_id}: {setting} is {configuration.get(setting)}, the template says {wanted[setting]}")
        variables = configuration.get("Environment", {}).get("Variables", {})
        wanted_variables = {key: str(value) for key, value in wanted.get("Environment", {}).get("Variables", {}).items()}
        if variables != wanted_variables:
            problems.append(f"{logical_id}: environment {variables} != {wanted_variables}")
        reserved = client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        if reserved != wanted.get("ReservedConcurrentExecutions"):
            problems.append(f"{logical_id}: reserved concurrency {reserved} != {wanted.get('ReservedConcurrentExecutions')}")
    return problems


def event_invoke_config_differences(deployed: Deployed) -> list[str]:
    """Asynchronous invocations (scheduled jobs, the custom resource): retries, age and failure destination."""
    problems = []
    for logical_id, resource in deployed.of_type("AWS::Lambda::EventInvokeConfig").items():
        wanted = deployed.resolve(resource["Properties"])
        configuration = deployed.clients["lambda"].get_function_event_invoke_config(FunctionName=wanted["FunctionName"])
        for name in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig"):
            if name in wanted and configuration.get(name) != wanted[name]:
                problems.append(f"{logical_id}: {name} is {configuration.get(name)}, the template says {wanted[name]}")
    return problems


def _text(value):
    """A WAFv2 rule as the API returns it, with its blobs (SearchString) as the template's text."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _text(item) for key, item in value.items()}
    return value


def web_acl_differences(deployed: Deployed) -> list[str]:
    """Each association puts the template's web ACL, with its rules, on the resource it names."""
    problems = []
    waf = deployed.clients["wafv2"]
    for logical_id, resource in deployed.of_type("AWS::WAFv2::WebACLAssociation").items():
        wanted = deployed.resolve(resource["Properties"])
        acl = waf.get_web_acl_for_resource(ResourceArn=wanted["ResourceArn"]).get("WebACL")
        if acl is None or acl["ARN"] != wanted["WebACLArn"]:
            problems.append(f"{logical_id}: {wanted['ResourceArn']} is protected by {acl and acl['ARN']}, not {wanted['WebACLArn']}")
            continue
        acl_id = next(logical for logical, declared in deployed.of_type("AWS::WAFv2::WebACL").items()
                      if deployed.attribute(logical, "Arn") == acl["ARN"])
        wanted_rules = {rule["Name"]: rule for rule in deployed.resolve(deployed.template["Resources"][acl_id]["Properties"]["Rules"])}
        rules = {rule["Name"]: _text(rule) for rule in acl.get("Rules", [])}
        if sorted(rules) != sorted(wanted_rules):
            problems.append(f"{logical_id}: web ACL rules {sorted(rules)} != {sorted(wanted_rules)}")
        for name in set(rules) & set(wanted_rules):
            if rules[name].get("Statement") != wanted_rules[name].get("Statement"):
                problems.append(f"{logical_id}: rule {name} differs from the template")
    return problems


def output_differences(deployed: Deployed) -> list[str]:
    problems = []
    outputs = {output["OutputKey"]: output for output in deployed.stack.get("Outputs", [])}
    exports = {export["Name"]: export["Value"] for export in deployed.clients["cloudformation"].list_exports()["Exports"]}
    for key, declaration in deployed.template.get("Outputs", {}).items():
        if "Condition" in declaration and not deployed.resolve.condition(declaration["Condition"]):
            continue
        if key not in outputs:
            problems.append(f"output {key} is missing")
            continue
        wanted = str(deployed.resolve(declaration["Value"]))
        if outputs[key]["OutputValue"] != wanted:
            problems.append(f"output {key} is {outputs[key]['OutputValue']}, the template says {wanted}")
        if "Export" in declaration:
            export_name = deployed.resolve(declaration["Export"]["Name"])
            if exports.get(export_name) != wanted:
                problems.append(f"output {key}: export {export_name} is {exports.get(export_name)}, expected {wanted}")
    return problems


def platform_problems(deployed: Deployed) -> list[str]:
    """Everything the platform stack must be, as one list of readable problems (empty: all is well)."""
    return (missing_resources(deployed) + table_differences(deployed) + queue_differences(deployed)
            + mapping_differences(deployed) + mapping_rule_violations(deployed) + role_differences(deployed)
            + function_differences(deployed) + event_invoke_config_differences(deployed)
            + web_acl_differences(deployed) + output_differences(deployed))


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """Moto for the module, with the shims installed and nothing of the test process's AWS settings."""
    from moto import mock_aws

    patch = pytest.MonkeyPatch()
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        patch.delenv(name)  # e.g. AWS_ENDPOINT_URL_DYNAMODB from the DynamoDB Local fixture
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_DEFAULT_REGION", REGION)
    code_folder = tmp_path_factory.mktemp("lambda-code")
    try:
        with mock_aws(), moto_shims.installed(patch), \
                moto_shims.run_functions_in_process(patch, str(code_folder), REGION) as invocations:
            yield invocations
    finally:
        patch.undo()


def deploy_platform(template: dict, stack_name: str, package: bytes, **parameters: str) -> Deployed:
    """What an operator does (docs/DEPLOYMENT.md): the secrets exist, the package is in the code bucket,
    then the stack is created."""
    import hashlib

    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    if CODE_BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=CODE_BUCKET)
    key = f"municipal-point-cloud/lambda-{hashlib.sha256(package).hexdigest()[:16]}.zip"
    s3.put_object(Bucket=CODE_BUCKET, Key=key, Body=package)
    secretsmanager = boto3.client("secretsmanager", region_name=REGION)
    existing = {secret["Name"] for secret in secretsmanager.list_secrets()["SecretList"]}
    for name, declaration in template.get("Parameters", {}).items():
        # A secret the stack reads (CardHashSecretId, …) is created before the stack, as DEPLOYMENT.md says.
        if name.endswith("SecretId") and declaration.get("Default") and declaration["Default"] not in existing:
            secretsmanager.create_secret(Name=declaration["Default"], SecretString=secrets.token_hex(32))
    parameters = {"CodeBucket": CODE_BUCKET, "CodeKey": key, **PLATFORM_PARAMETERS, **parameters}
    parameters = {name: value for name, value in parameters.items() if name in template.get("Parameters", {})}
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=stack_name, TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": name, "ParameterValue": value} for name, value in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"])
    return Deployed(stack_name, template, parameters)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return application_package(tmp_path_factory.mktemp("package"))


@pytest.fixture(scope="module")
def platform_template():
    return json.loads(PLATFORM_TEMPLATE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def platform(aws, platform_template, package):
    return deploy_platform(platform_template, PLATFORM_STACK, package)


# -- the tests ----------------------------------------------------------------------------------------------


def test_platform_stack__reaches_create_complete_with_every_resource_of_the_template(platform):
    assert platform.stack["StackStatus"] == "CREATE_COMPLETE", platform.stack.get("StackStatusReason")
    assert missing_resources(platform) == []
    assert set(platform.physical_ids) >= set(platform.of_type("AWS::DynamoDB::Table"))


def test_platform_stack__tables_queues_mappings_roles_functions_and_outputs_are_what_the_template_says(platform):
    assert platform.of_type("AWS::DynamoDB::Table") and platform.of_type("AWS::SQS::Queue")
    assert platform.of_type("AWS::Lambda::EventSourceMapping") and platform.of_type("AWS::IAM::Role")
    assert platform_problems(platform) == []


def test_platform_stack__every_api_route_is_deployed_with_a_proxy_integration_to_the_api_function(platform):
    client = platform.clients["apigateway"]
    api_id = platform.physical_ids[next(iter(platform.of_type("AWS::ApiGateway::RestApi")))]
    body = platform.template["Resources"][next(iter(platform.of_type("AWS::ApiGateway::RestApi")))]["Properties"]["Body"]
    resources = {resource["path"]: resource for resource in client.get_resources(restApiId=api_id, limit=500)["items"]}
    for path, methods in body["paths"].items():
        for method, declaration in methods.items():
            integration = client.get_integration(restApiId=api_id, resourceId=resources[path]["id"], httpMethod=method.upper())
            assert integration["type"].upper() == "AWS_PROXY", (path, method)  # moto keeps the body's spelling
            assert integration["uri"] == platform.resolve(declaration["x-amazon-apigateway-integration"]["uri"]), (path, method)
    stages = {stage["stageName"] for stage in client.get_stages(restApiId=api_id)["item"]}
    assert {platform.resolve(stage["Properties"]["StageName"]) for stage in platform.of_type("AWS::ApiGateway::Stage").values()} <= stages


def test_every_function_handler__is_a_callable_of_the_package(platform, package, tmp_path):
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        archive.extractall(tmp_path)
    with moto_shims.packaged_modules(str(tmp_path)):
        import importlib

        for logical_id, resource in platform.of_type("AWS::Lambda::Function").items():
            module_name, _, attribute = resource["Properties"]["Handler"].rpartition(".")
            module = importlib.import_module(module_name)
            assert Path(module.__file__).is_relative_to(tmp_path), logical_id
            assert callable(getattr(module, attribute)), logical_id


def test_municipality_stack__custom_resource_answered_by_the_packaged_handler_registers_the_tenant(aws, platform):
    import boto3

    parameters = {item["ParameterKey"]: item["ParameterValue"] for item in json.loads(EXAMPLE_PARAMETERS.read_text(encoding="utf-8"))}
    password = secrets.token_urlsafe(18)
    parameters.update({"PlatformStackName": PLATFORM_STACK, "FirstStaffPassword": password})
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    answered_before = len(aws)
    cloudformation.create_stack(
        StackName=f"municipality-{parameters['MunicipalityCode']}", TemplateBody=MUNICIPALITY_TEMPLATE.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": name, "ParameterValue": value} for name, value in parameters.items()])

    invocation = aws[answered_before]
    assert invocation.done.wait(ANSWER_TIMEOUT_SECONDS), "the custom resource was never answered"
    assert invocation.error is None, invocation.error
    service_token = {output["OutputKey"]: output["OutputValue"] for output in platform.stack["Outputs"]}["OnboardingServiceToken"]
    assert invocation.event["ServiceToken"] == service_token
    assert invocation.handler == platform.template["Resources"]["RegisterTenantFunction"]["Properties"]["Handler"]
    assert "/chalicelib/" in invocation.module_file and not Path(invocation.module_file).is_relative_to(ROOT)
    assert invocation.result == {"answered": "SUCCESS"}
    [answer] = invocation.answers
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "municipality-252034")

    stack = cloudformation.describe_stacks(StackName=f"municipality-{parameters['MunicipalityCode']}")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    assert outputs == {"MunicipalityCode": "252034", "MunicipalityName": "長浜市", "FirstStaffId": "nagahama-admin"}

    # The tenant, in the tables the platform stack created.
    from boto3.dynamodb.conditions import Key

    from chalicelib.services.staff import password_matches

    prefix = platform.resolve.values["TablePrefix"]
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    municipality = dynamodb.Table(f"{prefix}municipalities").get_item(Key={"municipality_code": "252034"})["Item"]
    assert municipality["name"] == "長浜市" and municipality["point_name"] == "ながはまポイント"
    assert municipality["expiry_rule"] == {"kind": "fiscal_year_end"}
    assert (municipality["pin_free_limit"], municipality["max_amount"], municipality["approval_threshold"]) == (3000, 50000, 30000)
    assert municipality["budget_total"] == 10_000_000
    budget = [item for item in dynamodb.Table(f"{prefix}counters").scan()["Items"] if item["counter_id"].startswith("budget#252034#")]
    assert len(budget) == municipality["budget_shards"] and sum(item["value"] for item in budget) == 10_000_000
    staff = dynamodb.Table(f"{prefix}staff").get_item(Key={"staff_id": "nagahama-admin"})["Item"]
    assert staff["municipality_code"] == "252034" and staff["role"] == "approver"
    assert password not in staff["password_hash"] and password_matches(password, staff["password_hash"])
    audit = dynamodb.Table(f"{prefix}audit_events").query(KeyConditionExpression=Key("scope").eq("252034"))["Items"]
    assert [event["action"] for event in audit] == ["tenant_registered"]


def test_municipality_stack__a_refused_tenant_is_answered_failed_and_nothing_is_stored(aws, platform):
    import boto3

    parameters = {item["ParameterKey"]: item["ParameterValue"] for item in json.loads(EXAMPLE_PARAMETERS.read_text(encoding="utf-8"))}
    # 252035: six digits, as the template's pattern asks, but a wrong check digit (長浜市 is 252034).
    parameters.update({"PlatformStackName": PLATFORM_STACK, "MunicipalityCode": "252035", "FirstStaffId": "wrong-code-admin",
                       "FirstStaffPassword": secrets.token_urlsafe(18)})
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    answered_before = len(aws)
    cloudformation.create_stack(
        StackName="municipality-wrong-check-digit", TemplateBody=MUNICIPALITY_TEMPLATE.read_text(encoding="utf-8"),
        Parameters=[{"ParameterKey": name, "ParameterValue": value} for name, value in parameters.items()])

    invocation = aws[answered_before]
    assert invocation.done.wait(ANSWER_TIMEOUT_SECONDS), "the custom resource was never answered"
    assert invocation.error is None, invocation.error
    # Answered (CloudFormation does not wait an hour), and refused: the stack never completes.
    assert invocation.result == {"answered": "FAILED"}
    [answer] = invocation.answers
    assert answer["Status"] == "FAILED" and answer["Reason"].startswith("invalid_municipality_code:")
    stack = cloudformation.describe_stacks(StackName="municipality-wrong-check-digit")["Stacks"][0]
    assert stack["StackStatus"] != "CREATE_COMPLETE"
    prefix = platform.resolve.values["TablePrefix"]
    dynamodb = boto3.resource("dynamodb", region_name=REGION)
    assert "Item" not in dynamodb.Table(f"{prefix}municipalities").get_item(Key={"municipality_code": "252035"})
    assert "Item" not in dynamodb.Table(f"{prefix}staff").get_item(Key={"staff_id": "wrong-code-admin"})


# -- the checks can fail ------------------------------------------------------------------------------------


def test_checks__catch_a_queue_mapping_without_batch_item_failures_or_a_concurrency_cap(aws, platform_template, package):
    template = copy.deepcopy(platform_template)
    mappings = {logical_id: resource for logical_id, resource in template["Resources"].items()
                if resource["Type"] == "AWS::Lambda::EventSourceMapping"}
    queue_mapping = next(logical_id for logical_id, resource in mappings.items()
                         if template["Resources"][resource["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue")
    del template["Resources"][queue_mapping]["Properties"]["FunctionResponseTypes"]
    template["Resources"][queue_mapping]["Properties"].pop("ScalingConfig", None)

    # A second platform in the same account: its own table prefix and queue names.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::SQS::Queue" and isinstance(resource["Properties"].get("QueueName"), str):
            resource["Properties"]["QueueName"] = "broken-" + resource["Properties"]["QueueName"]
    broken = deploy_platform(template, "broken-mapping", package, TablePrefix="broken-")

    assert broken.stack["StackStatus"] == "CREATE_COMPLETE"
    problems = platform_problems(broken)
    assert f"{queue_mapping}: does not report batch item failures" in problems
    assert f"{queue_mapping}: a queue mapping without ScalingConfig.MaximumConcurrency" in problems


def test_checks__catch_a_deployed_table_or_queue_that_differs_from_the_template(platform):
    template = copy.deepcopy(platform.template)
    table_id = next(logical_id for logical_id, resource in template["Resources"].items()
                    if resource["Type"] == "AWS::DynamoDB::Table" and resource["Properties"].get("GlobalSecondaryIndexes"))
    template["Resources"][table_id]["Properties"]["GlobalSecondaryIndexes"].pop()
    queue_id = next(logical_id for logical_id, resource in template["Resources"].items()
                    if resource["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in resource["Properties"])
    template["Resources"][queue_id]["Properties"]["RedrivePolicy"]["maxReceiveCount"] += 1
    original, platform.template = platform.template, template
    try:
        problems = table_differences(platform) + queue_differences(platform)
    finally:
        platform.template = original
    assert any(problem.startswith(f"{table_id}: global secondary indexes") for problem in problems)
    assert any(problem.startswith(f"{queue_id}: redrive policy") for problem in problems)


def test_checks__catch_a_resource_type_moto_does_not_create(platform):
    template = copy.deepcopy(platform.template)
    template["Resources"]["UnknownThing"] = {"Type": "AWS::Example::NotInMoto", "Properties": {}}
    original, platform.template = platform.template, template
    try:
        problems = missing_resources(platform)
    finally:
        platform.template = original
    assert problems == ["UnknownThing (AWS::Example::NotInMoto) was not created: moto lacks the type; add it to "
                        "tests/deployment/moto_shims.py (RECORDED_TYPES)"]
