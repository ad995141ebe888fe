"""AWS calls per health interval per pair, from the launchers' request logs. Pure: no I/O.

The operator's health pass runs once per pair per `healthCheckIntervalSeconds`; over a window of W
seconds every pair runs about W / interval passes. So the calls a region served in the window,
divided by the pairs and by W / interval, are the calls one pair costs per health interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


def api_name(entry: Mapping[str, Any]) -> str:
    return f"{entry['service']}:{entry['operation']}"


def count_since(entries: Iterable[Mapping[str, Any]], mark: int) -> Counter[str]:
    """`service:Operation` -> requests logged after sequence number `mark` (faults included)."""
    return Counter(api_name(e) for e in entries if int(e["seq"]) > mark)


def per_interval_per_pair(
    calls: Mapping[str, int], *, pairs: int, window_seconds: float, interval_seconds: float
) -> dict[str, float]:
    """Each API's calls over the window -> calls per health interval per pair (4 decimals)."""
    if pairs <= 0 or window_seconds <= 0 or interval_seconds <= 0:
        raise ValueError("pairs, window and interval must be positive")
    intervals = window_seconds / interval_seconds
    return {api: round(n / pairs / intervals, 4) for api, n in sorted(calls.items()) if n > 0}


def by_service(rates: Mapping[str, float]) -> dict[str, float]:
    """Sum of `service:Operation` rates per service."""
    totals: dict[str, float] = {}
    for api, rate in rates.items():
        service = api.split(":", 1)[0]
        totals[service] = totals.get(service, 0.0) + rate
    return {service: round(total, 4) for service, total in sorted(totals.items())}


def ready_series(samples: Iterable[tuple[float, int]], began: float) -> list[list[float]]:
    """(epoch, Ready count) samples -> [[seconds since `began`, count]] keeping only the changes
    (plus the last sample, so the series shows how long the final count held)."""
    series: list[list[float]] = []
    ordered = sorted(samples)
    for index, (at, count) in enumerate(ordered):
        last = index == len(ordered) - 1
        if not series or series[-1][1] != count or last:
            series.append([round(at - began, 1), count])
    return series


def time_to_count(series: Iterable[list[float]], target: int) -> float | None:
    """Seconds (from a `ready_series`) at which the count first reached `target`, or None."""
    return next((at for at, count in series if count >= target), None)


# Every reconcile (the operator's create/update pass and each health pass) calls STS GetCallerIdentity
# exactly once per region (ddbbridge.reconcile discovers both accounts first).
PASS_MARKER = "sts:GetCallerIdentity"


def pass_figures(
    calls_by_region: Mapping[str, Mapping[str, int]],
    *,
    pairs: int,
    window_seconds: float,
    interval_seconds: float,
) -> dict[str, float | None]:
    """How many health passes ran in the window (from the STS marker), the AWS calls one pass costs,
    and the passes per pair per interval actually achieved (1.0 when the operator keeps up)."""
    regions = len(calls_by_region) or 1
    passes = sum(calls.get(PASS_MARKER, 0) for calls in calls_by_region.values()) / regions
    total = sum(sum(calls.values()) for calls in calls_by_region.values())
    intervals = window_seconds / interval_seconds
    return {
        "passes": round(passes, 1),
        "calls_per_pass": round(total / passes, 1) if passes else None,
        "passes_per_pair_per_interval": round(passes / pairs / intervals, 3) if pairs and intervals else None,
    }
