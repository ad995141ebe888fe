"""Sample the runner and every handler worker with py-spy while a phase runs (wall clock, idle
included: a handler waiting on the emulator is what makes lag), then summarise where time goes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROLES = (("ddbbridge_lambdas/sender.py", "sender"), ("ddbbridge_lambdas/applier.py", "applier"))


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        binary = py_spy()
        if binary is None:
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--subprocesses", "--idle", "--rate", "50",
             "--format", "raw", "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=open(output.with_suffix(".log"), "wb"),  # noqa: SIM115  (closed with the process)
        )  # fmt: skip

    def stop(self) -> dict[str, Any] | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        self.process.wait(timeout=60)
        if not self.output.exists():
            return None
        return summarise(self.output.read_text(encoding="utf-8", errors="replace").splitlines())


def _role(frames: list[str]) -> str:
    for marker, role in ROLES:
        if any(marker in frame for frame in frames):
            return role
    return "runner" if any("ddbbridge_dev/runner" in frame for frame in frames) else "other"


def summarise(lines: list[str], top: int = 12) -> dict[str, Any]:
    """Collapsed stacks ("frame;frame;... count") -> per role: samples, and the functions of ours
    and the leaf frames that hold the most samples (inclusive for ours, self for leaves)."""
    samples: Counter[str] = Counter()
    ours: dict[str, Counter[str]] = {}
    leaves: dict[str, Counter[str]] = {}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        role = _role(frames)
        samples[role] += count
        mine = {f for f in frames if "ddbbridge_lambdas/" in f or "ddbbridge_dev/runner" in f}
        for frame in mine:
            ours.setdefault(role, Counter())[frame] += count
        leaves.setdefault(role, Counter())[frames[-1]] += count
    return {
        role: {
            "samples": samples[role],
            "ours_inclusive": [
                [frame, round(n / samples[role], 3)]
                for frame, n in ours.get(role, Counter()).most_common(top)
            ],
            "leaves": [
                [frame, round(n / samples[role], 3)]
                for frame, n in leaves.get(role, Counter()).most_common(top)
            ],
        }
        for role in sorted(samples)
        if role in ("sender", "applier", "runner")
    }
