"""`ddbbridge dev up|env|status|wan|down` as a user runs them: real processes in a private dev dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbbridge_dev import processes
from tests.fixtures.waiting import scaled, wait_for

pytestmark = pytest.mark.integration


def _dev(dev_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DDBBRIDGE_DEV_DIR": str(dev_dir)}
    command = [sys.executable, "-m", "ddbbridge.cli", "dev", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=scaled(240), check=False)


def _state(dev_dir: Path) -> dict[str, Any]:
    path = dev_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_ddbbridge/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture
def dev_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Whatever the test left running is stopped by pid (the records say exactly which processes are ours).
    for record in _state(tmp_path).get("processes", {}).get("records", []):
        processes.stop(record)


def test_dev_lifecycle_up_twice_status_wan_kill_and_down(dev_dir: Path) -> None:
    started = _dev(dev_dir, "up", "--detach", "--regions", "cn-north-1,ap-southeast-1", "--rtt-ms", "40")
    assert started.returncode == 0, started.stderr
    assert "dev environment up in" in started.stdout

    again = _dev(dev_dir, "up", "--detach")
    assert again.returncode == 0
    assert "already up" in again.stdout

    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in _dev(dev_dir, "env").stdout.splitlines()
    )
    assert exports["AWS_ACCESS_KEY_ID"] == "testing"
    assert exports["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert exports["AWS_DEFAULT_REGION"] == "cn-north-1"
    assert exports["DDBBRIDGE_DEV_DIR"] == str(dev_dir)
    local = dict(part.split("=", 1) for part in exports["DDBBRIDGE_ENDPOINTS"].split(","))
    remote = dict(part.split("=", 1) for part in exports["DDBBRIDGE_PEER_ENDPOINTS"].split(","))
    assert list(local) == ["cn-north-1", "ap-southeast-1"]
    assert set(remote) == set(local)
    assert all(remote[region] != local[region] for region in local)  # through the proxy
    assert all(_answers(url) for url in (*local.values(), *remote.values()))

    assert _dev(dev_dir, "status").returncode == 0

    assert _dev(dev_dir, "wan", "cut").returncode == 0
    assert not _answers(remote["cn-north-1"])
    assert _answers(local["cn-north-1"])
    assert _dev(dev_dir, "wan", "restore").returncode == 0
    wait_for(lambda: _answers(remote["cn-north-1"]), 10, "the restored WAN link")

    records = _state(dev_dir)["processes"]["records"]
    ours = {(r["component"], r["name"]) for r in records}  # later components (runner, ...) may add more
    assert {("proxy", "wan"), ("regions", "ap-southeast-1"), ("regions", "cn-north-1")} <= ours
    victim = next(r for r in records if r["name"] == "ap-southeast-1")
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: not processes.is_running(victim), 10, "the killed region server to be gone")
    status = _dev(dev_dir, "status")
    assert status.returncode == 1
    assert "DOWN regions/ap-southeast-1" in status.stdout
    assert "ok   regions/cn-north-1" in status.stdout

    stopped = _dev(dev_dir, "down")
    assert stopped.returncode == 0
    assert "regions/cn-north-1" in stopped.stdout and "stopped" in stopped.stdout
    assert "regions/ap-southeast-1" in stopped.stdout and "not running" in stopped.stdout
    wait_for(
        lambda: not any(processes.pid_alive(r["pid"]) for r in records), 30, "every process of ours to exit"
    )
    assert _state(dev_dir) == {}
    assert _dev(dev_dir, "status").returncode == 1  # nothing is up
