"""SQS queues of a side: the two Lambda on-failure destinations and our own dead letters."""

from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

from ddbbridge.desired import Queue
from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes

MISSING_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


@dataclass(frozen=True)
class QueueObserved:
    name: str
    url: str | None  # None only in a dry run that would create it
    arn: str


def queue_url(ctx: EnsureContext, name: str) -> str | None:
    try:
        url: str = ctx.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        return url
    except botocore.exceptions.ClientError as error:
        if is_missing(error, *MISSING_QUEUE):
            return None
        raise


def ensure_queue(ctx: EnsureContext, desired: Queue) -> QueueObserved:
    sqs = ctx.client("sqs")
    url = queue_url(ctx, desired.name)
    if url is None:
        created = ctx.change(
            "sqs",
            "create",
            desired.name,
            lambda: sqs.create_queue(
                QueueName=desired.name, Attributes=desired.attributes, tags=desired.tags
            ),
            detail=", ".join(f"{k}={v}" for k, v in sorted(desired.attributes.items())),
        )
        return QueueObserved(desired.name, created["QueueUrl"] if created else None, desired.arn)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
    changed = {k: v for k, v in desired.attributes.items() if attributes.get(k) != v}
    if changed:
        ctx.change(
            "sqs",
            "update",
            desired.name,
            lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes=changed),
            detail=", ".join(f"{k}={v}" for k, v in sorted(changed.items())),
        )
    tags = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    missing_tags = tag_changes(tags, desired.tags)
    if missing_tags:
        ctx.change(
            "sqs",
            "tag",
            desired.name,
            lambda: sqs.tag_queue(QueueUrl=url, Tags=missing_tags),
            detail=", ".join(sorted(missing_tags)),
        )
    return QueueObserved(desired.name, url, attributes.get("QueueArn", desired.arn))


def queue_depth(ctx: EnsureContext, name: str) -> int | None:
    """Visible + in-flight messages; None when the queue does not exist."""
    url = queue_url(ctx, name)
    if url is None:
        return None
    attributes = (
        ctx.client("sqs")
        .get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        .get("Attributes", {})
    )
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def delete_queue(ctx: EnsureContext, name: str) -> None:
    url = queue_url(ctx, name)
    if url is None:
        return

    def delete() -> None:
        try:
            ctx.client("sqs").delete_queue(QueueUrl=url)
        except botocore.exceptions.ClientError as error:
            if not is_missing(error, *MISSING_QUEUE):
                raise

    ctx.change("sqs", "delete", name, delete)
