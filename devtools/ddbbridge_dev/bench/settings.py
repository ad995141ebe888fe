"""What one bench run does. Defaults keep a full `make bench` under about ten minutes here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The naive baseline's deployment, pinned (NOTES section 8): Lambda's defaults for a stream
# trigger, with the same batch size as our sender and one concurrent batch per shard.
NAIVE_PARAMETERS: dict[str, Any] = {
    "BatchSize": 500,
    "ParallelizationFactor": 1,
    "MaximumBatchingWindowInSeconds": 0,
    "MaximumRetryAttempts": 10,
    "BisectBatchOnFunctionError": True,
    "StartingPosition": "TRIM_HORIZON",
    "Timeout": 60,
    "MemorySize": 256,
    "Runtime": "python3.12",
    "Handler": "naive_sender.handler",
    "WriteCondition": "attribute_not_exists(key) OR ts < :ts (the seed's)",
}


@dataclass(frozen=True)
class BenchSettings:
    rtt_ms: float = 150.0
    regions: tuple[str, str] = ("cn-north-1", "ap-southeast-1")
    # Offered load per region as a share of the emulator's measured PutItem ceiling (both regions
    # load at once, so each emulator serves its own load plus the peer's replicated changes).
    load_share: float = 0.3
    load_seconds: float = 30.0  # phases (a) and (c)
    naive_writes: int = 200  # per region; the naive design drains ~1/RTT items/s per shard
    conflict_ratio: float = 0.2  # phase (c): share of writes to keys both regions write
    conflict_keys: int = 200
    loader_workers: int = 8
    drain_timeout: float = 120.0  # ours
    naive_drain_timeout: float = 180.0
    ceiling_seconds: float = 5.0
    ceiling_threads: int = 8
    seed: int = 7
    phases: tuple[str, ...] = ("ours", "naive", "conflicts")
    profile: bool = False  # py-spy the handler workers and the runner during phase (a)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["naive_parameters"] = NAIVE_PARAMETERS
        return document
