"""A progress bar on stderr for long CLI operations (load, verify, backfill).

On a terminal it redraws one line in place; otherwise (CI logs, pipes) it prints a plain line every
`interval` seconds and a final one, so logs stay readable. Shows count/total, rate and ETA. No
dependency, thread-safe: worker threads call `advance` directly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

BAR_WIDTH = 24
# Terminal redraws are capped so a fast loop does not spend its time writing to the tty.
TTY_REDRAW_SECONDS = 0.1


def format_duration(seconds: float) -> str:
    """`1:02:03`, `4:05`; never negative."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """Counts units of work toward an optional total."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "items",
        stream: TextIO | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.enabled = enabled
        self.count = 0
        self.tty = _isatty(self.stream)
        self._started = clock()
        self._last_output = self._started
        self._last_written_count: int | None = None
        self._closed = False
        self._lock = threading.Lock()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = total

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.count += n
            now = self.clock()
            period = TTY_REDRAW_SECONDS if self.tty else self.interval
            if now - self._last_output >= period:
                self._last_output = now
                self._write(self.render(now))

    def close(self) -> None:
        """Print the final state once (and end the terminal line)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self.tty or self._last_written_count != self.count:
                self._write(self.render(self.clock()), final=True)

    def elapsed(self) -> float:
        return self.clock() - self._started

    def render(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self.count / elapsed
        parts = [self.label]
        if self.total:
            fraction = min(self.count / self.total, 1.0)
            if self.tty:
                filled = int(fraction * BAR_WIDTH)
                parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
            parts.append(f"{self.count}/{self.total} {self.unit} ({fraction:.0%})")
        else:
            parts.append(f"{self.count} {self.unit}")
        parts.append(f"{rate:.1f}/s")
        if self.total and self.count < self.total and rate > 0:
            parts.append(f"ETA {format_duration((self.total - self.count) / rate)}")
        else:
            parts.append(f"elapsed {format_duration(elapsed)}")
        return " ".join(parts)

    def _write(self, line: str, *, final: bool = False) -> None:
        if not self.enabled:
            return
        self._last_written_count = self.count
        if self.tty:
            # \x1b[K clears what a longer previous line left behind.
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
