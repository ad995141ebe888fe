"""Which machine a figure came from."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average_at_start": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "python": platform.python_version(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
