"""Read the per-batch counters the handlers keep in a side's stats table (ddbbridge_lambdas.stats).

The applier in Y writes item `replicated_count` (changes from X applied into Y, with `last_lag_ms`);
the sender in X writes item `sent_count`. A missing item means nothing happened yet: zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddbbridge_lambdas.stats import APPLIER_ITEM, SENDER_ITEM

APPLIER_COUNTERS = ("received", "applied", "discarded_older", "coalesced", "dead_lettered")
SENDER_COUNTERS = ("received", "sent", "loops_dropped", "restamped", "tombstones", "skipped", "dead_lettered")


@dataclass
class DirectionStats:
    replicated_count: int = 0
    sent_count: int = 0
    last_lag_seconds: float | None = None
    last_batch_at: str | None = None
    applier: dict[str, int] = field(default_factory=dict)
    sender: dict[str, int] = field(default_factory=dict)


def _item(dynamodb: Any, table: str, key: str) -> dict[str, Any]:
    found: dict[str, Any] = (
        dynamodb.get_item(TableName=table, Key={"PK": {"S": key}}, ConsistentRead=True).get("Item") or {}
    )
    return found


def _number(item: dict[str, Any], name: str) -> int:
    return int(float(item.get(name, {}).get("N", "0")))


def read_direction_stats(
    source_dynamodb: Any, source_stats: str, target_dynamodb: Any, target_stats: str
) -> DirectionStats:
    applied = _item(target_dynamodb, target_stats, APPLIER_ITEM)
    sent = _item(source_dynamodb, source_stats, SENDER_ITEM)
    lag_ms = applied.get("last_lag_ms", {}).get("N")
    last_batch = applied.get("last_batch_at", {})
    return DirectionStats(
        replicated_count=_number(applied, "cnt"),
        sent_count=_number(sent, "cnt"),
        last_lag_seconds=float(lag_ms) / 1000 if lag_ms is not None else None,
        last_batch_at=last_batch.get("S") or last_batch.get("N"),
        applier={name: _number(applied, name) for name in APPLIER_COUNTERS},
        sender={name: _number(sent, name) for name in SENDER_COUNTERS},
    )
