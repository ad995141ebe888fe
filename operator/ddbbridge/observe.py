"""Health of a pair, per direction: replicated count, last lag, dead letters, mapping states.

Read-only. Direction X -> Y is the sender in X feeding the applier in Y: its counts come from Y's
stats table (written by Y's applier, once per batch); its on-failure depth is X's sender-failures
queue plus Y's applier-failures queue (Lambda's metadata-only destinations); its dead-letter depth is
Y's dead-letters queue (payloads that could never be applied in Y). Each queue is counted in exactly
one direction so the pair's total is their plain sum. A region has one dead-letters queue (contract),
so the rare dead letter a SENDER writes in X (a change that can never be sent) counts under the
direction INTO X. Field names match `DirectionStatus` in the status model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ddbbridge.ensure.context import EnsureContext
from ddbbridge.ensure.event_source_mappings import list_mappings
from ddbbridge.ensure.sqs import queue_depth
from ddbbridge.errors import ErrorReport, report
from ddbbridge.names import SideNames
from ddbbridge.reconcile import PairClients
from ddbbridge.spec import PairManifest
from ddbbridge.stats_reader import DirectionStats, read_direction_stats


@dataclass
class DirectionHealth:
    source: str
    target: str
    replicated_count: int | None = None
    lag_seconds: float | None = None
    on_failure_depth: int | None = None
    dead_letter_depth: int | None = None
    dlq_depth: int | None = None
    sender_mapping_state: str | None = None
    applier_mapping_state: str | None = None
    last_processing_result: str | None = None
    stats: DirectionStats | None = None


@dataclass
class PairHealth:
    pair: str
    directions: list[DirectionHealth] = field(default_factory=list)
    errors: list[ErrorReport] = field(default_factory=list)

    @property
    def dlq_depth(self) -> int | None:
        depths = [d.dlq_depth for d in self.directions]
        return None if any(d is None for d in depths) else sum(d or 0 for d in depths)

    @property
    def lag_seconds(self) -> float | None:
        lags = [d.lag_seconds for d in self.directions if d.lag_seconds is not None]
        return max(lags) if lags else None

    def to_json(self) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "directions": [asdict(direction) for direction in self.directions],
            "dlqDepth": self.dlq_depth,
            "lagSeconds": self.lag_seconds,
            "errors": [asdict(error) for error in self.errors],
        }


def _mapping_state(ctx: EnsureContext, function: str) -> tuple[str, str | None]:
    mappings = list_mappings(ctx, function)
    if not mappings:
        return "missing", None
    first = mappings[0]
    return str(first.get("State")), first.get("LastProcessingResult")


def _sum(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v or 0 for v in values)


def observe_pair(manifest: PairManifest, clients: PairClients) -> PairHealth:
    spec = manifest.spec
    pair = manifest.metadata.name
    health = PairHealth(pair)
    contexts = {side.name: EnsureContext(clients.sessions[side.name], side.name) for side in spec.regions}
    for source in spec.regions:
        target = spec.peer_of(source)
        src, dst = SideNames(pair, source.name), SideNames(pair, target.name)
        direction = DirectionHealth(source.name, target.name)
        health.directions.append(direction)
        src_ctx, dst_ctx = contexts[source.name], contexts[target.name]
        step = "stats"
        try:
            direction.stats = read_direction_stats(
                src_ctx.client("dynamodb"), src.stats_table, dst_ctx.client("dynamodb"), dst.stats_table
            )
            direction.replicated_count = direction.stats.replicated_count
            direction.lag_seconds = direction.stats.last_lag_seconds
            step = "queues"
            direction.on_failure_depth = _sum(
                queue_depth(src_ctx, src.sender_failures_queue),
                queue_depth(dst_ctx, dst.applier_failures_queue),
            )
            direction.dead_letter_depth = queue_depth(dst_ctx, dst.dead_letter_queue)
            direction.dlq_depth = _sum(direction.on_failure_depth, direction.dead_letter_depth)
            step = "mappings"
            direction.sender_mapping_state, _ = _mapping_state(src_ctx, src.sender_function)
            direction.applier_mapping_state, direction.last_processing_result = _mapping_state(
                dst_ctx, dst.applier_function
            )
        except Exception as error:  # report what could not be read, keep the rest
            health.errors.append(report(f"{source.name}->{target.name}", step, error))
    return health


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render_status(health: PairHealth) -> str:
    header = ("DIRECTION", "REPLICATED", "LAG(s)", "ON-FAILURE", "DEAD-LETTERS", "DLQ", "SENDER", "APPLIER")
    rows = [header]
    for d in health.directions:
        rows.append(
            (
                f"{d.source}->{d.target}",
                _show(d.replicated_count),
                _show(d.lag_seconds),
                _show(d.on_failure_depth),
                _show(d.dead_letter_depth),
                _show(d.dlq_depth),
                _show(d.sender_mapping_state),
                _show(d.applier_mapping_state),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"pair {health.pair}"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines += [f"error: {error}" for error in health.errors]
    return "\n".join(lines)
