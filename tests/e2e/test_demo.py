"""`make demo`'s whole flow at a small size: its own control plane, emulated regions at 150 ms RTT, runner
and operator; samples/pair.yaml applied with kubectl; a conflicting load; `verify --wait`; the summary
says EQUAL; and nothing the demo started outlives it (found by scanning every process for the demo's
dev dir in its command line or environment, a scan shown to find them while the demo runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ddbbridge_dev import state
from tests.fixtures.waiting import scaled

pytestmark = pytest.mark.e2e

# Every process the demo starts: two regions, the WAN proxy, the runner, kube-apiserver, the operator.
STARTED = 6


def processes_of(dev_dir: Path) -> list[psutil.Process]:
    """Live processes that name the dev dir in their command line or environment."""
    marker = str(dev_dir)
    found: list[psutil.Process] = []
    for process in psutil.process_iter():
        try:
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            texts = [*process.cmdline(), *process.environ().values()]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if any(marker in text for text in texts):
            found.append(process)
    return found


def test_demo_ends_with_verify_equal_and_leaves_no_process(tmp_path: Path) -> None:
    dev_dir = tmp_path / "demo"
    environment = {k: v for k, v in os.environ.items() if k not in ("DDBBRIDGE_DEV_DIR", "KUBECONFIG")}
    argv = [
        sys.executable, "-m", "ddbbridge_dev.demo", "--dev-dir", str(dev_dir),
        "--count", "150", "--rate", "0", "--rtt-ms", "150", "--wait", str(int(scaled(300))),
    ]  # fmt: skip
    output: list[str] = []
    seen_running: list[psutil.Process] = []
    with subprocess.Popen(
        argv,
        cwd=state.project_root(),
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as demo:
        try:
            assert demo.stdout is not None
            for line in demo.stdout:
                output.append(line)
                if line.startswith("[3/") and not seen_running:
                    seen_running = processes_of(dev_dir)  # everything is up by the third step
            demo.wait(timeout=scaled(900))
        finally:
            if demo.poll() is None:
                demo.terminate()
                demo.wait(timeout=scaled(120))
    text = "".join(output)
    assert demo.returncode == 0, text
    summary = text.split("=== summary", 1)[1]
    assert "verify: EQUAL" in summary, text
    assert "Ready=True" in summary, text
    assert "loaded into cn: 150 writes" in summary and "loaded into sg: 150 writes" in summary, summary
    assert f"{STARTED} processes stopped" in text, text
    assert len(seen_running) >= STARTED, [p.cmdline() for p in seen_running]
    survivors = processes_of(dev_dir)
    assert not survivors, [(p.pid, p.cmdline()) for p in survivors]
