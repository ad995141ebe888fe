"""Runner settings: Lambda's polling rates by default, a fast profile for tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ddbbridge_dev.runner.checkpoints import write_json_atomically
from ddbbridge_dev.state import dev_dir, read_section


@dataclass(frozen=True)
class RunnerOptions:
    endpoints: dict[str, str] | None = None  # region -> endpoint; None: the dev state's regions
    fast: bool = False
    dynamodb_poll: float = 0.25  # Lambda polls DynamoDB stream shards 4 times a second
    kinesis_poll: float = 1.0  # and Kinesis shards once a second
    idle_poll_ceiling: float = 1.0  # lazy backoff on empty shards stops here
    idle_polls_per_second: float = 40.0  # all idle shards together (poll_budget.py)
    relist_interval: float = 10.0  # ListEventSourceMappings + ListFunctions per region
    shard_refresh: float = 30.0  # shard listing per mapping
    retry_base: float = 0.5
    retry_ceiling: float = 10.0
    max_workers: int = 32
    idle_worker_ttl: float = 300.0
    clock_skew: dict[str, float] = field(default_factory=dict)  # region -> seconds (fault tests)
    home: Path | None = None  # defaults to <dev dir>/runner

    @classmethod
    def create(
        cls,
        *,
        fast: bool = False,
        endpoints: dict[str, str] | None = None,
        clock_skew: dict[str, float] | None = None,
        home: Path | None = None,
    ) -> RunnerOptions:
        if not fast:
            return cls(endpoints=endpoints, clock_skew=dict(clock_skew or {}), home=home)
        return cls(
            endpoints=endpoints,
            fast=True,
            dynamodb_poll=0.05,
            kinesis_poll=0.05,
            idle_poll_ceiling=0.2,
            idle_polls_per_second=200.0,
            relist_interval=0.5,
            shard_refresh=2.0,
            retry_base=0.05,
            retry_ceiling=0.5,
            idle_worker_ttl=60.0,
            clock_skew=dict(clock_skew or {}),
            home=home,
        )

    @property
    def runner_home(self) -> Path:
        return self.home if self.home is not None else dev_dir() / "runner"


def endpoints_from_state() -> dict[str, str]:
    """Each emulated region's local endpoint from the dev state's `regions` section."""
    section = read_section("regions") or {}
    endpoints: dict[str, str] = {}
    for region, entry in section.items():
        if not isinstance(entry, dict):
            continue
        local = entry.get("local")
        if isinstance(local, str) and local:
            endpoints[region] = local
        elif isinstance(local, dict) and local.get("endpoint"):
            endpoints[region] = str(local["endpoint"])
        elif entry.get("port"):
            endpoints[region] = f"http://127.0.0.1:{entry['port']}"
    return endpoints


def faults_path(home: Path) -> Path:
    return home / "faults.json"


def set_clock_skew(region: str, seconds: float, home: Path | None = None) -> None:
    """Fault injection (dev only): skew time.time() inside workers of `region` by `seconds`.

    A running runner picks it up at its next relist; 0 removes the skew.
    """
    folder = home if home is not None else dev_dir() / "runner"
    path = faults_path(folder)
    document = read_faults(folder)
    skew = dict(document.get("clock_skew", {}))
    if seconds:
        skew[region] = float(seconds)
    else:
        skew.pop(region, None)
    document["clock_skew"] = skew
    write_json_atomically(path, document)


def read_faults(home: Path) -> dict[str, dict[str, float]]:
    try:
        document = json.loads(faults_path(home).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}
