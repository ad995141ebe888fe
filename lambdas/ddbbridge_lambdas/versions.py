"""Versions: the total order every conflict decision uses (pure, no I/O).

A version is (timestamp, origin region name), compared lexicographically, so equal timestamps from
two regions still have a winner. Timestamps are Decimals in the configured unit: epoch seconds with
a fraction (the seed's `Decimal(time.time())`) or epoch milliseconds. The smallest step of a unit is
what "next version above" adds: one microsecond for seconds, one millisecond for milliseconds; never
a whole second.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Literal

TimestampUnit = Literal["seconds", "milliseconds"]

_STEPS: dict[str, Decimal] = {"seconds": Decimal("0.000001"), "milliseconds": Decimal(1)}


@dataclass(frozen=True, order=True)
class Version:
    """(timestamp, origin); dataclass ordering compares the fields in this order."""

    timestamp: Decimal
    origin: str

    def __str__(self) -> str:
        return format_version(self)


def step_of(unit: TimestampUnit) -> Decimal:
    try:
        return _STEPS[unit]
    except KeyError:
        raise ValueError(f"unknown timestamp unit {unit!r}") from None


def clock_stamp(epoch_seconds: float, unit: TimestampUnit) -> Decimal:
    """A wall-clock reading in the unit, truncated to the unit's step."""
    seconds = Decimal(repr(epoch_seconds))
    value = seconds if unit == "seconds" else seconds * 1000
    return value.quantize(step_of(unit), rounding=ROUND_FLOOR)


def next_version_above(floor: Version | None, now: Decimal, origin: str, unit: TimestampUnit) -> Version:
    """The version a re-stamp or a delete takes: the clock's reading if that is already above
    `floor`, else `floor`'s timestamp plus one step (strictly greater timestamp, so the origin
    never matters for the comparison)."""
    step = step_of(unit)
    candidate = now.quantize(step, rounding=ROUND_FLOOR)
    if floor is not None and candidate <= floor.timestamp:
        candidate = floor.timestamp.quantize(step, rounding=ROUND_FLOOR) + step
    return Version(candidate, origin)


def highest(*versions: Version | None) -> Version | None:
    present = [v for v in versions if v is not None]
    return max(present) if present else None


def parse_timestamp(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        return None
    return value if value.is_finite() else None


def version_from_attributes(timestamp: Any, origin: Any) -> Version | None:
    """The version held by two typed attribute values ({"N": ...}, {"S": ...}), or None when the
    stamp is missing or of the wrong type (such an item counts as the lowest version)."""
    if not isinstance(timestamp, dict) or not isinstance(origin, dict):
        return None
    ts_text, origin_text = timestamp.get("N"), origin.get("S")
    if len(timestamp) != 1 or len(origin) != 1:
        return None
    if not isinstance(ts_text, str) or not isinstance(origin_text, str) or not origin_text:
        return None
    value = parse_timestamp(ts_text)
    return None if value is None else Version(value, origin_text)


def version_attributes(version: Version) -> tuple[dict[str, str], dict[str, str]]:
    """The two typed attribute values that stamp an item with `version`."""
    return {"N": format_timestamp(version.timestamp)}, {"S": version.origin}


def format_timestamp(value: Decimal) -> str:
    """Plain notation (never exponent form), as an application would write it."""
    text = format(value, "f")
    return text


def format_version(version: Version) -> str:
    """Stable text form, used for ledger markers and logs: `<timestamp>|<origin>`."""
    return f"{format_timestamp(version.timestamp.normalize())}|{version.origin}"


def parse_version(text: str) -> Version | None:
    timestamp, sep, origin = text.partition("|")
    value = parse_timestamp(timestamp)
    if not sep or not origin or value is None:
        return None
    return Version(value, origin)
