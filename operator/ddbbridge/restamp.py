"""Giving an item a fresh version in its own region, atomically, as the sender does for unstamped
writes: an UpdateItem that sets the two stamp attributes, conditioned on the item still holding
exactly the stamp that was read, returning the whole item as stamped.

Used by backfill (items written before the pair existed, without a stamp) and by `verify --repair`
(two regions holding different content at the same version, or no version at all). The new version
always names the item's own region as origin and is placed above every version involved, so the
sender of that region sends it on (a "new local version") and the peer's applier takes it.
"""

from __future__ import annotations

from typing import Any

from ddbbridge_lambdas.codec import item_to_boto3
from ddbbridge_lambdas.config import HandlerConfig
from ddbbridge_lambdas.errors import is_condition_failure
from ddbbridge_lambdas.tables import Expression, item_state_condition
from ddbbridge_lambdas.versions import Version, format_timestamp

Item = dict[str, Any]


def restamp_item(
    dynamodb: Any, config: HandlerConfig, key: Item, seen: Version | None, stamp: Version
) -> Item | None:
    """Stamp the item at `key` (wire or boto3 form) with `stamp` if it still holds exactly `seen`
    (None: no valid stamp). Returns the item as stamped (boto3 form), or None when it changed or
    vanished since it was read (its own stream record then carries the newer state)."""
    expr = Expression("r")
    condition = item_state_condition(
        expr,
        config.key_names[0],
        present=True,
        version=seen,
        timestamp_attribute=config.timestamp_attribute,
        origin_attribute=config.origin_attribute,
    )
    ts_value = expr.value({"N": format_timestamp(stamp.timestamp)})
    origin_value = expr.value({"S": stamp.origin})
    ts_name, origin_name = expr.name(config.timestamp_attribute), expr.name(config.origin_attribute)
    request = expr.apply(
        {
            "TableName": config.table_name,
            "Key": item_to_boto3(key),
            "UpdateExpression": f"SET {ts_name} = {ts_value}, {origin_name} = {origin_value}",
            "ReturnValues": "ALL_NEW",
        },
        condition,
    )
    try:
        response = dynamodb.update_item(**request)
    except Exception as error:
        if is_condition_failure(error):
            return None
        raise
    stamped: Item = response["Attributes"]
    return stamped
