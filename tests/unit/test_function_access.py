"""The platform template's roles grant each function exactly the table rights `tools/function_access.py`
declares: the same tables, the same actions on each, and only the indexes the function queries.

The grants are read back from the generated template (statement by statement, table ARN by table ARN)
and compared with the declaration expanded independently, so a generator that merged, dropped or widened
a grant would fail here. `tests/integration/test_function_access.py` keeps the declaration itself true.
"""
from __future__ import annotations

import re

import pytest

from tools import function_access, infrastructure
from tools.function_access import FUNCTION_TABLES, READ_ACTIONS

STREAM_ACTIONS = set(infrastructure.DYNAMODB_STREAM_ACTIONS)


def _table_base_names(template: dict) -> dict[str, str]:
    """Logical id -> the table's base name, from each table's `${TablePrefix}name`."""
    return {logical_id: resource["Properties"]["TableName"]["Fn::Sub"].removeprefix("${TablePrefix}")
            for logical_id, resource in template["Resources"].items() if resource["Type"] == "AWS::DynamoDB::Table"}


def granted(template: dict, role: dict) -> set[tuple[str, str, str | None]]:
    """(table, action, index or None) for every DynamoDB item right the role's policies grant."""
    tables = _table_base_names(template)
    rights = set()
    for policy in role["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            dynamodb = [action.removeprefix("dynamodb:") for action in actions if action.startswith("dynamodb:")]
            if not dynamodb or set(actions) <= STREAM_ACTIONS:
                continue
            assert statement["Effect"] == "Allow" and len(dynamodb) == len(actions), statement
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for resource in resources:
                if "Fn::GetAtt" in resource:
                    logical_id, attribute = resource["Fn::GetAtt"]
                    assert attribute == "Arn", resource
                    rights |= {(tables[logical_id], action, None) for action in dynamodb}
                else:
                    match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(\w+)", resource["Fn::Sub"])
                    assert match, f"not one named index of a table: {resource}"
                    rights |= {(tables[match.group(1)], action, match.group(2)) for action in dynamodb}
    return rights


def declared(function: str) -> set[tuple[str, str, str | None]]:
    rights = set()
    for table, table_access in FUNCTION_TABLES[function].items():
        rights |= {(table, action, None) for action in table_access.actions}
        rights |= {(table, action, index) for index, action in table_access.index_actions}
    return rights


def _roles_by_function(template: dict) -> dict[str, dict]:
    resources = template["Resources"]
    return {spec.name: resources[resources[spec.logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]]
            for spec in infrastructure.chalice_functions()}


def test_roles__grant_each_function_exactly_its_declared_tables_actions_and_indexes(template):
    roles = _roles_by_function(template)
    assert sorted(roles) == sorted(FUNCTION_TABLES), "every function, and only functions, are declared"
    for function, role in roles.items():
        assert granted(template, role) == declared(function), function


def test_roles__a_table_only_read_gets_only_read_actions(template):
    for function, role in _roles_by_function(template).items():
        rights = granted(template, role)
        for table in function_access.tables_read_only(function):
            assert {action for name, action, _ in rights if name == table} <= READ_ACTIONS, (function, table)
        assert {name for name, _, _ in rights} == set(FUNCTION_TABLES[function]), function


def test_roles__no_role_can_write_every_table_and_only_the_api_writes_most(template):
    # What the issue found: every role could write all the tables. Now even the API cannot write the
    # tables only consumers write (conversion rejections, the transfer lists), and no other function
    # writes more than a handful.
    everything = set(_table_base_names(template).values())
    written = {function: {name for name, action, _ in granted(template, role) if action not in READ_ACTIONS}
               for function, role in _roles_by_function(template).items()}
    for function, tables in written.items():
        assert tables < everything, function
        if function != infrastructure.API_FUNCTION_NAME:
            assert len(tables) < len(written[infrastructure.API_FUNCTION_NAME]) / 3, (function, sorted(tables))
    assert not {"conversion_rejections", "transfer_index"} & written[infrastructure.API_FUNCTION_NAME]


def test_comparison__catches_a_widened_grant(template):
    roles = _roles_by_function(template)
    role = roles["project_transfers"]
    widened = {**role, "Properties": {**role["Properties"], "Policies": [
        *role["Properties"]["Policies"],
        {"PolicyName": "extra", "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": ["dynamodb:PutItem"],
            "Resource": [{"Fn::GetAtt": [infrastructure.table_logical_id("wallets"), "Arn"]}]}]}},
    ]}}
    assert granted(template, widened) - declared("project_transfers") == {("wallets", "PutItem", None)}


def test_declaration__names_only_tables_and_indexes_the_models_have():
    from chalicelib.storage.models import ALL_MODELS

    indexes = {model.Meta.base_name: {index["index_name"] for index in model._get_schema()["global_secondary_indexes"]}
               for model in ALL_MODELS}
    for function, tables in FUNCTION_TABLES.items():
        for table, table_access in tables.items():
            assert table in indexes, (function, table)
            assert table_access.indexes <= indexes[table], (function, table)


def test_declaration__an_index_gets_no_write_and_unknown_actions_are_refused():
    assert function_access.allows("expire_points", "wallets", "Query", "by_expiry")
    assert not function_access.allows("expire_points", "wallets", "Query")  # the index, not the table
    assert not function_access.allows("expire_points", "wallets", "UpdateItem", "by_expiry")
    assert not function_access.allows("expire_points", "wallets", "Query", "by_nothing")
    assert not function_access.allows("no_such_function", "wallets", "GetItem")
    with pytest.raises(ValueError):
        function_access.access("TransactWriteItems")
    with pytest.raises(ValueError):
        function_access.access("GetItem", indexes={"by_expiry": ("UpdateItem",)})


def test_generator__a_function_without_a_declaration__stops_it(monkeypatch):
    monkeypatch.delitem(FUNCTION_TABLES, "project_transfers")
    with pytest.raises(infrastructure.UnsupportedHandler, match="function_access"):
        infrastructure.platform_template()
