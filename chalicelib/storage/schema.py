"""Table definitions derived from the PynamoDB models, for the local bootstrap and for CloudFormation.

`table_definitions()` turns each model into the arguments of DynamoDB's CreateTable; `create_tables()`
applies them to whatever endpoint boto3 is pointed at (DynamoDB Local in development and tests);
`cloudformation_tables()` renders the same definitions as `AWS::DynamoDB::Table` resources, which
`infrastructure/tables.json` holds and a test keeps identical.
"""
from __future__ import annotations

from typing import Any

from chalicelib.storage.models import ALL_MODELS, TTL_ATTRIBUTES


def _camel_index(index: dict[str, Any]) -> dict[str, Any]:
    return {
        "IndexName": index["index_name"],
        # DynamoDB wants the partition key first; PynamoDB lists them in no fixed order.
        "KeySchema": sorted(index["key_schema"], key=lambda item: item["KeyType"]),
        "Projection": {
            key: value
            for key, value in {
                "ProjectionType": index["projection"]["ProjectionType"],
                "NonKeyAttributes": index["projection"].get("NonKeyAttributes"),
            }.items()
            if value
        },
    }


def table_definitions(table_prefix: str = "") -> list[dict[str, Any]]:
    definitions = []
    for model in ALL_MODELS:
        schema = model._get_schema()
        definition: dict[str, Any] = {
            "TableName": f"{table_prefix}{model.Meta.base_name}",
            "AttributeDefinitions": sorted(schema["attribute_definitions"], key=lambda item: item["AttributeName"]),
            "KeySchema": sorted(schema["key_schema"], key=lambda item: item["KeyType"]),
            "BillingMode": "PAY_PER_REQUEST",
        }
        if schema["global_secondary_indexes"]:
            definition["GlobalSecondaryIndexes"] = sorted(
                (_camel_index(index) for index in schema["global_secondary_indexes"]),
                key=lambda item: item["IndexName"],
            )
        stream_view_type = getattr(model.Meta, "stream_view_type", None)
        if stream_view_type:
            definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view_type}
        definitions.append(definition)
    return definitions


def create_tables(client, table_prefix: str) -> list[str]:
    """Create every missing table (idempotent); returns the names created."""
    existing = set(client.list_tables(Limit=100)["TableNames"])
    created = []
    for definition in table_definitions(table_prefix):
        if definition["TableName"] in existing:
            continue
        client.create_table(**definition)
        created.append(definition["TableName"])
    for name in created:
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
        base_name = name[len(table_prefix):]
        if base_name in TTL_ATTRIBUTES:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTES[base_name]},
            )
    return created


def enable_streams(client, table_prefix: str) -> list[str]:
    """Turn on the streams the models ask for on tables created before they asked (a kept local
    database); returns the tables changed. CreateTable already does it for new tables."""
    changed = []
    for definition in table_definitions(table_prefix):
        wanted = definition.get("StreamSpecification")
        if not wanted:
            continue
        table = client.describe_table(TableName=definition["TableName"])["Table"]
        if table.get("StreamSpecification", {}).get("StreamEnabled"):
            continue
        client.update_table(TableName=definition["TableName"], StreamSpecification=wanted)
        changed.append(definition["TableName"])
    return changed


def create_missing_indexes(client, table_prefix: str) -> list[str]:
    """Add the global secondary indexes the models gained since a kept local database was created (one
    per table per call, as DynamoDB allows); returns "table.index" for each one started. CloudFormation
    does the same in AWS when the platform template gains an index."""
    started = []
    for definition in table_definitions(table_prefix):
        wanted = definition.get("GlobalSecondaryIndexes") or []
        table = client.describe_table(TableName=definition["TableName"])["Table"]
        present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
        missing = [index for index in wanted if index["IndexName"] not in present]
        if not missing:
            continue
        index = missing[0]
        key_names = {element["AttributeName"] for element in index["KeySchema"]}
        client.update_table(
            TableName=definition["TableName"],
            AttributeDefinitions=[attribute for attribute in definition["AttributeDefinitions"]
                                  if attribute["AttributeName"] in key_names],
            GlobalSecondaryIndexUpdates=[{"Create": {key: value for key, value in index.items()
                                                     if key in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")}}],
        )
        started.append(f"{definition['TableName']}.{index['IndexName']}")
    return started


def delete_tables(client, table_prefix: str) -> None:
    for definition in table_definitions(table_prefix):
        try:
            client.delete_table(TableName=definition["TableName"])
        except client.exceptions.ResourceNotFoundException:
            pass


TABLE_DELETION_PROTECTION_PARAMETER = "TableDeletionProtection"


def _logical_id(base_name: str) -> str:
    return "".join(part.capitalize() for part in base_name.split("_")) + "Table"


def cloudformation_tables() -> dict[str, Any]:
    """`AWS::DynamoDB::Table` resources named from the stage parameter, with recovery and protection on."""
    resources: dict[str, Any] = {}
    for definition in table_definitions():
        base_name = definition["TableName"]
        properties: dict[str, Any] = {
            "TableName": {"Fn::Sub": "${TablePrefix}" + base_name},
            "AttributeDefinitions": definition["AttributeDefinitions"],
            "KeySchema": definition["KeySchema"],
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            # A parameter, not a constant, only so that the first deployment can create the tables unprotected:
            # CloudFormation cannot delete a protected table, so a rolled-back first deployment would leave
            # them behind despite RetainExceptOnCreate. Turned on by the second deployment (docs/DEPLOYMENT.md §6).
            "DeletionProtectionEnabled": {"Ref": TABLE_DELETION_PROTECTION_PARAMETER},
            "SSESpecification": {"SSEEnabled": True},
        }
        if "GlobalSecondaryIndexes" in definition:
            properties["GlobalSecondaryIndexes"] = definition["GlobalSecondaryIndexes"]
        if "StreamSpecification" in definition:
            properties["StreamSpecification"] = {"StreamViewType": definition["StreamSpecification"]["StreamViewType"]}
        if base_name in TTL_ATTRIBUTES:
            properties["TimeToLiveSpecification"] = {"AttributeName": TTL_ATTRIBUTES[base_name], "Enabled": True}
        resources[_logical_id(base_name)] = {
            "Type": "AWS::DynamoDB::Table",
            # Kept when the stack is deleted or the resource removed (a public ledger), but deleted when the
            # stack operation that created it rolls back: a failed first deployment must not leave tables
            # with the fixed names behind to block the retry. See docs/DEPLOYMENT.md, "初回配備の失敗".
            "DeletionPolicy": "RetainExceptOnCreate",
            "UpdateReplacePolicy": "Retain",
            "Properties": properties,
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Municipal Point Cloud: DynamoDB tables, generated from chalicelib/storage/models.py",
        "Parameters": {
            "TablePrefix": {"Type": "String", "Default": "points-prod-"},
            TABLE_DELETION_PROTECTION_PARAMETER: {
                "Type": "String",
                "Default": "true",
                "AllowedValues": ["true", "false"],
                "Description": "DynamoDB deletion protection on every table: false only for the first deployment, "
                               "so that a failed creation rolls back cleanly (see docs/DEPLOYMENT.md)",
            },
        },
        "Resources": resources,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(cloudformation_tables(), indent=2, ensure_ascii=False))
