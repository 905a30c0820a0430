"""Split a platform-stack update that changes several global secondary indexes into deployable steps.

CloudFormation creates or deletes at most one global secondary index per table in one stack update (DynamoDB's
UpdateTable takes one index operation at a time), so an update whose tables gain or lose more than one index
fails and rolls back. Given the template deployed now and the new one, `plan` writes the intermediate
templates, each changing at most one index per table, and prints the commands that deploy them in order:

1. indexes that must go before their replacement can be created (an index whose key schema or projection
   changes keeps its name, so it is deleted, then created again; an index whose key attribute changes
   type must go before the index that needs the new type), one per table per step, from the deployed
   template (the running code stays as it is);
2. the new indexes, one per table per step, still from the deployed template: the running code does not
   know them and is not disturbed by them;
3. the code step: the new template with every other change (the new `CodeKey`, functions, queues, streams,
   new tables), but still holding the indexes the new template drops, because the code that ran until this
   step reads them;
4. the dropped indexes, one per table per step; the last step is the new template itself.

A table whose key schema or local secondary indexes change cannot be updated in place (CloudFormation would
replace it, and a fixed table name makes the replacement fail): the tool refuses that change, which needs a
data migration to a new table. The procedure is in docs/DEPLOYMENT.md, "複数の索引の変更".

`import-resources` writes the `--resources-to-import` list that brings tables kept from an earlier stack into
a new one (docs/DEPLOYMENT.md, "初回配備の失敗").

    python -m tools.table_upgrade plan --current deployed.json --target infrastructure/platform.json
    python -m tools.table_upgrade import-resources --template infrastructure/tables.json
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE_TYPE = "AWS::DynamoDB::Table"
DEFAULT_OUTPUT = Path("build") / "table-upgrade"
# The parts of an index that DynamoDB cannot change in place; anything else (throughput, contributor insights)
# is updated without recreating the index.
INDEX_SHAPE = ("KeySchema", "Projection")


class UpgradeRefused(Exception):
    """The change cannot be made by updating the stack, whatever the order of the steps."""


@dataclass
class Step:
    phase: str  # "delete-before", "create", "code" or "delete-after"
    template: dict
    changes: list[str] = field(default_factory=list)
    created: list[tuple[str, str]] = field(default_factory=list)  # (table logical id, index name)
    deleted: list[tuple[str, str]] = field(default_factory=list)


def load_template(path: Path) -> dict:
    """A template file, or the output of `aws cloudformation get-template` (whose TemplateBody is the template,
    as an object or as the JSON text)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(document, dict) and "TemplateBody" in document:
        body = document["TemplateBody"]
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except json.JSONDecodeError as error:
                raise UpgradeRefused(f"{path}: the deployed template is not JSON (the platform template is "
                                     "generated as JSON; convert a YAML one first)") from error
        document = body
    if not isinstance(document, dict) or "Resources" not in document:
        raise UpgradeRefused(f"{path}: not a CloudFormation template")
    return document


def _tables(template: dict) -> dict[str, dict]:
    return {name: resource for name, resource in template["Resources"].items() if resource.get("Type") == TABLE_TYPE}


def _attribute_types(resource: dict) -> dict[str, str]:
    return {item["AttributeName"]: item["AttributeType"]
            for item in resource["Properties"].get("AttributeDefinitions", [])}


def _indexes(resource: dict) -> dict[str, dict]:
    return {index["IndexName"]: index for index in resource["Properties"].get("GlobalSecondaryIndexes", [])}


def _key_names(key_schema: list[dict]) -> list[str]:
    return [item["AttributeName"] for item in key_schema]


def _typed_keys(key_schema: list[dict], types: dict[str, str]) -> list[tuple[str, str, str | None]]:
    return sorted((item["AttributeName"], item["KeyType"], types.get(item["AttributeName"])) for item in key_schema)


def _shape(index: dict, types: dict[str, str]) -> tuple:
    return (_typed_keys(index["KeySchema"], types),
            json.dumps({part: index.get(part) for part in INDEX_SHAPE if part != "KeySchema"}, sort_keys=True))


@dataclass
class _TablePlan:
    logical_id: str
    current_types: dict[str, str]
    target_types: dict[str, str]
    current: dict[str, dict]
    target: dict[str, dict]
    delete_before: list[str]
    create: list[str]
    delete_after: list[str]


def _table_plan(logical_id: str, current: dict, target: dict) -> _TablePlan:
    current_types, target_types = _attribute_types(current), _attribute_types(target)
    current_properties, target_properties = current["Properties"], target["Properties"]
    if _typed_keys(current_properties["KeySchema"], current_types) != _typed_keys(
            target_properties["KeySchema"], target_types):
        raise UpgradeRefused(f"{logical_id}: the table's key schema changes; CloudFormation would replace the "
                             "table, which a fixed table name forbids: migrate the data to a new table instead")
    if json.dumps(current_properties.get("LocalSecondaryIndexes"), sort_keys=True) != json.dumps(
            target_properties.get("LocalSecondaryIndexes"), sort_keys=True):
        raise UpgradeRefused(f"{logical_id}: local secondary indexes can only be defined when a table is created")
    before, after = _indexes(current), _indexes(target)
    redefined = sorted(name for name in before.keys() & after.keys()
                       if _shape(before[name], current_types) != _shape(after[name], target_types))
    added = sorted(after.keys() - before.keys())
    needed_types = {name: target_types.get(name) for index in (after[n] for n in added + redefined)
                    for name in _key_names(index["KeySchema"])}
    removed = sorted(before.keys() - after.keys())
    # A dropped index whose key attribute the new indexes need with another type cannot wait for the code step.
    conflicting = [name for name in removed
                   if any(attribute in needed_types and needed_types[attribute] != current_types.get(attribute)
                          for attribute in _key_names(before[name]["KeySchema"]))]
    return _TablePlan(
        logical_id=logical_id, current_types=current_types, target_types=target_types, current=before,
        target=after, delete_before=sorted(redefined + conflicting), create=sorted(added + redefined),
        delete_after=[name for name in removed if name not in conflicting],
    )


def _table_with(base: dict, plan: _TablePlan, present: dict[str, str]) -> dict:
    """`base`'s table resource holding exactly the indexes in `present` (name -> "current" or "target", the
    template each definition comes from), with the attribute definitions those keys need."""
    resource = copy.deepcopy(base)
    properties = resource["Properties"]
    indexes, types = [], {}
    # The table's keys and local indexes are the same in both templates (checked by _table_plan).
    for key_schema in [properties["KeySchema"]] + [index["KeySchema"] for index in
                                                   properties.get("LocalSecondaryIndexes", [])]:
        for attribute in _key_names(key_schema):
            types[attribute] = plan.current_types[attribute]
    for name in sorted(present):
        origin = present[name]
        index = (plan.current if origin == "current" else plan.target)[name]
        origin_types = plan.current_types if origin == "current" else plan.target_types
        for attribute in _key_names(index["KeySchema"]):
            wanted = origin_types[attribute]
            if types.setdefault(attribute, wanted) != wanted:
                raise UpgradeRefused(f"{plan.logical_id}: index {name} needs {attribute} as {wanted} while another "
                                     f"index of the same step needs it as {types[attribute]}")
        indexes.append(copy.deepcopy(index))
    if indexes:
        properties["GlobalSecondaryIndexes"] = indexes
    else:
        properties.pop("GlobalSecondaryIndexes", None)
    properties["AttributeDefinitions"] = [{"AttributeName": name, "AttributeType": types[name]} for name in sorted(types)]
    return resource


def plan_upgrade(current: dict, target: dict) -> list[Step]:
    """The steps from `current` to `target`; one step (the target) when no table changes more than one index."""
    current_tables, target_tables = _tables(current), _tables(target)
    plans = [_table_plan(name, current_tables[name], target_tables[name])
             for name in sorted(current_tables.keys() & target_tables.keys())]
    present = {plan.logical_id: {name: "current" for name in plan.current} for plan in plans}
    steps: list[Step] = []

    def snapshot(base: dict, phase: str, changes: list[str], created=(), deleted=()) -> Step:
        template = copy.deepcopy(base)
        base_tables = _tables(base)
        for plan in plans:
            own = plan.current if base is current else plan.target
            origin = "current" if base is current else "target"
            if present[plan.logical_id] == {name: origin for name in own}:
                continue  # exactly the base's table: left as written
            template["Resources"][plan.logical_id] = _table_with(base_tables[plan.logical_id], plan,
                                                                 present[plan.logical_id])
        return Step(phase=phase, template=template, changes=changes, created=list(created), deleted=list(deleted))

    for phase, attribute in (("delete-before", "delete_before"), ("create", "create")):
        for position in range(max((len(getattr(plan, attribute)) for plan in plans), default=0)):
            changes, created, deleted = [], [], []
            for plan in plans:
                names = getattr(plan, attribute)
                if position >= len(names):
                    continue
                name = names[position]
                if phase == "create":
                    present[plan.logical_id][name] = "target"
                    created.append((plan.logical_id, name))
                    changes.append(f"{plan.logical_id}: create index {name}")
                else:
                    del present[plan.logical_id][name]
                    deleted.append((plan.logical_id, name))
                    changes.append(f"{plan.logical_id}: delete index {name}")
            steps.append(snapshot(current, phase, changes, created, deleted))

    # The code step: every index the target keeps takes the target's definition (in-place settings included).
    for plan in plans:
        present[plan.logical_id] = {**{name: "target" for name in plan.target},
                                    **{name: "current" for name in plan.delete_after}}
    kept = [f"{plan.logical_id}: keeps {', '.join(plan.delete_after)} until the next steps"
            for plan in plans if plan.delete_after]
    steps.append(snapshot(target, "code", ["the new template (code, functions, every other change)"] + kept))

    for position in range(max((len(plan.delete_after) for plan in plans), default=0)):
        changes, deleted = [], []
        for plan in plans:
            if position < len(plan.delete_after):
                name = plan.delete_after[position]
                del present[plan.logical_id][name]
                deleted.append((plan.logical_id, name))
                changes.append(f"{plan.logical_id}: delete index {name}")
        steps.append(snapshot(target, "delete-after", changes, deleted=deleted))
    # Every table now holds the target's indexes with the target's definitions: the last step is the target.
    steps[-1].template = copy.deepcopy(target)
    return steps


def _table_name(template: dict, logical_id: str, table_prefix: str) -> str:
    name = template["Resources"][logical_id]["Properties"]["TableName"]
    if isinstance(name, dict) and "Fn::Sub" in name:
        name = name["Fn::Sub"].replace("${TablePrefix}", table_prefix)
    return name


def render(template: dict) -> str:
    return json.dumps(template, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def deploy_commands(steps: list[Step], paths: list[Path], table_prefix: str) -> str:
    lines = []
    for number, (step, path) in enumerate(zip(steps, paths), start=1):
        lines.append(f"# step {number}/{len(steps)} ({step.phase}): " + "; ".join(step.changes))
        overrides = ' \\\n  --parameter-overrides CodeKey="$CODE_KEY"' if step.phase == "code" else ""
        lines.append(
            f'aws cloudformation deploy --stack-name "$STACK" --template-file {path} \\\n'
            '  --s3-bucket "$CODE_BUCKET" --s3-prefix municipal-point-cloud/templates \\\n'
            f"  --capabilities CAPABILITY_NAMED_IAM{overrides}"
        )
        # CloudFormation does not wait for an index to be built or gone; the table refuses the next index
        # operation until then.
        for logical_id, index in step.created:
            table = _table_name(step.template, logical_id, table_prefix)
            lines.append(
                f'until [ "$(aws dynamodb describe-table --table-name {table} --query '
                f"\"Table.GlobalSecondaryIndexes[?IndexName=='{index}'].IndexStatus | [0]\" --output text)\" = ACTIVE ]; "
                f"do sleep 60; done"
            )
        for logical_id, index in step.deleted:
            table = _table_name(step.template, logical_id, table_prefix)
            lines.append(
                f'until [ "$(aws dynamodb describe-table --table-name {table} --query '
                f"\"length(Table.GlobalSecondaryIndexes[?IndexName=='{index}'] || \\`[]\\`)\" --output text)\" = 0 ]; "
                f"do sleep 30; done"
            )
        lines.append("")
    return "\n".join(lines)


def resources_to_import(template: dict, table_prefix: str) -> list[dict]:
    """The `--resources-to-import` entries for every table of `template`, named with `table_prefix`."""
    return [{
        "ResourceType": TABLE_TYPE,
        "LogicalResourceId": logical_id,
        "ResourceIdentifier": {"TableName": _table_name(template, logical_id, table_prefix)},
    } for logical_id in sorted(_tables(template))]


def _default_prefix(template: dict) -> str:
    return template.get("Parameters", {}).get("TablePrefix", {}).get("Default", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="write the intermediate templates and print the deploy commands")
    plan.add_argument("--current", type=Path, required=True,
                      help="the deployed template: a file, or `aws cloudformation get-template` output")
    plan.add_argument("--target", type=Path, default=Path("infrastructure") / "platform.json")
    plan.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    plan.add_argument("--table-prefix", help="the stack's TablePrefix (default: the target's default)")
    importing = commands.add_parser("import-resources", help="print the --resources-to-import list of the tables")
    importing.add_argument("--template", type=Path, default=Path("infrastructure") / "tables.json")
    importing.add_argument("--table-prefix", help="the TablePrefix of the kept tables (default: the template's)")
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "import-resources":
            template = load_template(arguments.template)
            prefix = arguments.table_prefix if arguments.table_prefix is not None else _default_prefix(template)
            print(json.dumps(resources_to_import(template, prefix), indent=2))
            return 0
        current, target = load_template(arguments.current), load_template(arguments.target)
        steps = plan_upgrade(current, target)
    except UpgradeRefused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    prefix = arguments.table_prefix if arguments.table_prefix is not None else _default_prefix(target)
    arguments.output.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, step in enumerate(steps, start=1):
        path = arguments.output / f"step-{number:02d}-{step.phase}.json"
        path.write_text(render(step.template), encoding="utf-8")
        paths.append(path)
    if len(steps) == 1:
        print("# no table changes more than one index: deploy the new template as usual (docs/DEPLOYMENT.md §6)")
    print(deploy_commands(steps, paths, prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
