"""The user table: discovered (never created), its stream enabled with NEW_AND_OLD_IMAGES.

A stream of another view type is reported, never replaced: the user (or another consumer) owns it.
Before enabling a stream we tag the table with `ddbbridge.io/stream-enabled-by`, so `destroy` disables
only a stream this pair enabled; tagging first means a crash in between still leaves the mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ddbbridge.desired import STREAM_VIEW_TYPE, TAG_STREAM_ENABLED_BY
from ddbbridge.ensure.context import EnsureContext, is_missing
from ddbbridge.errors import TerminalError
from ddbbridge.keyschema import key_schema_of
from ddbbridge_lambdas.config import KeyAttribute


@dataclass(frozen=True)
class UserTable:
    name: str
    arn: str
    status: str
    key_schema: tuple[KeyAttribute, ...]
    stream_enabled: bool
    stream_view_type: str | None
    stream_arn: str | None
    tags: dict[str, str]

    def stream_enabled_by(self) -> str | None:
        return self.tags.get(TAG_STREAM_ENABLED_BY)


@dataclass(frozen=True)
class TableStreamObserved:
    table_arn: str
    stream_arn: str | None  # None only in a dry run that would enable it
    view_type: str
    enabled_by_us: bool


def describe_user_table(ctx: EnsureContext, table_name: str) -> UserTable:
    """Read the user's table; a missing table is a terminal error (we never create it)."""
    ddb = ctx.client("dynamodb")
    try:
        table = ddb.describe_table(TableName=table_name)["Table"]
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            raise TerminalError(
                f"table {table_name!r} does not exist in {ctx.session.region}; create it first "
                "(ddb-bridge never creates or deletes user tables)",
                reason="TableMissing",
            ) from None
        raise
    stream = table.get("StreamSpecification") or {}
    enabled = bool(stream.get("StreamEnabled"))
    tags = _table_tags(ctx, table["TableArn"])
    return UserTable(
        name=table_name,
        arn=table["TableArn"],
        status=table.get("TableStatus", "ACTIVE"),
        key_schema=key_schema_of(table),
        stream_enabled=enabled,
        stream_view_type=stream.get("StreamViewType") if enabled else None,
        stream_arn=table.get("LatestStreamArn") if enabled else None,
        tags=tags,
    )


def _table_tags(ctx: EnsureContext, arn: str) -> dict[str, str]:
    ddb = ctx.client("dynamodb")
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = ddb.list_tags_of_resource(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def check_stream_compatible(table: UserTable) -> None:
    """An existing stream of another view type is the user's: report it, never replace it."""
    if table.stream_enabled and table.stream_view_type != STREAM_VIEW_TYPE:
        raise TerminalError(
            f"table {table.name!r} already has a stream of view type {table.stream_view_type}; "
            f"ddb-bridge needs {STREAM_VIEW_TYPE} and will not replace a stream it does not own "
            "(its consumers would lose their position); change the view type yourself",
            reason="StreamViewTypeConflict",
        )


def ensure_table_stream(ctx: EnsureContext, table: UserTable, pair: str) -> TableStreamObserved:
    check_stream_compatible(table)
    ddb = ctx.client("dynamodb")
    marker = table.stream_enabled_by()
    if table.stream_enabled:
        return TableStreamObserved(table.arn, table.stream_arn, STREAM_VIEW_TYPE, marker == pair)
    if marker != pair:
        ctx.change(
            "dynamodb",
            "tag",
            table.name,
            lambda: ddb.tag_resource(
                ResourceArn=table.arn, Tags=[{"Key": TAG_STREAM_ENABLED_BY, "Value": pair}]
            ),
            detail=f"{TAG_STREAM_ENABLED_BY}={pair} (so destroy disables only what we enabled)",
        )
    ctx.change(
        "dynamodb",
        "enable",
        f"{table.name} stream",
        lambda: ddb.update_table(
            TableName=table.name,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
        ),
        detail=STREAM_VIEW_TYPE,
    )
    if ctx.dry_run:
        return TableStreamObserved(table.arn, None, STREAM_VIEW_TYPE, True)
    stream_arn: list[str] = []

    def enabled() -> bool:
        described = ddb.describe_table(TableName=table.name)["Table"]
        if described.get("TableStatus") == "ACTIVE" and described.get("LatestStreamArn"):
            stream_arn.append(described["LatestStreamArn"])
            return True
        return False

    ctx.settle(f"stream of {table.name}", enabled)
    return TableStreamObserved(table.arn, stream_arn[-1], STREAM_VIEW_TYPE, True)


def disable_table_stream(ctx: EnsureContext, table_name: str, pair: str) -> bool:
    """Disable the stream only if this pair enabled it; returns True when it did (or would)."""
    ddb = ctx.client("dynamodb")
    try:
        table = describe_user_table(ctx, table_name)
    except TerminalError:
        return False  # the user's table is gone: nothing of ours left on it
    if table.stream_enabled_by() != pair:
        return False
    if table.stream_enabled:
        ctx.change(
            "dynamodb",
            "disable",
            f"{table_name} stream",
            lambda: ddb.update_table(TableName=table_name, StreamSpecification={"StreamEnabled": False}),
            detail="enabled by this pair",
        )
    ctx.change(
        "dynamodb",
        "untag",
        table_name,
        lambda: ddb.untag_resource(ResourceArn=table.arn, TagKeys=[TAG_STREAM_ENABLED_BY]),
        detail=TAG_STREAM_ENABLED_BY,
    )
    return True
