"""DynamoDB access shared by both handlers: consistent batch reads and exact-state conditions.

Every write the replicator makes is conditioned on exactly the state its decision was made on, so
a concurrent write (by the application or the other handler) cancels it and the decision is taken
again from a fresh read. No lexicographic tuple comparison is ever needed inside DynamoDB.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .versions import Version, format_timestamp

MAX_BATCH_GET_KEYS = 100
_MAX_UNPROCESSED_ROUNDS = 8


def batch_get_consistent(
    client: Any, requests: Sequence[tuple[str, dict[str, Any]]], projection: dict[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Read (table, key) pairs with strongly consistent reads; returns items found, per table.
    `projection` maps a table name to a ProjectionExpression using only plain attribute names."""
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(requests), MAX_BATCH_GET_KEYS):
        chunk = requests[start : start + MAX_BATCH_GET_KEYS]
        request: dict[str, Any] = {}
        for table, key in chunk:
            entry = request.setdefault(table, {"Keys": [], "ConsistentRead": True})
            if key not in entry["Keys"]:
                entry["Keys"].append(key)
        for table, entry in request.items():
            if projection and table in projection:
                names = {f"#p{i}": name for i, name in enumerate(projection[table].split(","))}
                entry["ProjectionExpression"] = ", ".join(names)
                entry["ExpressionAttributeNames"] = names
        rounds = 0
        while request:
            response = client.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                found.setdefault(table, []).extend(items)
            request = response.get("UnprocessedKeys") or {}
            rounds += 1
            if request and rounds >= _MAX_UNPROCESSED_ROUNDS:
                raise RuntimeError("BatchGetItem kept returning unprocessed keys (throttled)")
            if request:
                time.sleep(min(0.05 * 2**rounds, 1.0))
    return found


class Expression:
    """Collects attribute names and values for one condition expression."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#{self.prefix}n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, typed: Any) -> str:
        placeholder = f":{self.prefix}v{len(self.values)}"
        self.values[placeholder] = typed
        return placeholder

    def apply(self, request: dict[str, Any], condition: str) -> dict[str, Any]:
        request["ConditionExpression"] = condition
        if self.names:
            request["ExpressionAttributeNames"] = {
                **request.get("ExpressionAttributeNames", {}),
                **self.names,
            }
        if self.values:
            request["ExpressionAttributeValues"] = {
                **request.get("ExpressionAttributeValues", {}),
                **self.values,
            }
        return request


def stamp_condition(
    expr: Expression, version: Version | None, timestamp_attribute: str, origin_attribute: str
) -> str:
    """True when the item's stamp is exactly `version`, or (version None) when it has no valid stamp.
    Matches `versions.version_from_attributes`: valid = timestamp of type N and non-empty origin S."""
    ts, origin = expr.name(timestamp_attribute), expr.name(origin_attribute)
    if version is not None:
        return (
            f"{ts} = {expr.value({'N': format_timestamp(version.timestamp)})} "
            f"AND {origin} = {expr.value({'S': version.origin})}"
        )
    return (
        f"(attribute_not_exists({ts}) OR attribute_not_exists({origin}) "
        f"OR NOT attribute_type({ts}, {expr.value({'S': 'N'})}) "
        f"OR NOT attribute_type({origin}, {expr.value({'S': 'S'})}) "
        f"OR {origin} = {expr.value({'S': ''})})"
    )


def item_state_condition(
    expr: Expression,
    hash_key: str,
    *,
    present: bool,
    version: Version | None,
    timestamp_attribute: str,
    origin_attribute: str,
) -> str:
    """The item is (still) absent, or present with exactly the stamp read."""
    key = expr.name(hash_key)
    if not present:
        return f"attribute_not_exists({key})"
    return f"attribute_exists({key}) AND " + stamp_condition(
        expr, version, timestamp_attribute, origin_attribute
    )
