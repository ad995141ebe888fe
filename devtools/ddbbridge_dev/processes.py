"""Background processes the dev environment starts, recorded so that exactly those can be stopped.

Every process is started in its own session (Ctrl-C in a terminal never reaches it directly) with its
output in a log file. A record keeps pid, command line and start time: a pid is only acted on while
it still belongs to the same process (pids are reused), so `dev down` never kills a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import psutil


class ProcessRecord(TypedDict):
    component: str  # state section that owns it: regions, proxy, runner, kube
    name: str  # e.g. the region
    pid: int
    argv: list[str]
    log: str
    create_time: float


def python_module_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def spawn(
    component: str,
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    try:
        create_time = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0
    # Kept so a long-lived starter (foreground `dev up`, a test session) can reap a child that died;
    # a detached `dev up` just exits and the child lives on.
    _CHILDREN[child.pid] = child
    return {
        "component": component,
        "name": name,
        "pid": child.pid,
        "argv": list(argv),
        "log": str(log),
        "create_time": create_time,
    }


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def reap() -> None:
    """Collect exit statuses of children that ended (only matters while the starting process lives)."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _process(record: Mapping[str, Any]) -> psutil.Process | None:
    """The live process behind a record, or None when it ended or the pid now belongs to another."""
    reap()
    try:
        process = psutil.Process(int(record["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if abs(process.create_time() - float(record.get("create_time", 0.0))) > 0.5:
            return None
        cmdline, argv = process.cmdline(), list(record["argv"])
        # A script started by path runs as `<interpreter> <script> ...` (its shebang line).
        if cmdline != argv and cmdline[1:] != argv:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return None
    return process


def is_running(record: Mapping[str, Any]) -> bool:
    return _process(record) is not None


def stop(record: Mapping[str, Any], timeout: float = 10.0) -> str:
    """Stop the recorded process (TERM, then KILL after `timeout`); returns what happened."""
    process = _process(record)
    label = f"{record.get('component')}/{record.get('name')} (pid {record.get('pid')})"
    if process is None:
        return f"{label}: not running"
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        outcome = "stopped"
    except psutil.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
            process.wait(5)
        outcome = "killed after TERM timeout"
    reap()
    return f"{label}: {outcome}"


def wait_for_file(path: Path, record: Mapping[str, Any], deadline: float) -> str:
    """Wait until the child wrote `path` (its ready file); fail early if the child died."""
    limit = time.monotonic() + deadline
    while time.monotonic() < limit:
        if path.exists():
            return path.read_text(encoding="utf-8")
        if not is_running(record):
            raise RuntimeError(
                f"{record['component']}/{record['name']} exited during start; see {record['log']}"
            )
        time.sleep(0.05)
    raise TimeoutError(
        f"{record['component']}/{record['name']} not ready after {deadline:.0f}s; see {record['log']}"
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
