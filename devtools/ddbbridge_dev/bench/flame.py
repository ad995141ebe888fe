"""Collapsed stacks (py-spy `--format raw`: "frame;frame;... count" per line) -> where time goes.
Pure: no I/O. py-spy writes frames as `function (path/file.py:line)`."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

_LINE = re.compile(r":\d+\)$")


def function_of(frame: str) -> str:
    """`handle (ddbbridge/x.py:12)` -> `handle (ddbbridge/x.py)`: lines of one function merged."""
    return _LINE.sub(")", frame.strip())


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if stack and count_text.isdigit():
            stacks.append(([function_of(f) for f in stack.split(";")], int(count_text)))
    return stacks


def summarise(lines: Iterable[str], ours: Callable[[str], bool], top: int = 15) -> dict[str, Any]:
    """Total samples; per function of ours, the share of samples it is on the stack (inclusive,
    counted once per stack); per leaf frame, its share (self time)."""
    stacks = parse(lines)
    total = sum(count for _, count in stacks)
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        for frame in set(frames):
            if ours(frame):
                inclusive[frame] += count
        leaves[frames[-1]] += count
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "ours_inclusive": [[frame, share(n)] for frame, n in inclusive.most_common(top)],
        "leaves": [[frame, share(n)] for frame, n in leaves.most_common(top)],
    }
