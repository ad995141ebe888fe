"""One pair per user table: the claim tag `ddbbridge.io/replicated-by = <namespace>/<pair>`.

Two pairs replicating one table would each apply the other's changes and fight over the stamps, so a
second pair is refused (a terminal error naming the owner). The claim is checked before anything is
created and written on the user table in the same pass; `destroy` releases it. A retained pair keeps
its claim: its functions still replicate the table, so a new pair on it must still be refused, while
the same pair (same namespace and name) adopts what it left behind.
"""

from __future__ import annotations

from ddbbridge.ensure.context import EnsureContext
from ddbbridge.ensure.dynamodb_streams import UserTable, describe_user_table
from ddbbridge.errors import TerminalError

TAG_REPLICATED_BY = "ddbbridge.io/replicated-by"


def claim_owner(namespace: str, pair: str) -> str:
    return f"{namespace}/{pair}"


def check_claim(table: UserTable, owner: str) -> None:
    """Pure check on the table's tags: refuse a table another pair already replicates."""
    current = table.tags.get(TAG_REPLICATED_BY)
    if current is not None and current != owner:
        raise TerminalError(
            f"table {table.name!r} is already replicated by pair {current}; one table can belong to "
            f"one pair only (delete that pair, or remove the tag {TAG_REPLICATED_BY} if it is stale)",
            reason="TableAlreadyReplicated",
        )


def ensure_claim(ctx: EnsureContext, table: UserTable, owner: str) -> None:
    check_claim(table, owner)
    if table.tags.get(TAG_REPLICATED_BY) == owner:
        return
    ddb = ctx.client("dynamodb")
    ctx.change(
        "dynamodb",
        "tag",
        table.name,
        lambda: ddb.tag_resource(ResourceArn=table.arn, Tags=[{"Key": TAG_REPLICATED_BY, "Value": owner}]),
        detail=f"{TAG_REPLICATED_BY}={owner}",
    )


def release_claim(ctx: EnsureContext, table_name: str, owner: str) -> bool:
    """Remove our claim (never another pair's); True when there was one to remove."""
    try:
        table = describe_user_table(ctx, table_name)
    except TerminalError:
        return False  # the table is gone, and its tags with it
    if table.tags.get(TAG_REPLICATED_BY) != owner:
        return False
    ddb = ctx.client("dynamodb")
    ctx.change(
        "dynamodb",
        "untag",
        table_name,
        lambda: ddb.untag_resource(ResourceArn=table.arn, TagKeys=[TAG_REPLICATED_BY]),
        detail=TAG_REPLICATED_BY,
    )
    return True
