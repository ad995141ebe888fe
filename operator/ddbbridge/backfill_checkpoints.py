"""Backfill checkpoints kept in the SOURCE region's stats table, for the operator.

An operator pod has no disk that outlives it, and the CR status is the wrong place for a scan
position (every page would be a status write, and `kubectl` users may edit or drop status). The
pair's own stats table (`ddbbridge-P-X-stats`, hash key `PK`) already lives next to the table being
scanned, is reachable with the credentials the backfill uses anyway, and goes away with the pair.

Items, per run and direction (the run id changes when `spec.initialSync` is asked again):
  PK `backfill#<run>#<source>-to-<target>#plan`          -> the plan (tables, segment count)
  PK `backfill#<run>#<source>-to-<target>#segment#NNNN`  -> one SegmentCheckpoint, JSON
Other readers of the stats table read fixed keys (`replicated_count`, ...), never scan it, so these
items cannot be mistaken for counters.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ddbbridge.aws import RegionSession
from ddbbridge.backfill import BackfillError, CheckpointFactory, Direction, SegmentCheckpoint, plan_of
from ddbbridge.names import SideNames

PREFIX = "backfill"
ATTRIBUTE = "checkpoint"  # the JSON document


class StatsTableCheckpoints:
    """SegmentStore over items of the source side's stats table (consistent reads, plain puts: each
    segment has exactly one writer)."""

    def __init__(
        self, session: RegionSession, pair: str, run: str, direction: Direction, segments: int
    ) -> None:
        self.dynamodb = session.client("dynamodb")
        self.table = SideNames(pair, direction.source.name).stats_table
        self.segments = segments
        self.base = f"{PREFIX}#{run}#{direction.source.name}-to-{direction.target.name}"
        self.plan = plan_of(pair, direction, segments)

    def open(self, restart: bool) -> None:
        existing = self._get(f"{self.base}#plan")
        if restart:
            for segment in range(self.segments):
                self.dynamodb.delete_item(TableName=self.table, Key=_key(self._segment_key(segment)))
        elif existing is not None and existing != self.plan:
            raise BackfillError(
                f"checkpoint {self.base} in {self.table} was made for {existing}, not {self.plan}"
            )
        self._put(f"{self.base}#plan", self.plan)

    def load(self, segment: int) -> SegmentCheckpoint:
        document = self._get(self._segment_key(segment))
        return (
            SegmentCheckpoint(segment, self.segments) if document is None else SegmentCheckpoint(**document)
        )

    def save(self, checkpoint: SegmentCheckpoint) -> None:
        self._put(self._segment_key(checkpoint.segment), asdict(checkpoint))

    def _segment_key(self, segment: int) -> str:
        return f"{self.base}#segment#{segment:04d}"

    def _get(self, key: str) -> Any:
        item = self.dynamodb.get_item(TableName=self.table, Key=_key(key), ConsistentRead=True).get("Item")
        return None if not item else json.loads(item[ATTRIBUTE]["S"])

    def _put(self, key: str, document: Any) -> None:
        self.dynamodb.put_item(
            TableName=self.table,
            Item={**_key(key), ATTRIBUTE: {"S": json.dumps(document, sort_keys=True)}},
        )


def _key(value: str) -> dict[str, Any]:
    return {"PK": {"S": value}}


def stats_table_checkpoints(sessions: dict[str, RegionSession], pair: str, run: str) -> CheckpointFactory:
    """The `checkpoints=` argument of `backfill()`: each direction's store in its source's stats table."""

    def factory(direction: Direction, segments: int) -> StatsTableCheckpoints:
        return StatsTableCheckpoints(sessions[direction.source.name], pair, run, direction, segments)

    return factory
