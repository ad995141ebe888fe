"""Running the runner in the foreground: `ddbbridge dev runner` and `python -m ddbbridge_dev.runner`.

`dev up` starts the same entry point in the background (`environment.start_runner`), records its pid
in the dev state's `runner` section, and `dev down` stops exactly that pid (SIGTERM: the runner
finishes in-flight invocations and kills its workers; workers also die with it on SIGKILL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ddbbridge_dev.runner.loop import Runner
from ddbbridge_dev.runner.options import RunnerOptions
from ddbbridge_dev.state import read_section, write_section

SECTION = "runner"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line; structured messages (already JSON) get ts and level prepended."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage()
        if record.exc_info:
            message = json.dumps({"message": message, "traceback": self.formatException(record.exc_info)})
        elif not message.startswith("{"):
            message = json.dumps({"message": message})
        return f'{{"ts": "{stamp}", "level": "{record.levelname}", {message[1:]}'


def configure_logging(stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    logger = logging.getLogger("ddbbridge.runner")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def parse_pairs(text: str | None, what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{what}: expected region=value, got {entry!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fast", action="store_true", help="poll much faster than Lambda does (tests)")
    parser.add_argument(
        "--endpoints",
        help="region=url,... to serve (default: the emulated regions of the dev state, re-read live)",
    )
    parser.add_argument(
        "--clock-skew",
        help="region=seconds,... fault injection: shift time.time() inside that region's functions",
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_runner(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return _alive(pid)
    return b"ddbbridge_dev.runner" in command or b"ddbbridge dev runner" in command


def status() -> dict[str, Any]:
    section = read_section(SECTION) or {}
    pid = section.get("pid")
    running = isinstance(pid, int) and _alive(pid) and _is_runner(pid)
    return {**section, "running": running}


def run_foreground(args: argparse.Namespace) -> int:
    """`ddbbridge dev runner`: serve until interrupted (SIGINT/SIGTERM)."""
    current = status()
    if current["running"] and int(current["pid"]) != os.getpid():
        print(f"a runner is already running (pid {current['pid']}); stop it first", file=sys.stderr)
        return 1
    configure_logging()
    endpoints = parse_pairs(args.endpoints, "--endpoints") or None
    skew = {region: float(value) for region, value in parse_pairs(args.clock_skew, "--clock-skew").items()}
    options = RunnerOptions.create(fast=args.fast, endpoints=endpoints, clock_skew=skew)
    runner = Runner(options)
    if not current["running"]:
        write_section(
            SECTION, {"pid": os.getpid(), "fast": args.fast, "mode": "foreground", "started": time.time()}
        )

    def on_signal(_signum: int, _frame: Any) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        runner.run()
    finally:
        section = read_section(SECTION) or {}
        if section.get("pid") == os.getpid() and section.get("mode") == "foreground":
            write_section(SECTION, None)
    return 0
