"""CPU seconds of the runner, of each handler's worker processes, and of the emulators (psutil).

A sampler thread reads every process's cumulative CPU time once a second, so a worker that exits
during a phase (timeout, crash) still counts up to its last sample.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import psutil

from ddbbridge_dev import state


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _label(process: psutil.Process) -> str:
    try:
        return "worker:" + process.environ().get("AWS_LAMBDA_FUNCTION_NAME", "unknown")
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return "worker:unknown"


def watched_processes() -> dict[int, str]:
    """pid -> label: the runner, its workers (by function name), each region, the WAN proxy."""
    found: dict[int, str] = {}
    runner = (state.read_section("runner") or {}).get("pid")
    if isinstance(runner, int) and psutil.pid_exists(runner):
        found[runner] = "runner"
        for child in psutil.Process(runner).children(recursive=True):
            found[child.pid] = _label(child)
    for region, entry in (state.read_section("regions") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("pid"), int):
            found[entry["pid"]] = f"emulator:{region}"
    proxy = (state.read_section("proxy") or {}).get("pid")
    if isinstance(proxy, int):
        found[proxy] = "proxy"
    return found


@dataclass
class CpuSampler:
    interval: float = 1.0
    _start: dict[int, float] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    _labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        for pid, label in watched_processes().items():
            try:
                value = _cpu(psutil.Process(pid))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if pid not in self._labels:
                self._labels[pid] = label
                # A worker born during the phase started from zero.
                self._start[pid] = value if self._thread is None else 0.0
            self._last[pid] = value

    def start(self) -> None:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="bench-cpu", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, float]:
        """CPU seconds used since start, per label (workers of one function summed)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        used: dict[str, float] = defaultdict(float)
        for pid, label in self._labels.items():
            used[label] += max(0.0, self._last.get(pid, 0.0) - self._start.get(pid, 0.0))
        return {label: round(seconds, 2) for label, seconds in sorted(used.items())}
