"""The bench figure: apply lag over time and replicated items/s, both designs (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display here

STYLES = {"ours": "-", "naive": ":", "conflicts": "--"}


def draw(document: dict[str, Any], path: Path) -> None:
    figure, (lag_axes, rate_axes) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for phase, entry in document.get("phases", {}).items():
        for name, direction in entry["directions"].items():
            rows = direction.get("timeline", [])
            if not rows:
                continue
            label = f"{entry['label']} {name}"
            style = STYLES.get(phase, "-")
            times = [row["t"] for row in rows]
            lag_axes.plot(times, [row["lag_max"] for row in rows], style, label=label)
            rate_axes.plot(times, [row["applied_per_s"] for row in rows], style, label=label)
    machine = document.get("machine", {})
    lag_axes.set_ylabel("apply lag, max per second (s)")
    lag_axes.set_yscale("symlog", linthresh=1.0)
    lag_axes.set_title(
        f"ddb-bridge bench, {document.get('settings', {}).get('rtt_ms', 0):g} ms RTT, "
        f"{machine.get('nproc')} CPUs ({machine.get('cpu_model')})",
        fontsize=9,
    )
    rate_axes.set_ylabel("versions applied per second")
    rate_axes.set_xlabel("seconds since the phase's load started")
    for axes in (lag_axes, rate_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
