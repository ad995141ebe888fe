"""Read the counters the handlers write into a side's stats table (see ddbbridge_lambdas.stats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DirectionStats:
    replicated_count: int | None = None
    last_lag_seconds: float | None = None


def read_direction_stats(dynamodb: Any, stats_table: str, source_side: str) -> DirectionStats:
    found = dynamodb.get_item(
        TableName=stats_table, Key={"PK": {"S": "replicated_count"}}, ConsistentRead=True
    )
    item = found.get("Item")
    if not item:
        return DirectionStats(replicated_count=0)
    return DirectionStats(replicated_count=int(item.get("cnt", {}).get("N", "0")))
