"""Profile the data-plane handlers under load: `replication_run` with the runner's workers sampled.

    python -m ddbbridge_dev.bench.handler_profile --items-per-region 2000 [--rtt-ms 0] [--out DIR]

While `ddbbridge_dev.replication_run` loads both regions and waits for convergence, py-spy records
the runner and every worker it spawns (`--subprocesses`, on-CPU samples only: what costs CPU, not
what waits on the emulator), and psutil reads each process's CPU seconds (workers by function
name). The workers run isolated (`python -I -S`, no site-packages), so an in-process profiler cannot
be imported there; py-spy attaches from outside and needs no change to the runner.

Output: a JSON document (CPU seconds per 1,000 records per handler, the top frames of ours and the
top leaf frames per role) and the raw collapsed stacks, under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ddbbridge_dev import environment, replication_run, state
from ddbbridge_dev.bench import profile
from ddbbridge_dev.bench.cpu import CpuSampler
from ddbbridge_dev.bench.machine import machine_info


def _runner_pid(deadline: float, finished: threading.Event) -> int | None:
    while time.monotonic() < deadline and not finished.is_set():
        section = state.read_section("runner") or {}
        if isinstance(section.get("pid"), int):
            return int(section["pid"])
        time.sleep(0.2)
    return None


def per_thousand(cpu: dict[str, float], records: dict[str, int]) -> dict[str, float | None]:
    """CPU seconds of each role (sender / applier workers summed) per 1,000 records it handled."""
    used: dict[str, float] = {"sender": 0.0, "applier": 0.0}
    for label, seconds in cpu.items():
        for role in used:
            if label.startswith("worker:") and label.endswith(f"-{role}"):
                used[role] += seconds
    return {role: round(1000 * used[role] / records[role], 3) if records.get(role) else None for role in used}


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"machine": machine_info(), "settings": vars(args).copy()}
    document["settings"]["out"] = str(out)
    with tempfile.TemporaryDirectory(prefix="ddbbridge-profile-") as scratch:
        folder = Path(scratch)
        os.environ["DDBBRIDGE_DEV_DIR"] = str(folder / "dev")
        result: dict[str, Any] = {}
        failure: list[BaseException] = []
        finished = threading.Event()

        def measure() -> None:
            try:
                result.update(replication_run.measure(args, folder))
            except BaseException as error:  # reported below, after the environment is down
                failure.append(error)
            finally:
                finished.set()

        worker = threading.Thread(target=measure, name="replication-run", daemon=True)
        worker.start()
        try:
            runner = _runner_pid(time.monotonic() + 600, finished)
            spy = OnCpuSpy(runner, out / "handlers.txt")
            sampler = CpuSampler()
            if runner is not None:
                sampler.start()
            finished.wait()
            cpu = sampler.stop() if runner is not None else {}
            summary = spy.stop()
        finally:
            worker.join(timeout=60)
            environment.down()
    if failure:
        raise failure[0]
    directions = {d["direction"]: d for d in result.get("directions", [])}
    received = sum(int(d.get("records_received") or 0) for d in directions.values())
    document |= {
        "replication_run": result,
        "cpu_s": cpu,
        # Every record is sent once by a sender and received once by an applier.
        "cpu_s_per_1000_records": per_thousand(cpu, {"sender": received, "applier": received}),
        "profile": summary,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    return document


class OnCpuSpy:
    """py-spy on the runner and its workers, without `--idle`: only threads that use the CPU."""

    def __init__(self, pid: int | None, output: Path) -> None:
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None
        binary = profile.py_spy()
        if pid is None or binary is None:
            return
        output.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--subprocesses", "--rate", "100", "--format", "raw",
             "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=open(output.with_suffix(".log"), "wb"),  # noqa: SIM115  (closed with the process)
        )  # fmt: skip

    def stop(self) -> dict[str, Any] | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        self.process.wait(timeout=120)
        if not self.output.exists():
            return None
        return profile.summarise(self.output.read_text(encoding="utf-8", errors="replace").splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddbbridge_dev.bench.handler_profile", description=__doc__
    )
    parser.add_argument("--items-per-region", type=int, default=2000)
    parser.add_argument("--shared-keys", type=float, default=0.1)
    parser.add_argument("--rtt-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=8, help="loader threads per region")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    parser.add_argument("--out", default="bench-results/profile")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    document = run(args, out)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = out / f"handlers-{stamp}.json"
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: document[k] for k in ("cpu_s", "cpu_s_per_1000_records")}, indent=1))
    for role, found in (document.get("profile") or {}).items():
        print(f"--- {role}: {found['samples']} samples")
        for frame, share in found["ours_inclusive"][:8]:
            print(f"  {share:6.3f} {frame}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
