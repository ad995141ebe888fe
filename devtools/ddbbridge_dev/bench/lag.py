"""Per-item apply lag from the two tables' streams, and the figures derived from it (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ddbbridge_dev.bench.streams import StreamChange


@dataclass(frozen=True)
class LagSample:
    written_at: float  # the version's stream record in the source table
    applied_at: float  # the same version's stream record in the target table

    @property
    def lag(self) -> float:
        return self.applied_at - self.written_at


@dataclass(frozen=True)
class Matched:
    samples: list[LagSample]
    source_versions: int  # puts/updates the application made in the source (matchable)
    unmatched: int  # source versions never seen in the target (lost a conflict, or overwritten)


def match_versions(source: Sequence[StreamChange], target: Sequence[StreamChange], origin: str) -> Matched:
    """Pair each version the application wrote in the source (key, stamp, origin) with the first
    target record holding that same version. Deletes carry no version of their own: not sampled."""
    applied: dict[tuple[str, Decimal], float] = {}
    for change in target:
        if change.event != "REMOVE" and change.origin == origin and change.stamp is not None:
            applied.setdefault((change.key, change.stamp), change.at)
    samples: list[LagSample] = []
    versions = 0
    seen: set[tuple[str, Decimal]] = set()
    for change in source:
        if change.event == "REMOVE" or change.origin != origin or change.stamp is None:
            continue
        version = (change.key, change.stamp)
        if version in seen:
            continue
        seen.add(version)
        versions += 1
        if version in applied:
            samples.append(LagSample(change.at, applied[version]))
    return Matched(samples, versions, versions - len(samples))


def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def lag_summary(samples: Sequence[LagSample]) -> dict[str, float | None]:
    lags = [sample.lag for sample in samples]
    return {
        "p50": percentile(lags, 0.50),
        "p95": percentile(lags, 0.95),
        "p99": percentile(lags, 0.99),
        "max": max(lags) if lags else None,
    }


def throughput(samples: Sequence[LagSample]) -> float | None:
    """Versions delivered per second, from the first source write to the last apply."""
    if len(samples) < 2:
        return None
    span = max(s.applied_at for s in samples) - min(s.written_at for s in samples)
    return len(samples) / span if span > 0 else None


def timeline(
    samples: Iterable[LagSample], origin_time: float, bucket: float = 1.0
) -> list[dict[str, float | int | None]]:
    """Per bucket (seconds since origin_time): applies in the bucket, and the max and p50 lag of
    the versions applied in it."""
    buckets: dict[int, list[float]] = {}
    for sample in samples:
        buckets.setdefault(int((sample.applied_at - origin_time) // bucket), []).append(sample.lag)
    if not buckets:
        return []
    rows: list[dict[str, float | int | None]] = []
    for index in range(min(buckets), max(buckets) + 1):
        lags = buckets.get(index, [])
        rows.append(
            {
                "t": round(index * bucket, 3),
                "applied_per_s": len(lags) / bucket,
                "lag_p50": percentile(lags, 0.5),
                "lag_max": max(lags) if lags else None,
            }
        )
    return rows
