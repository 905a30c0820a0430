"""The upgrade path for a platform-stack update that changes more than one global secondary index of a table.

CloudFormation creates or deletes one index per table per stack update; `tools.table_upgrade` splits such an
update into steps. These tests check the steps, not the commands' wording: consecutive templates differ by at
most one index per table, every template is one CloudFormation accepts (cfn-lint, and attribute definitions
that are exactly the keys in use), the last one is the target, the indexes the running code reads outlive it
until the code step, and nothing the tool must do is refused.
"""
from __future__ import annotations

import copy
import json

import pytest

from chalicelib.storage.schema import cloudformation_tables
from tools import table_upgrade
from tools.table_upgrade import UpgradeRefused, plan_upgrade


def _index(name: str, hash_key: str, range_key: str | None = None, projection: str = "ALL") -> dict:
    key_schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        key_schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return {"IndexName": name, "KeySchema": key_schema, "Projection": {"ProjectionType": projection}}


def _set_indexes(template: dict, logical_id: str, indexes: list[dict], types: dict[str, str]) -> None:
    """Give a table these indexes, with the attribute definitions its keys then need."""
    properties = template["Resources"][logical_id]["Properties"]
    if indexes:
        properties["GlobalSecondaryIndexes"] = indexes
    else:
        properties.pop("GlobalSecondaryIndexes", None)
    names = {item["AttributeName"] for item in properties["KeySchema"]}
    for index in indexes:
        names |= {item["AttributeName"] for item in index["KeySchema"]}
    known = {item["AttributeName"]: item["AttributeType"] for item in properties["AttributeDefinitions"]}
    properties["AttributeDefinitions"] = [{"AttributeName": name, "AttributeType": {**known, **types}[name]}
                                          for name in sorted(names)]


def _with_function(template: dict, code_key: str) -> dict:
    """The tables plus one function, so that a change outside the tables (a new package) can be followed."""
    template = copy.deepcopy(template)
    template["Resources"]["ApiFunction"] = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Code": {"S3Bucket": "points-artifacts", "S3Key": code_key},
            "Handler": "app.app",
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::123456789012:role/points-api",
        },
    }
    return template


@pytest.fixture()
def stream_fed_upgrade() -> tuple[dict, dict]:
    """The upgrade the project made once: the transfers table loses its three list indexes (the lists moved to
    a stream-fed table), while the wallets table gains two indexes, and the code changes."""
    current = _with_function(cloudformation_tables(), "municipal-point-cloud/lambda-old.zip")
    _set_indexes(current, "TransfersTable", [
        _index("by_merchant", "merchant_id", "posted_at"),
        _index("by_municipality", "municipality_shard", "posted_at"),
        _index("by_mykey", "mykey_id", "posted_at"),
    ], {"merchant_id": "S", "municipality_shard": "S", "mykey_id": "S", "posted_at": "S"})
    target = _with_function(cloudformation_tables(), "municipal-point-cloud/lambda-new.zip")
    _set_indexes(target, "TransfersTable", [], {})
    wallet_indexes = copy.deepcopy(target["Resources"]["WalletsTable"]["Properties"]["GlobalSecondaryIndexes"])
    _set_indexes(target, "WalletsTable", wallet_indexes + [
        _index("by_municipality", "municipality_code", "opened_on"),
        _index("by_mykey_created", "mykey_id", "created_at", projection="KEYS_ONLY"),
    ], {"opened_on": "S", "created_at": "N"})
    return current, target


def _index_shapes(template: dict) -> dict[str, dict[str, str]]:
    shapes = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            properties = resource["Properties"]
            types = {item["AttributeName"]: item["AttributeType"] for item in properties["AttributeDefinitions"]}
            shapes[logical_id] = {
                index["IndexName"]: json.dumps([index["KeySchema"], index["Projection"],
                                                [types[item["AttributeName"]] for item in index["KeySchema"]]],
                                               sort_keys=True)
                for index in properties.get("GlobalSecondaryIndexes", [])
            }
    return shapes


def _index_operations(before: dict, after: dict) -> dict[str, int]:
    """Per table, how many indexes are created or deleted between two templates (a redefinition counts two)."""
    operations = {}
    old, new = _index_shapes(before), _index_shapes(after)
    for logical_id in old.keys() & new.keys():
        removed = {name for name in old[logical_id] if old[logical_id][name] != new[logical_id].get(name)}
        added = {name for name in new[logical_id] if new[logical_id][name] != old[logical_id].get(name)}
        operations[logical_id] = len(removed) + len(added)
    return operations


def _assert_deployable_sequence(current: dict, target: dict, steps: list) -> None:
    assert steps[-1].template == target
    for before, after in zip([current] + [step.template for step in steps], [step.template for step in steps]):
        operations = _index_operations(before, after)
        assert max(operations.values()) <= 1, {name: count for name, count in operations.items() if count > 1}
    for step in steps:
        for logical_id, resource in step.template["Resources"].items():
            if resource["Type"] != "AWS::DynamoDB::Table":
                continue
            properties = resource["Properties"]
            keys = {item["AttributeName"] for item in properties["KeySchema"]}
            for index in properties.get("GlobalSecondaryIndexes", []):
                keys |= {item["AttributeName"] for item in index["KeySchema"]}
            # DynamoDB refuses a definition of an attribute that no key uses, and a key without its definition.
            assert {item["AttributeName"] for item in properties["AttributeDefinitions"]} == keys, logical_id


def test_plan__three_indexes_dropped_and_two_added__one_index_per_table_per_step_ending_at_the_target(
        stream_fed_upgrade):
    current, target = stream_fed_upgrade
    steps = plan_upgrade(current, target)

    _assert_deployable_sequence(current, target, steps)
    assert [step.phase for step in steps] == ["create", "create", "code", "delete-after", "delete-after",
                                              "delete-after"]
    assert [step.created for step in steps[:2]] == [[("WalletsTable", "by_municipality")],
                                                    [("WalletsTable", "by_mykey_created")]]
    assert [step.deleted for step in steps[3:]] == [[("TransfersTable", "by_merchant")],
                                                    [("TransfersTable", "by_municipality")],
                                                    [("TransfersTable", "by_mykey")]]


def test_plan__running_code_keeps_its_indexes_until_the_code_step_and_the_new_code_finds_its_own(
        stream_fed_upgrade):
    current, target = stream_fed_upgrade
    steps = plan_upgrade(current, target)
    code = next(position for position, step in enumerate(steps) if step.phase == "code")

    old_lists = {"by_merchant", "by_municipality", "by_mykey"}
    for step in steps[:code + 1]:
        assert old_lists <= set(_index_shapes(step.template)["TransfersTable"])
    for step in steps[:code]:
        # Before the code step only the tables change: the function still runs the deployed package.
        assert step.template["Resources"]["ApiFunction"] == current["Resources"]["ApiFunction"]
    for step in steps[code:]:
        assert step.template["Resources"]["ApiFunction"] == target["Resources"]["ApiFunction"]
        assert {"by_municipality", "by_mykey_created"} <= set(_index_shapes(step.template)["WalletsTable"])


def test_plan__every_intermediate_template_passes_cfn_lint(stream_fed_upgrade):
    from tests.unit.test_infrastructure import _lint

    current, target = stream_fed_upgrade
    for step in plan_upgrade(current, target)[:-1]:
        assert _lint(table_upgrade.render(step.template)) == [], step.changes


def test_plan__changed_key_schema_of_an_existing_index__deleted_then_created_in_two_steps():
    current = cloudformation_tables()
    target = copy.deepcopy(current)
    _set_indexes(target, "StaffTable", [_index("by_municipality", "municipality_code", "signed_up_at")],
                 {"signed_up_at": "S"})

    steps = plan_upgrade(current, target)

    _assert_deployable_sequence(current, target, steps)
    assert [step.phase for step in steps] == ["delete-before", "create", "code"]
    assert steps[0].deleted == [("StaffTable", "by_municipality")]
    assert "GlobalSecondaryIndexes" not in steps[0].template["Resources"]["StaffTable"]["Properties"]
    assert steps[1].created == [("StaffTable", "by_municipality")]


def test_plan__dropped_index_whose_key_a_new_index_needs_with_another_type__goes_first():
    current = cloudformation_tables()
    _set_indexes(current, "MerchantsTable", current["Resources"]["MerchantsTable"]["Properties"][
        "GlobalSecondaryIndexes"] + [_index("by_rank", "rank")], {"rank": "S"})
    target = cloudformation_tables()
    _set_indexes(target, "MerchantsTable", target["Resources"]["MerchantsTable"]["Properties"][
        "GlobalSecondaryIndexes"] + [_index("by_score", "rank")], {"rank": "N"})

    steps = plan_upgrade(current, target)

    _assert_deployable_sequence(current, target, steps)
    assert [(step.phase, step.deleted, step.created) for step in steps] == [
        ("delete-before", [("MerchantsTable", "by_rank")], []),
        ("create", [], [("MerchantsTable", "by_score")]),
        ("code", [], []),
    ]


def test_plan__no_table_with_more_than_one_index_change__a_single_step_that_is_the_target():
    current = cloudformation_tables()
    target = copy.deepcopy(current)
    target["Resources"]["CardsTable"]["Properties"]["GlobalSecondaryIndexes"][0]["Projection"] = {
        "ProjectionType": "ALL"}

    steps = plan_upgrade(current, target)

    # A changed projection is a deletion and a creation: two steps, never one.
    assert [step.phase for step in steps] == ["delete-before", "create", "code"]
    assert plan_upgrade(target, target)[0].template == target and len(plan_upgrade(target, target)) == 1


def test_plan__changed_table_key_schema__refused_with_the_reason():
    current = cloudformation_tables()
    target = copy.deepcopy(current)
    target["Resources"]["NoncesTable"]["Properties"]["KeySchema"][0]["AttributeName"] = "nonce"
    target["Resources"]["NoncesTable"]["Properties"]["AttributeDefinitions"][0]["AttributeName"] = "nonce"

    with pytest.raises(UpgradeRefused, match="NoncesTable: the table's key schema changes"):
        plan_upgrade(current, target)


def test_load_template__reads_get_template_output_as_object_or_text(tmp_path):
    template = cloudformation_tables()
    as_object, as_text, plain = tmp_path / "object.json", tmp_path / "text.json", tmp_path / "plain.json"
    as_object.write_text(json.dumps({"TemplateBody": template, "StagesAvailable": ["Original"]}))
    as_text.write_text(json.dumps({"TemplateBody": json.dumps(template)}))
    plain.write_text(json.dumps(template))
    yaml_body = tmp_path / "yaml.json"
    yaml_body.write_text(json.dumps({"TemplateBody": "Resources:\n  T: {Type: AWS::SNS::Topic}\n"}))

    assert table_upgrade.load_template(as_object) == table_upgrade.load_template(as_text) == template
    assert table_upgrade.load_template(plain) == template
    with pytest.raises(UpgradeRefused, match="not JSON"):
        table_upgrade.load_template(yaml_body)


def test_main__writes_each_step_and_prints_deploys_and_waits_in_order(stream_fed_upgrade, tmp_path, capsys):
    current, target = stream_fed_upgrade
    (tmp_path / "current.json").write_text(json.dumps({"TemplateBody": current}))
    (tmp_path / "target.json").write_text(json.dumps(target))

    status = table_upgrade.main(["plan", "--current", str(tmp_path / "current.json"),
                                 "--target", str(tmp_path / "target.json"), "--output", str(tmp_path / "steps"),
                                 "--table-prefix", "points-prod-"])

    assert status == 0
    written = sorted((tmp_path / "steps").iterdir())
    assert [path.name for path in written] == [
        "step-01-create.json", "step-02-create.json", "step-03-code.json",
        "step-04-delete-after.json", "step-05-delete-after.json", "step-06-delete-after.json"]
    assert json.loads(written[-1].read_text()) == target
    printed = capsys.readouterr().out
    deploys = [line for line in printed.splitlines() if line.startswith("aws cloudformation deploy")]
    assert [line.split("--template-file ")[1].split()[0] for line in deploys] == [str(path) for path in written]
    assert printed.count('CodeKey="$CODE_KEY"') == 1
    assert printed.index("IndexName=='by_municipality'].IndexStatus") < printed.index("step-02-create.json")
    assert "--table-name points-prod-transfers" in printed and "--table-name points-prod-wallets" in printed


def test_main__refused_change__exit_status_two_and_nothing_written(tmp_path, capsys):
    current = cloudformation_tables()
    target = copy.deepcopy(current)
    target["Resources"]["NoncesTable"]["Properties"]["LocalSecondaryIndexes"] = [_index("by_x", "nonce_key")]
    (tmp_path / "current.json").write_text(json.dumps(current))
    (tmp_path / "target.json").write_text(json.dumps(target))

    status = table_upgrade.main(["plan", "--current", str(tmp_path / "current.json"),
                                 "--target", str(tmp_path / "target.json"), "--output", str(tmp_path / "steps")])

    assert status == 2
    assert "local secondary indexes" in capsys.readouterr().err
    assert not (tmp_path / "steps").exists()


def test_import_resources__one_entry_per_table_named_with_the_prefix():
    template = cloudformation_tables()

    entries = table_upgrade.resources_to_import(template, "points-prod-")

    assert len(entries) == sum(1 for r in template["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    assert {"ResourceType": "AWS::DynamoDB::Table", "LogicalResourceId": "TransfersTable",
            "ResourceIdentifier": {"TableName": "points-prod-transfers"}} in entries
