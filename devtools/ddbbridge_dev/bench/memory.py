"""Resident memory of a process tree, sampled (psutil): the peak, and a coarse series for the report.

Children are included (a pod's memory limit counts every process in the container).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

MIB = 1024 * 1024


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and all its descendants (0 when it is gone)."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


@dataclass
class RssSampler:
    pid: int
    interval: float = 0.25
    series_every: float = 5.0  # seconds between points kept for the series
    peak: int = 0
    series: list[list[float]] = field(default_factory=list)  # [seconds since start, MiB]
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _began: float = 0.0

    def start(self) -> None:
        self._began = time.time()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        kept = -self.series_every
        while not self._stop.is_set():
            rss = tree_rss(self.pid)
            self.peak = max(self.peak, rss)
            now = time.time() - self._began
            if now - kept >= self.series_every:
                kept = now
                self.series.append([round(now, 1), round(rss / MIB, 1)])
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mib(self) -> float:
        return round(self.peak / MIB, 1)
