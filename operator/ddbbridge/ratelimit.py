"""A token bucket shared by the load generator's worker threads: at most `rate` operations a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        # A small burst keeps the pace even: at most ~50 ms of work may be bunched up.
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self._tokens = self.burst
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self, n: float = 1.0) -> None:
        """Block until `n` tokens are available, then take them."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                # The epsilon absorbs float rounding, which could otherwise leave a token
                # forever a hair short and spin on sleeps too short to move the clock.
                if self._tokens >= n - 1e-9:
                    self._tokens = max(0.0, self._tokens - n)
                    return
                wait = (n - self._tokens) / self.rate
            self._sleep(wait)
