"""Per-batch counters in `ddbbridge-P-X-stats`: ONE UpdateItem per batch per handler.

Items: `replicated_count` (applier; `cnt` = items applied into this region, plus received, applied,
discarded_older, coalesced, dead_lettered, last_lag_ms, last_batch_at, source) and `sent_count`
(sender; `cnt` = records sent to the peer, plus received, sent, loops_dropped, restamped,
tombstones, skipped, dead_lettered, last_batch_at). For the applier, per batch:
received = applied + discarded_older + coalesced + dead_lettered.
"""

from __future__ import annotations

import logging
from typing import Any

APPLIER_ITEM = "replicated_count"
SENDER_ITEM = "sent_count"

log = logging.getLogger(__name__)


def record_batch(
    client: Any, table_name: str, item: str, counters: dict[str, int], fields: dict[str, Any]
) -> None:
    adds, sets = [], []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for i, (name, amount) in enumerate(sorted(counters.items())):
        names[f"#a{i}"] = name
        values[f":a{i}"] = {"N": str(int(amount))}
        adds.append(f"#a{i} :a{i}")
    for i, (name, value) in enumerate(sorted(fields.items())):
        names[f"#s{i}"] = name
        values[f":s{i}"] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
        sets.append(f"#s{i} = :s{i}")
    expression = " ".join(
        part
        for part in ("ADD " + ", ".join(adds) if adds else "", "SET " + ", ".join(sets) if sets else "")
        if part
    )
    client.update_item(
        TableName=table_name,
        Key={"PK": {"S": item}},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
