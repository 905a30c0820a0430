"""Onboard a municipality into the local cloud exactly as its CloudFormation stack would in AWS.

    python -m tools.onboard infrastructure/examples/nagahama.parameters.json [--first-staff-password …]

The command reads the onboarding template (`infrastructure/municipality.yaml`), fills its custom
resource's properties from the parameter file the AWS deployment uses (template defaults for the rest),
and hands them to the same function the platform's `register_tenant` Lambda runs for CloudFormation
(`chalicelib.api.tenant_handlers.apply_request`). So a parameter file that onboards locally onboards the
same way in AWS. It talks to the local cloud that `make run` started (its endpoints are in
`<data dir>/localcloud.json`); `make run` itself uses it for the demo municipality.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

import yaml

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPOSITORY_ROOT / "infrastructure" / "municipality.yaml"
TENANT_RESOURCE_TYPE = "Custom::MunicipalityTenant"


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (`!Ref X` → `{"Ref": X}`, `!Sub …` → `{"Fn::Sub": …}`)."""


def _tag(loader: _TemplateLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_TemplateLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)


def read_parameter_file(path: Path) -> dict[str, str]:
    """Both forms the AWS CLI takes: `[{"ParameterKey", "ParameterValue"}]` and `["Key=Value", …]`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "Parameters" in data:
        data = data["Parameters"]
    if isinstance(data, dict):
        return {str(key): str(value) for key, value in data.items()}
    values = {}
    for entry in data:
        if isinstance(entry, dict):
            values[entry["ParameterKey"]] = str(entry["ParameterValue"])
        else:
            key, _, value = str(entry).partition("=")
            values[key] = value
    return values


def tenant_properties(template: dict, parameters: dict[str, str]) -> dict[str, str]:
    """The custom resource's properties as CloudFormation would send them: every `Ref` resolved, as text."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise SystemExit(f"テンプレートにないパラメータです: {', '.join(unknown)}")
    values = {name: parameters.get(name, spec.get("Default")) for name, spec in declared.items()}
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:
        raise SystemExit(f"パラメータが足りません: {', '.join(missing)}")
    tenants = [resource for resource in template["Resources"].values() if resource["Type"] == TENANT_RESOURCE_TYPE]
    if len(tenants) != 1:
        raise SystemExit(f"テンプレートに {TENANT_RESOURCE_TYPE} が1つだけ必要です。")

    def resolve(value):
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return str(values[value["Ref"]])
        if isinstance(value, (str, int)):
            return str(value)
        return None  # ServiceToken's import: the local cloud calls the handler directly

    properties = {name: resolve(value) for name, value in tenants[0]["Properties"].items() if name != "ServiceToken"}
    return {name: value for name, value in properties.items() if value is not None}


def onboard(parameter_file: Path, first_staff_password: str, ledger_store, staff_store, audit) -> dict:
    """Register (or update) the tenant the parameter file describes; returns the handler's answer."""
    from chalicelib.api.tenant_handlers import apply_request

    properties = tenant_properties(load_template(), {**read_parameter_file(parameter_file),
                                                     "FirstStaffPassword": first_staff_password})
    return apply_request("Create", properties, ledger_store, staff_store, audit)


def local_stores(data_dir: Path):
    """The stores of the running local cloud, found through the file `make run` writes at start."""
    endpoints_file = data_dir / "localcloud.json"
    if not endpoints_file.exists():
        raise SystemExit(f"ローカルクラウドが見つかりません（{endpoints_file}）。先に make run を起動してください。")
    endpoints = json.loads(endpoints_file.read_text(encoding="utf-8"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoints["dynamodb_endpoint_url"]
    from chalicelib.storage.dynamo import DynamoLedgerStore
    from chalicelib.storage.identity import DynamoIdentityStore
    from chalicelib.storage.models import bind_models
    from chalicelib.storage.staff import DynamoStaffStore

    bind_models(endpoints["table_prefix"], endpoints["region"])
    return DynamoLedgerStore(endpoints["region"]), DynamoStaffStore(), DynamoIdentityStore(endpoints["region"]).audit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="自治体をローカルクラウドに登録します（オンボーディングスタックと同じ処理）")
    parser.add_argument("parameter_file", type=Path, help="CloudFormation のパラメータファイル（JSON）")
    parser.add_argument("--first-staff-password", default=os.environ.get("FIRST_STAFF_PASSWORD"),
                        help="最初の職員のパスワード（12文字以上）。省略すると生成して表示します")
    parser.add_argument("--data-dir", type=Path, default=REPOSITORY_ROOT / ".local")
    arguments = parser.parse_args(argv)
    from chalicelib import errors

    password = arguments.first_staff_password or secrets.token_urlsafe(12)
    try:
        answer = onboard(arguments.parameter_file, password, *local_stores(arguments.data_dir.resolve()))
    except errors.DomainError as refusal:
        print(f"登録できませんでした: {refusal.message}（{refusal.code}）", file=sys.stderr)
        return 1
    data = answer["Data"]
    print(f"{data['MunicipalityName']}（{data['MunicipalityCode']}）を登録しました。")
    if not arguments.first_staff_password:
        print(f"最初の職員: {data['FirstStaffId']} / パスワード {password}（既存の職員はパスワードを変えません）")
    else:
        print(f"最初の職員: {data['FirstStaffId']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
