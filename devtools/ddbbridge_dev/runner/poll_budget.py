"""A runner-wide cap on how often idle shards are polled.

Each shard backs off to `idle_poll_ceiling` when it is empty (Lambda's own rate, about 1 s). With
hundreds of mappings (the operator-scale run: 100 pairs = 400 shards) that alone would send the
emulators hundreds of GetRecords a second and starve the calls being measured. Idle shards share
this budget instead: their ceiling stretches to live shards / budget, so a few shards keep Lambda's
rate and many shards cost the emulators a bounded number of idle polls. Shards with records are
never slowed (the budget only applies after the backoff has started).
"""

from __future__ import annotations

import threading


class IdlePollBudget:
    def __init__(self, polls_per_second: float) -> None:
        if polls_per_second <= 0:
            raise ValueError("the idle poll budget must be > 0 polls per second")
        self.polls_per_second = polls_per_second
        self._lock = threading.Lock()
        self._shards = 0

    def join(self) -> None:
        with self._lock:
            self._shards += 1

    def leave(self) -> None:
        with self._lock:
            self._shards = max(0, self._shards - 1)

    @property
    def shards(self) -> int:
        with self._lock:
            return self._shards

    def ceiling(self, own_ceiling: float) -> float:
        """The idle interval cap of one shard: its own, or longer when many shards share the budget."""
        return max(own_ceiling, self.shards / self.polls_per_second)
