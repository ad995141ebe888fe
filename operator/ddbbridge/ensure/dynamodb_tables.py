"""The pair's own bookkeeping tables (version ledger, stats): on-demand, hash key PK, TTL, tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ddbbridge.desired import BookkeepingTable
from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes
from ddbbridge.errors import TerminalError


@dataclass(frozen=True)
class TableObserved:
    name: str
    arn: str
    status: str


def _describe(ctx: EnsureContext, name: str) -> dict[str, Any] | None:
    try:
        table: dict[str, Any] = ctx.client("dynamodb").describe_table(TableName=name)["Table"]
        return table
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def ensure_bookkeeping_table(ctx: EnsureContext, desired: BookkeepingTable) -> TableObserved:
    ddb = ctx.client("dynamodb")
    key_name, key_type = desired.hash_key
    table = _describe(ctx, desired.name)
    if table is None:
        ctx.change(
            "dynamodb",
            "create",
            desired.name,
            lambda: ddb.create_table(
                TableName=desired.name,
                AttributeDefinitions=[{"AttributeName": key_name, "AttributeType": key_type}],
                KeySchema=[{"AttributeName": key_name, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
                Tags=[{"Key": k, "Value": v} for k, v in sorted(desired.tags.items())],
            ),
            detail=f"on-demand, hash key {key_name} ({key_type})",
        )
        if ctx.dry_run:
            if desired.ttl_attribute:
                ctx.change(
                    "dynamodb", "update", desired.name, lambda: None, f"TTL on {desired.ttl_attribute}"
                )
            return TableObserved(desired.name, desired.arn, "(planned)")
        ctx.settle(
            f"table {desired.name}",
            lambda: (_describe(ctx, desired.name) or {}).get("TableStatus") == "ACTIVE",
        )
        table = _describe(ctx, desired.name) or {}
        existing_tags: dict[str, str] = dict(desired.tags)
    else:
        keys = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
        if keys != [(key_name, "HASH")]:
            raise TerminalError(
                f"table {desired.name} exists with key schema {keys}, expected hash key {key_name}; "
                "it is not ours to change: delete or rename it"
            )
        existing_tags = {
            t["Key"]: t["Value"]
            for t in ddb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
        }
    arn = table["TableArn"]
    if desired.ttl_attribute:
        ttl = ddb.describe_time_to_live(TableName=desired.name).get("TimeToLiveDescription", {})
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or (
            ttl.get("AttributeName") != desired.ttl_attribute
        ):
            ctx.change(
                "dynamodb",
                "update",
                desired.name,
                lambda: ddb.update_time_to_live(
                    TableName=desired.name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": desired.ttl_attribute},
                ),
                detail=f"TTL on {desired.ttl_attribute}",
            )
    missing_tags = tag_changes(existing_tags, desired.tags)
    if missing_tags:
        ctx.change(
            "dynamodb",
            "tag",
            desired.name,
            lambda: ddb.tag_resource(
                ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in sorted(missing_tags.items())]
            ),
            detail=", ".join(sorted(missing_tags)),
        )
    return TableObserved(desired.name, arn, table.get("TableStatus", "ACTIVE"))


def delete_table(ctx: EnsureContext, name: str) -> None:
    if _describe(ctx, name) is None:
        return
    ctx.change("dynamodb", "delete", name, lambda: _delete_if_present(ctx, name))


def _delete_if_present(ctx: EnsureContext, name: str) -> None:
    try:
        ctx.client("dynamodb").delete_table(TableName=name)
    except botocore.exceptions.ClientError as error:
        if not is_missing(error):
            raise
