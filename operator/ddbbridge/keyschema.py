"""The user table's primary key, read from DynamoDB itself (any names, hash-only or hash + range)."""

from __future__ import annotations

from typing import Any, cast

from ddbbridge_lambdas.config import KeyAttribute, KeyRole, KeyType


def key_schema_of(description: dict[str, Any]) -> tuple[KeyAttribute, ...]:
    """Key attributes, HASH first, from a DescribeTable `Table` document."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    keys = [
        KeyAttribute(
            name=element["AttributeName"],
            type=cast(KeyType, types[element["AttributeName"]]),
            role=cast(KeyRole, element["KeyType"]),
        )
        for element in description["KeySchema"]
    ]
    return tuple(sorted(keys, key=lambda k: k.role != "HASH"))


def read_key_schema(dynamodb: Any, table_name: str) -> tuple[KeyAttribute, ...]:
    return key_schema_of(dynamodb.describe_table(TableName=table_name)["Table"])


def key_names(schema: tuple[KeyAttribute, ...]) -> tuple[str, ...]:
    return tuple(k.name for k in schema)
