"""What the emulators served and what the runner invoked during a phase."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddbbridge_dev.environment import http_json


def request_mark(endpoint: str) -> int:
    entries = http_json(f"{endpoint}/_ddbbridge/requests?since=0", timeout=60.0)
    return max((int(e["seq"]) for e in entries), default=0)


def requests_since(endpoint: str, mark: int) -> list[dict[str, Any]]:
    """The launcher's log entries for what the region served after `mark` (retries and faults too)."""
    entries = http_json(f"{endpoint}/_ddbbridge/requests?since={mark}", timeout=60.0)
    return [e for e in entries if int(e["seq"]) > mark]


def by_api(entries: list[dict[str, Any]]) -> Counter[str]:
    """`service:Operation` -> how many of `entries` called it."""
    return Counter(f"{e['service']}:{e['operation']}" for e in entries)


def by_table(entries: list[dict[str, Any]]) -> Counter[str]:
    """`Operation table` -> single-item DynamoDB calls per table (the log names their table)."""
    return Counter(f"{e['operation']} {e['table']}" for e in entries if e.get("table"))


@dataclass(frozen=True)
class Invocations:
    count: int
    records: int
    errors: int
    seconds: float  # summed invocation durations

    def to_json(self) -> dict[str, Any]:
        return {
            "invocations": self.count,
            "records": self.records,
            "errors": self.errors,
            "mean_batch": round(self.records / self.count, 1) if self.count else None,
            "mean_duration_s": round(self.seconds / self.count, 3) if self.count else None,
        }


def log_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def invocations_since(path: Path, offset: int) -> dict[str, Invocations]:
    """Per function: the runner's `invocation` log lines written after `offset`."""
    tally: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    with path.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") != "invocation":
                continue
            entry = tally[str(line.get("function"))]
            entry[0] += 1
            entry[1] += int(line.get("records", 0))
            entry[2] += 0 if line.get("outcome") == "ok" else 1
            entry[3] += float(line.get("duration_ms", 0.0)) / 1000.0
    return {
        name: Invocations(int(v[0]), int(v[1]), int(v[2]), float(v[3])) for name, v in sorted(tally.items())
    }
