"""The inbound Kinesis stream of a side (`ddbbridge-P-to-X`): shards, retention, tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ddbbridge.desired import KinesisStream
from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes


@dataclass(frozen=True)
class StreamObserved:
    name: str
    arn: str
    status: str
    open_shards: int


def _summary(ctx: EnsureContext, name: str) -> dict[str, Any] | None:
    try:
        summary: dict[str, Any] = ctx.client("kinesis").describe_stream_summary(StreamName=name)[
            "StreamDescriptionSummary"
        ]
        return summary
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def _settled(ctx: EnsureContext, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def active() -> bool:
        summary = _summary(ctx, name)
        if summary and summary.get("StreamStatus") == "ACTIVE":
            found.append(summary)
            return True
        return False

    ctx.settle(f"Kinesis stream {name}", active)
    return found[-1]


def ensure_stream(ctx: EnsureContext, desired: KinesisStream) -> StreamObserved:
    kinesis = ctx.client("kinesis")
    summary = _summary(ctx, desired.name)
    if summary is None:
        ctx.change(
            "kinesis",
            "create",
            desired.name,
            lambda: kinesis.create_stream(
                StreamName=desired.name,
                ShardCount=desired.shard_count,
                StreamModeDetails={"StreamMode": "PROVISIONED"},
            ),
            detail=f"{desired.shard_count} shard(s)",
        )
        if ctx.dry_run:
            ctx.change("kinesis", "tag", desired.name, lambda: None, ", ".join(sorted(desired.tags)))
            if desired.retention_hours != 24:
                ctx.change(
                    "kinesis", "update", desired.name, lambda: None, f"retention {desired.retention_hours} h"
                )
            return StreamObserved(desired.name, desired.arn, "(planned)", desired.shard_count)
        summary = _settled(ctx, desired.name)
        tags: dict[str, str] = {}
    else:
        if summary.get("StreamStatus") != "ACTIVE":
            summary = _settled(ctx, desired.name)
        tags = {
            t["Key"]: t["Value"]
            for t in kinesis.list_tags_for_stream(StreamName=desired.name).get("Tags", [])
        }
    retention = int(summary.get("RetentionPeriodHours", 24))
    if retention != desired.retention_hours:
        grow = desired.retention_hours > retention
        ctx.change(
            "kinesis",
            "update",
            desired.name,
            lambda: (
                kinesis.increase_stream_retention_period if grow else kinesis.decrease_stream_retention_period
            )(StreamName=desired.name, RetentionPeriodHours=desired.retention_hours),
            detail=f"retention {retention} -> {desired.retention_hours} h",
        )
        if not ctx.dry_run:
            summary = _settled(ctx, desired.name)
    shards = int(summary.get("OpenShardCount", desired.shard_count))
    if shards != desired.shard_count:
        ctx.change(
            "kinesis",
            "update",
            desired.name,
            lambda: kinesis.update_shard_count(
                StreamName=desired.name, TargetShardCount=desired.shard_count, ScalingType="UNIFORM_SCALING"
            ),
            detail=f"shards {shards} -> {desired.shard_count}",
        )
        if not ctx.dry_run:
            summary = _settled(ctx, desired.name)
    missing_tags = tag_changes(tags, desired.tags)
    if missing_tags:
        ctx.change(
            "kinesis",
            "tag",
            desired.name,
            lambda: kinesis.add_tags_to_stream(StreamName=desired.name, Tags=missing_tags),
            detail=", ".join(sorted(missing_tags)),
        )
    return StreamObserved(
        desired.name,
        str(summary.get("StreamARN", desired.arn)),
        str(summary.get("StreamStatus")),
        int(summary.get("OpenShardCount", shards)),
    )


def delete_stream(ctx: EnsureContext, name: str) -> None:
    kinesis = ctx.client("kinesis")
    summary = _summary(ctx, name)
    if summary is None or summary.get("StreamStatus") == "DELETING":
        return

    def delete() -> None:
        try:
            kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        except botocore.exceptions.ClientError as error:
            if not is_missing(error):
                raise

    ctx.change("kinesis", "delete", name, delete)
