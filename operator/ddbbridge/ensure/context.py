"""The context every ensure step runs in: one region's clients, the dry-run switch, the action log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ddbbridge.aws import RegionSession
from ddbbridge.errors import TransientError, error_code

T = TypeVar("T")


@dataclass(frozen=True)
class Action:
    """One change made (or planned, in a dry run) to one AWS resource."""

    region: str  # side name
    service: str
    verb: str  # create, update, delete, tag, enable, disable, attach, detach, put, rotate
    resource: str
    detail: str = ""

    def __str__(self) -> str:
        suffix = f": {self.detail}" if self.detail else ""
        return f"[{self.region}] {self.verb} {self.service} {self.resource}{suffix}"


@dataclass
class EnsureContext:
    session: RegionSession
    side: str
    dry_run: bool = False
    actions: list[Action] = field(default_factory=list)
    # How long to wait for a resource to settle (ACTIVE, Successful) before calling it transient.
    settle_seconds: float = 120.0

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def change(
        self, service: str, verb: str, resource: str, call: Callable[[], T], detail: str = ""
    ) -> T | None:
        """Record an action; run its call unless this is a dry run. Never put secrets in `detail`."""
        self.actions.append(Action(self.side, service, verb, resource, detail))
        if self.dry_run:
            return None
        return call()

    def settle(self, what: str, probe: Callable[[], bool], interval: float = 0.2) -> None:
        """Poll `probe` until it is true; a resource that never settles is a transient error."""
        deadline = time.monotonic() + self.settle_seconds
        while not probe():
            if time.monotonic() >= deadline:
                raise TransientError(f"{what} did not settle within {self.settle_seconds:.0f}s")
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)


def is_missing(error: BaseException, *codes: str) -> bool:
    """True for the 'no such resource' error codes given (or the common ones)."""
    return error_code(error) in (codes or ("ResourceNotFoundException", "NoSuchEntity"))


def tag_changes(current: dict[str, str], desired: dict[str, str]) -> dict[str, str]:
    """Our tag keys whose values are missing or different; other tags are left alone."""
    return {key: value for key, value in desired.items() if current.get(key) != value}
