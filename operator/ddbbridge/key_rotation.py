"""When to rotate a peer-writer access key, and which old keys may go: a pure decision, no I/O.

A sender caches the peer key for `credentials_ttl_seconds` and a batch in flight may still sign with it
until the function's timeout, so an old key is deleted only after an OVERLAP longer than both: the new
key is created and stored first, and the old one stays active until no sender can still hold it.
IAM allows two keys per user, so a rotation due while the previous overlap still runs waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

IAM_KEYS_PER_USER = 2
# Senders cache the key for 300 s and a batch runs at most the Lambda timeout (<= 900 s): 30 minutes
# covers both with a wide margin.
DEFAULT_OVERLAP = timedelta(minutes=30)


@dataclass(frozen=True)
class KeyFacts:
    access_key_id: str
    active: bool
    created: datetime


@dataclass(frozen=True)
class RotationPlan:
    live: KeyFacts | None  # the stored key, when it is an active key of the user
    create: bool  # create a new key and store it in the peer's SSM
    delete_before_create: tuple[KeyFacts, ...] = ()  # to make room (IAM's two-key limit)
    retire: tuple[KeyFacts, ...] = ()  # old keys whose overlap is over
    wait: str | None = None  # a rotation is due but must wait (transient)
    forced: bool = False

    @property
    def rotating(self) -> bool:
        return self.create and self.live is not None


def rotation_due(live: KeyFacts, rotation_days: int | None, now: datetime) -> bool:
    return rotation_days is not None and now - live.created >= timedelta(days=rotation_days)


def plan_rotation(
    keys: Sequence[KeyFacts],
    *,
    stored_key_id: str | None,
    secret_stored: bool,
    rotation_days: int | None,
    forced: bool,
    overlap: timedelta,
    now: datetime,
) -> RotationPlan:
    """What to do with `keys` (the user's keys, oldest first) given what the peer's SSM holds."""
    live = next((k for k in keys if k.access_key_id == stored_key_id and k.active), None)
    if not secret_stored:
        live = None  # an id without its secret is useless to a sender: store a fresh pair
    others = tuple(k for k in keys if live is None or k.access_key_id != live.access_key_id)
    overlap_over = live is not None and now - live.created >= overlap
    if live is not None and not forced and not rotation_due(live, rotation_days, now):
        return RotationPlan(live, create=False, retire=others if overlap_over else ())
    if stored_key_id is None and not secret_stored:
        # Nothing was ever stored in the peer's SSM, so no sender can hold any of these keys: they
        # are leftovers of a reconcile stopped between creating a key and storing it. Delete them now
        # rather than after an overlap, so a restart leaves exactly one key.
        return RotationPlan(None, create=True, delete_before_create=tuple(keys), forced=forced)
    if len(keys) >= IAM_KEYS_PER_USER:
        if live is not None and not overlap_over:
            return RotationPlan(
                live,
                create=False,
                wait=f"the previous key is still in its overlap until {live.created + overlap:%H:%M:%S} UTC; "
                "rotation waits so no sender loses a key it may still hold",
                forced=forced,
            )
        return RotationPlan(live, create=True, delete_before_create=others[:1], forced=forced)
    return RotationPlan(live, create=True, forced=forced)


def forced_rotation(requested: str | None, handled: str | None, has_key: bool) -> bool:
    """Whether a rotation request (any new value of the operator's rotate-key annotation) is pending.

    A request seen when the pair has no key yet needs no rotation: creating the pair makes a fresh key,
    so the request simply counts as handled.
    """
    return requested is not None and requested != handled and has_key
