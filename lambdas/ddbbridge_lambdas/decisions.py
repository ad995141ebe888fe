"""The conflict core: every replication decision, as pure functions (no I/O, no clock).

The sender and applier read state, call these, and write the result with conditions on exactly the
state they read; the property tests drive the same functions through a model of two regions.

Terms (for one item key, seen from the local region):
- ledger entry L: the highest version this region has held or sent for the key, whether it is a
  tombstone, the content digest of the put held at that version, markers of the item states the
  replicator itself deleted (so their REMOVE stream records are not sent back), and the last peer
  version (with its digest) the applier put into the table.
- the item's own stamp is only a hint: a skewed application clock can lower it. Decisions that need a
  high-water mark use max(item stamp, L).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from .versions import TimestampUnit, Version, format_version, highest, next_version_above

# Markers of deleted states are kept this long: longer than a DynamoDB stream record lives (24 h),
# so every REMOVE record the replicator caused is still recognised when the sender reads it.
REMOVED_MARKER_RETENTION_SECONDS = 48 * 3600


@dataclass(frozen=True)
class LedgerEntry:
    version: Version
    tombstone: bool
    digest: str | None = None
    removed: tuple[tuple[str, int], ...] = field(default=())  # (marker, epoch seconds added)
    applied: tuple[Version, str] | None = None  # the applier's last put: (version, digest)

    def has_removed(self, marker: str) -> bool:
        return any(existing == marker for existing, _ in self.removed)


def removed_marker(version: Version | None, digest: str) -> str:
    """What identifies an item state the replicator deleted: its version, or for an item without
    a valid stamp, its content digest (an unstamped item has no version to remember)."""
    return format_version(version) if version is not None else "~" + digest


def _with_removed(
    removed: tuple[tuple[str, int], ...], marker: str | None, now_epoch: int
) -> tuple[tuple[str, int], ...]:
    horizon = now_epoch - REMOVED_MARKER_RETENTION_SECONDS
    kept = tuple((m, at) for m, at in removed if at >= horizon and m != marker)
    return (*kept, (marker, now_epoch)) if marker is not None else kept


def ledger_after_put(entry: LedgerEntry | None, version: Version, digest: str, now_epoch: int) -> LedgerEntry:
    removed = _with_removed(entry.removed if entry else (), None, now_epoch)
    applied = entry.applied if entry else None
    return LedgerEntry(version, tombstone=False, digest=digest, removed=removed, applied=applied)


def ledger_after_tombstone(
    entry: LedgerEntry | None, version: Version, deleted_marker: str | None, now_epoch: int
) -> LedgerEntry:
    removed = _with_removed(entry.removed if entry else (), deleted_marker, now_epoch)
    applied = entry.applied if entry else None
    return LedgerEntry(version, tombstone=True, digest=None, removed=removed, applied=applied)


def ledger_version(entry: LedgerEntry | None) -> Version | None:
    return entry.version if entry is not None else None


# --- sender: INSERT / MODIFY --------------------------------------------------------------------


class ChangeAction(Enum):
    SEND = "send"  # send the new image at its version and max-merge the ledger
    DROP_ECHO = "drop_echo"  # the applier's own write: never send it back
    RESTAMP = "restamp"  # write a fresh local stamp; its own stream record is sent later


@dataclass(frozen=True)
class ChangeDecision:
    action: ChangeAction
    version: Version  # SEND: the version sent; DROP_ECHO: the echoed one; RESTAMP: the new stamp
    reason: str


def decide_change(
    new_version: Version | None,
    new_digest: str,
    old_version: Version | None,
    ledger: LedgerEntry | None,
    *,
    local: str,
    now: Decimal,
    unit: TimestampUnit,
) -> ChangeDecision:
    """Classify an INSERT/MODIFY stream record of the local table.

    Sent as is only when the new stamp is valid, local, advances the item (> old stamp) and is not
    below the ledger. Equal to the ledger only counts when the content is the same as what the
    ledger recorded (a duplicate of a send, or the applier's own write = echo): an application can
    reuse a stamp with other content, and equal versions must mean equal content everywhere.
    Everything else is re-stamped above every version involved, so the region's current content
    wins everywhere: unstamped writes, UpdateItems that left a stamp in place, skewed clocks, stamps
    that claim the peer but were never applied by us.
    """
    if new_version is not None and (old_version is None or new_version > old_version):
        current = ledger_version(ledger)
        if new_version.origin == local and (current is None or new_version > current):
            return ChangeDecision(ChangeAction.SEND, new_version, "new local version")
        if (
            ledger is not None
            and new_version == ledger.version
            and not ledger.tombstone
            and ledger.digest == new_digest
        ):
            if new_version.origin == local:
                return ChangeDecision(ChangeAction.SEND, new_version, "duplicate of a sent version")
            return ChangeDecision(ChangeAction.DROP_ECHO, new_version, "applier's own write")
        reason = "below the ledger" if new_version.origin == local else "foreign stamp never applied"
    elif new_version is None:
        reason = "no valid stamp"
    else:
        reason = "stamp does not advance the item"
    floor = highest(new_version, old_version, ledger_version(ledger))
    return ChangeDecision(ChangeAction.RESTAMP, next_version_above(floor, now, local, unit), reason)


def ledger_after_send(
    entry: LedgerEntry | None, version: Version, digest: str, now_epoch: int
) -> LedgerEntry | None:
    """Max-merge: the ledger never goes down. Returns None when nothing changes."""
    if entry is not None and entry.version >= version:
        return None
    return ledger_after_put(entry, version, digest, now_epoch)


# --- sender: REMOVE -----------------------------------------------------------------------------


class RemoveAction(Enum):
    DROP_REPLICATOR_DELETE = "drop_replicator_delete"  # the applier (or enforcement) deleted it
    DROP_COVERED = "drop_covered"  # a peer tombstone at least as new already deleted that state
    RESEND_TOMBSTONE = "resend_tombstone"  # our own tombstone already covers it (retry/duplicate)
    LOCAL_DELETE = "local_delete"  # a new local delete: tombstone above everything, then send


@dataclass(frozen=True)
class RemoveDecision:
    action: RemoveAction
    version: Version | None  # tombstone version for LOCAL_DELETE and RESEND_TOMBSTONE


def decide_remove(
    old_version: Version | None,
    old_marker: str,
    ledger: LedgerEntry | None,
    *,
    local: str,
    now: Decimal,
    unit: TimestampUnit,
) -> RemoveDecision:
    """Classify a REMOVE stream record (application delete, TTL expiry, or our own delete).

    A local delete is ordered above the deleted version AND the ledger: the ledger may hold a
    higher version this region held (and sent) before a skewed write lowered the item's stamp;
    the peer may hold that version, so a delete below it would lose there and never here.
    """
    if ledger is not None and ledger.has_removed(old_marker):
        return RemoveDecision(RemoveAction.DROP_REPLICATOR_DELETE, None)
    if ledger is not None and ledger.tombstone and (old_version is None or ledger.version >= old_version):
        if ledger.version.origin == local:
            return RemoveDecision(RemoveAction.RESEND_TOMBSTONE, ledger.version)
        return RemoveDecision(RemoveAction.DROP_COVERED, None)
    floor = highest(old_version, ledger_version(ledger))
    return RemoveDecision(RemoveAction.LOCAL_DELETE, next_version_above(floor, now, local, unit))


def enforces_tombstone(
    item_version: Version | None, item_digest: str | None, ledger: LedgerEntry | None, peer: str
) -> bool:
    """Whether a local tombstone must also delete the item now present.

    Only exactly the applier's last put qualifies (same version and content): a peer version put
    into the item the pending local delete had emptied (before the sender saw the delete, the
    ledger could not tell). It is below the tombstone and must go, or this region keeps what the
    peer deletes. Anything else present is an application write after the delete, even when its
    stamp names the peer: it stays, and its own stream record follows.
    """
    if item_version is None or item_version.origin != peer or ledger is None or ledger.applied is None:
        return False
    applied_version, applied_digest = ledger.applied
    return item_version == applied_version and item_digest == applied_digest


def displaced_by_applier(
    item_version: Version | None, item_digest: str | None, ledger: LedgerEntry | None
) -> bool:
    """After a re-stamp found the item changed: whether it now holds exactly the applier's last put
    of a peer version that the ledger has since passed with a local send.

    Then the applier put that version over a pending local write it could not tell from settled
    data (a key with no ledger entry yet, whose item stamp a skewed clock had lowered), and this
    region had sent a higher version of the same write sequence. The pending write (the record being
    re-stamped) wins, as it would have had the ledger known: the sender writes its content back
    with the fresh stamp instead of keeping, or worse relabelling as local, the peer's content.
    """
    if item_version is None or ledger is None or ledger.applied is None or ledger.tombstone:
        return False
    applied_version, applied_digest = ledger.applied
    return (
        item_version == applied_version
        and item_digest == applied_digest
        and ledger.version > applied_version
        and ledger.version.origin != applied_version.origin
    )


# --- applier ------------------------------------------------------------------------------------


class ApplyAction(Enum):
    DISCARD = "discard"  # not newer than what this region holds or held: conflict lost/duplicate
    RAISE_LEDGER = "raise_ledger"  # discarded for an unsent local change; the ledger goes above it
    PUT = "put"
    DELETE_ITEM = "delete_item"
    TOMBSTONE_ONLY = "tombstone_only"  # delete of an absent item: remember it, block older puts


def is_accounted(
    item_present: bool, item_version: Version | None, item_digest: str | None, ledger: LedgerEntry | None
) -> bool:
    """Whether the ledger explains what the item holds, i.e. no local change is waiting for the
    sender: absent and (no entry or a tombstone), or the exact version and content the ledger
    records. Without an entry (never seen, or expired) a valid stamp stands for itself."""
    if not item_present:
        return ledger is None or ledger.tombstone
    if item_version is None:
        return False
    if ledger is None:
        return True
    return (
        not ledger.tombstone
        and ledger.version == item_version
        and ledger.digest is not None
        and ledger.digest == item_digest
    )


def decide_apply(
    incoming: Version,
    is_delete: bool,
    *,
    item_present: bool,
    item_version: Version | None,
    item_digest: str | None,
    ledger: LedgerEntry | None,
    pending_local_wins: bool = True,
) -> ApplyAction:
    """Last writer wins over the ledger, for an item the ledger accounts for.

    An item the ledger does not account for holds a local write or delete the sender has not
    processed yet: that pending local change wins over a peer version arriving in this window.
    The incoming version is discarded and the ledger raised to it, so the sender's re-stamp or
    tombstone of the pending change is placed above it (and never relabels peer content).
    `pending_local_wins=False` is for `verify --repair`, which has already compared both sides with
    consistent reads and writes the winner conditioned on exactly the state it read.
    """
    current = ledger_version(ledger)
    if pending_local_wins and not is_accounted(item_present, item_version, item_digest, ledger):
        if current is not None and incoming <= current:
            return ApplyAction.DISCARD
        return ApplyAction.RAISE_LEDGER
    current = highest(item_version, current)
    if current is not None and incoming <= current:
        return ApplyAction.DISCARD
    if not is_delete:
        return ApplyAction.PUT
    return ApplyAction.DELETE_ITEM if item_present else ApplyAction.TOMBSTONE_ONLY


def ledger_after_apply(
    entry: LedgerEntry | None,
    action: ApplyAction,
    incoming: Version,
    *,
    digest: str | None,
    deleted_marker: str | None,
    now_epoch: int,
) -> LedgerEntry:
    if action is ApplyAction.PUT:
        if digest is None:
            raise ValueError("a put needs the content digest")
        put = ledger_after_put(entry, incoming, digest, now_epoch)
        return LedgerEntry(put.version, False, digest, put.removed, applied=(incoming, digest))
    if action is ApplyAction.DELETE_ITEM:
        return ledger_after_tombstone(entry, incoming, deleted_marker, now_epoch)
    if action is ApplyAction.TOMBSTONE_ONLY:
        return ledger_after_tombstone(entry, incoming, None, now_epoch)
    if action is ApplyAction.RAISE_LEDGER:
        # Only a high-water mark: no digest (no stream record can look like an echo of it), not a
        # tombstone (nothing was deleted here; a later local REMOVE must still be sent), and the
        # markers of replicator deletes are kept.
        removed = _with_removed(entry.removed if entry else (), None, now_epoch)
        applied = entry.applied if entry else None
        return LedgerEntry(incoming, tombstone=False, digest=None, removed=removed, applied=applied)
    raise ValueError("a discarded record changes nothing")


@dataclass(frozen=True)
class Coalesced:
    """One key's records in a batch: only the winner (highest version) is written."""

    winner: int  # index into the batch
    others: tuple[int, ...]


def coalesce(keys_and_versions: Sequence[tuple[str, Version]]) -> dict[str, Coalesced]:
    """Per key, the index of the highest version (the first of equals) and the rest."""
    groups: dict[str, list[int]] = {}
    for index, (key, _) in enumerate(keys_and_versions):
        groups.setdefault(key, []).append(index)
    result = {}
    for key, indexes in groups.items():
        winner = indexes[0]
        for index in indexes[1:]:
            if keys_and_versions[index][1] > keys_and_versions[winner][1]:
                winner = index
        result[key] = Coalesced(winner, tuple(i for i in indexes if i != winner))
    return result


def earliest(indexes: Iterable[int]) -> int | None:
    present = list(indexes)
    return min(present) if present else None


__all__ = [
    "ApplyAction",
    "ChangeAction",
    "ChangeDecision",
    "Coalesced",
    "LedgerEntry",
    "RemoveAction",
    "RemoveDecision",
    "coalesce",
    "decide_apply",
    "decide_change",
    "decide_remove",
    "displaced_by_applier",
    "enforces_tombstone",
    "is_accounted",
    "ledger_after_apply",
    "ledger_after_put",
    "ledger_after_send",
    "ledger_after_tombstone",
    "removed_marker",
]
