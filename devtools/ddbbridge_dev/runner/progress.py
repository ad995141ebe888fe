"""Which sequence number of a shard may be checkpointed: the end of the contiguous run of finished
records. Lanes (ParallelizationFactor) finish out of order; a record counts as finished once its
function call succeeded or it was sent to the on-failure destination."""

from __future__ import annotations

import threading
from collections import deque


class ShardProgress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._order: deque[int] = deque()
        self._texts: dict[int, str] = {}
        self._finished: set[int] = set()
        self._checkpoint: str | None = None
        self._outstanding = 0

    def track(self, sequences: list[tuple[int, str]]) -> None:
        """Register records in stream order as they are read."""
        with self._lock:
            for number, text in sequences:
                self._order.append(number)
                self._texts[number] = text
            self._outstanding += len(sequences)

    def finish(self, sequences: list[int]) -> str | None:
        """Mark records finished; return the new checkpoint if it moved, else None."""
        with self._lock:
            self._finished.update(sequences)
            self._outstanding -= len(sequences)
            moved = None
            while self._order and self._order[0] in self._finished:
                number = self._order.popleft()
                self._finished.discard(number)
                moved = self._texts.pop(number)
            if moved is not None:
                self._checkpoint = moved
            return moved

    @property
    def outstanding(self) -> int:
        """Records read but not finished yet."""
        with self._lock:
            return self._outstanding

    @property
    def checkpoint(self) -> str | None:
        with self._lock:
            return self._checkpoint
