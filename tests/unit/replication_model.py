"""A model of two regions (tables, ledgers, streams, Kinesis) driven by the real pure core.

Every pipeline step is split into a read (snapshot) and a conditional write, so any local write or
other pipeline step can land between the two, as in the real handlers. A write whose condition no
longer holds changes nothing and the step is retried later from a fresh read, like the handlers do.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ddbbridge_lambdas.codec import content_digest
from ddbbridge_lambdas.decisions import (
    ApplyAction,
    ChangeAction,
    LedgerEntry,
    RemoveAction,
    decide_apply,
    decide_change,
    decide_remove,
    displaced_by_applier,
    enforces_tombstone,
    ledger_after_apply,
    ledger_after_send,
    ledger_after_tombstone,
    removed_marker,
)
from ddbbridge_lambdas.versions import TimestampUnit, Version, version_from_attributes

TS, ORIGIN, KEY, DATA = "ts", "o", "pk", "data"
Item = dict[str, Any]


def item_version(item: Item | None) -> Version | None:
    if item is None:
        return None
    return version_from_attributes(item.get(TS), item.get(ORIGIN))


def stamps_of(item: Item | None) -> tuple[Any, Any] | None:
    """What a condition on 'exactly the stamps read' compares: the valid version, or 'invalid'."""
    if item is None:
        return None
    version = item_version(item)
    return ("valid", version) if version is not None else ("invalid", None)


@dataclass
class StreamRecord:
    key: str
    event: str  # INSERT | MODIFY | REMOVE
    old: Item | None
    new: Item | None


@dataclass
class Wire:
    key: str
    version: Version
    item: Item | None  # None: tombstone


@dataclass
class History:
    """Causality per key, as the edge test tracks it: every application write (its content is
    its id) or delete is an event; `seen[region][key]` holds the events that region has observed
    (its own, and every write whose content it held, with that write's own past). An event's past
    is what its region had seen when it happened."""

    seen: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    past: dict[str, frozenset[str]] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    def new_event(self, region: str, key: str, event: str) -> None:
        self.counter += 1
        mine = self.seen.setdefault(region, {}).setdefault(key, set())
        self.past[event] = frozenset(mine)
        mine.add(event)
        self.events.setdefault(key, []).append(event)

    def observe(self, region: str, key: str, event: str) -> None:
        mine = self.seen.setdefault(region, {}).setdefault(key, set())
        if event not in mine:
            mine.add(event)
            mine.update(self.past.get(event, ()))

    def violations(self, final: dict[str, Item]) -> list[str]:
        """A final state some later write or delete had seen (it lost to an older state)."""
        found = []
        for key, events in self.events.items():
            dominated: set[str] = set()
            for event in events:
                dominated |= self.past[event]
            item = final.get(key)
            if item is not None and item[DATA]["S"] in dominated:
                found.append(f"{key}: {item[DATA]['S']} survives a write or delete that had seen it")
            if item is None and all(e in dominated for e in events if e.startswith("delete#")):
                found.append(f"{key} is gone, but every delete was followed by a write that saw it")
        return found


@dataclass
class Region:
    name: str
    peer: str
    clock_skew: Decimal
    table: dict[str, Item] = field(default_factory=dict)
    ledger: dict[str, tuple[LedgerEntry, int]] = field(default_factory=dict)
    stream: list[StreamRecord] = field(default_factory=list)
    cursor: int = 0
    inbound: list[Wire] = field(default_factory=list)
    sender_pending: tuple[int, Any] | None = None
    applier_pending: tuple[int, Any] | None = None
    sent: list[Wire] = field(default_factory=list)


class Model:
    def __init__(self, unit: TimestampUnit, skew_a: Decimal, skew_b: Decimal) -> None:
        self.unit = unit
        self.now = Decimal(1000)
        self.regions = {
            "a": Region("a", "b", skew_a),
            "b": Region("b", "a", skew_b),
        }
        self.tombstones: dict[str, list[Version]] = {}
        self.ledger_history: list[tuple[str, str, Version | None, Version]] = []
        self.app_ops: dict[str, set[str]] = {}  # key -> regions with application writes
        self.seen_stamps: dict[tuple[str, str], list[tuple[Any, Any]]] = {}
        self.history = History()
        self.contents = itertools.count()

    # --- the table, with a stream ---------------------------------------------------------

    def _write_item(self, region: Region, key: str, new: Item | None) -> None:
        old = region.table.get(key)
        if old is None and new is None:
            return
        if new is None:
            del region.table[key]
            region.stream.append(StreamRecord(key, "REMOVE", old, None))
        else:
            region.table[key] = new
            if TS in new and ORIGIN in new:
                self.seen_stamps.setdefault((region.name, key), []).append((new[TS], new[ORIGIN]))
            event = "INSERT" if old is None else "MODIFY"
            region.stream.append(StreamRecord(key, event, copy.deepcopy(old), copy.deepcopy(new)))

    def _write_ledger(self, region: Region, key: str, entry: LedgerEntry) -> None:
        previous = region.ledger.get(key)
        old_version = previous[0].version if previous else None
        # The ledger is a high-water mark: it never goes down.
        assert old_version is None or entry.version >= old_version, (old_version, entry.version)
        region.ledger[key] = (entry, (previous[1] + 1) if previous else 1)
        self.ledger_history.append((region.name, key, old_version, entry.version))
        if entry.tombstone:
            self.tombstones.setdefault(key, []).append(entry.version)

    def _ledger_state(self, region: Region, key: str) -> tuple[LedgerEntry | None, int | None]:
        found = region.ledger.get(key)
        return (found[0], found[1]) if found else (None, None)

    def handler_now(self, region: Region) -> Decimal:
        return self.now + region.clock_skew

    # --- application writes ---------------------------------------------------------------

    def observe(self) -> None:
        """What each region holds now has been seen there (call after every step)."""
        for region in self.regions.values():
            for key, item in region.table.items():
                self.history.observe(region.name, key, item[DATA]["S"])

    def app_put(self, region_name: str, key: str, content: str, stamp: tuple[str, Any]) -> None:
        region = self.regions[region_name]
        self.app_ops.setdefault(key, set()).add(region_name)
        self.history.new_event(region_name, key, content)
        item: Item = {KEY: {"S": key}, DATA: {"S": content}}
        kind, value = stamp
        current = region.table.get(key)
        if kind == "now":
            item[TS], item[ORIGIN] = {"N": str(self.now + Decimal(value))}, {"S": region_name}
        elif kind == "fixed":
            item[TS], item[ORIGIN] = {"N": str(value)}, {"S": region_name}
        elif kind == "peer":
            item[TS], item[ORIGIN] = {"N": str(self.now + Decimal(value))}, {"S": region.peer}
        elif kind == "bad":
            item[TS], item[ORIGIN] = {"S": "yesterday"}, {"S": region_name}
        elif kind == "stale":
            # Stamps read earlier (a lost update: an app server writes back an old read).
            seen = self.seen_stamps.get((region_name, key), [])
            if seen:
                item[TS], item[ORIGIN] = copy.deepcopy(seen[value % len(seen)])
        elif kind == "copy" and current is not None:
            for name in (TS, ORIGIN):
                if name in current:
                    item[name] = copy.deepcopy(current[name])
        self._write_item(region, key, item)

    def app_update(self, region_name: str, key: str, content: str) -> None:
        """UpdateItem SET data = ...: the stamps stay as they are (upsert when absent)."""
        region = self.regions[region_name]
        self.app_ops.setdefault(key, set()).add(region_name)
        self.history.new_event(region_name, key, content)
        current = copy.deepcopy(region.table.get(key)) or {KEY: {"S": key}}
        current[DATA] = {"S": content}
        self._write_item(region, key, current)

    def app_delete(self, region_name: str, key: str) -> None:
        region = self.regions[region_name]
        self.app_ops.setdefault(key, set()).add(region_name)
        self.history.new_event(region_name, key, f"delete#{self.history.counter}")
        self._write_item(region, key, None)

    # --- sender ---------------------------------------------------------------------------

    def sender_read(self, region_name: str) -> None:
        region = self.regions[region_name]
        if region.sender_pending is not None or region.cursor >= len(region.stream):
            return
        record = region.stream[region.cursor]
        snapshot = (self._ledger_state(region, record.key), copy.deepcopy(region.table.get(record.key)))
        region.sender_pending = (region.cursor, snapshot)

    def sender_write(self, region_name: str) -> None:
        region = self.regions[region_name]
        if region.sender_pending is None:
            return
        index, ((entry, rev), item_read) = region.sender_pending
        region.sender_pending = None
        if index != region.cursor:
            return  # a rewind happened in between
        if self._sender_process(region, region.stream[index], entry, rev, item_read):
            region.cursor += 1

    def sender_rewind(self, region_name: str, count: int) -> None:
        """Re-delivery of already processed records (a retried batch)."""
        region = self.regions[region_name]
        region.cursor = max(0, region.cursor - count)
        region.sender_pending = None

    def _send(self, region: Region, wire: Wire) -> None:
        assert wire.version.origin == region.name, "a region only ever sends its own versions"
        region.sent.append(wire)
        self.regions[region.peer].inbound.append(wire)

    def _sender_process(
        self,
        region: Region,
        record: StreamRecord,
        entry: LedgerEntry | None,
        rev: int | None,
        item_read: Item | None,
    ) -> bool:
        key = record.key
        now = self.handler_now(region)
        epoch = int(now)
        if record.event in ("INSERT", "MODIFY"):
            assert record.new is not None
            new_version = item_version(record.new)
            digest = content_digest(record.new)
            decision = decide_change(
                new_version,
                digest,
                item_version(record.old),
                entry,
                local=region.name,
                now=now,
                unit=self.unit,
            )
            if decision.action is ChangeAction.DROP_ECHO:
                return True
            if decision.action is ChangeAction.RESTAMP:
                current = region.table.get(key)
                # UpdateItem of the two stamps, only if the item still holds the stamps we saw.
                if current is not None and stamps_of(current) == stamps_of(record.new):
                    restamped = copy.deepcopy(current)
                elif current is not None and displaced_by_applier(
                    item_version(current), content_digest(current), entry
                ):
                    # The applier put a peer version over this pending write: write it back.
                    restamped = copy.deepcopy(record.new)
                else:
                    return True  # the item changed again: a later record carries its state
                restamped[TS] = {"N": str(decision.version.timestamp)}
                restamped[ORIGIN] = {"S": decision.version.origin}
                self._write_item(region, key, restamped)
                return True
            # SEND: max-merge the ledger, conditioned on the entry read. A lost race (the applier
            # raised the ledger for this pending write) decides again from a fresh read: the
            # handler re-stamps the sends the raised ledger overtook (`demote_sends`).
            if self._ledger_state(region, key)[1] != rev:
                return False
            merged = ledger_after_send(entry, decision.version, digest, epoch)
            if merged is not None:
                self._write_ledger(region, key, merged)
            self._send(region, Wire(key, decision.version, copy.deepcopy(record.new)))
            return True
        assert record.old is not None
        old_version = item_version(record.old)
        marker = removed_marker(old_version, content_digest(record.old))
        removal = decide_remove(old_version, marker, entry, local=region.name, now=now, unit=self.unit)
        if removal.action in (RemoveAction.DROP_REPLICATOR_DELETE, RemoveAction.DROP_COVERED):
            return True
        assert removal.version is not None
        if removal.action is RemoveAction.RESEND_TOMBSTONE:
            self._send(region, Wire(key, removal.version, None))
            return True
        # LOCAL_DELETE: tombstone in the ledger (+ delete an older peer version now present),
        # one transaction conditioned on the ledger and item states read.
        if self._ledger_state(region, key)[1] != rev:
            return False
        read_digest = content_digest(item_read) if item_read is not None else None
        enforce = enforces_tombstone(item_version(item_read), read_digest, entry, region.peer)
        deleted_marker = None
        if enforce:
            assert item_read is not None
            if stamps_of(region.table.get(key)) != stamps_of(item_read):
                return False
            deleted_marker = removed_marker(item_version(item_read), content_digest(item_read))
        self._write_ledger(region, key, ledger_after_tombstone(entry, removal.version, deleted_marker, epoch))
        if enforce:
            self._write_item(region, key, None)
        self._send(region, Wire(key, removal.version, None))
        return True

    # --- applier --------------------------------------------------------------------------

    def applier_read(self, region_name: str, pick: int) -> None:
        region = self.regions[region_name]
        if region.applier_pending is not None or not region.inbound:
            return
        index = pick % len(region.inbound)
        key = region.inbound[index].key
        snapshot = (self._ledger_state(region, key), copy.deepcopy(region.table.get(key)))
        region.applier_pending = (index, snapshot)

    def applier_write(self, region_name: str, keep: bool) -> None:
        """keep=True: the record is delivered again later (duplicate / bisect / redrive)."""
        region = self.regions[region_name]
        if region.applier_pending is None:
            return
        index, ((entry, rev), item_read) = region.applier_pending
        region.applier_pending = None
        wire = region.inbound[index]
        key = wire.key
        action = decide_apply(
            wire.version,
            wire.item is None,
            item_present=item_read is not None,
            item_version=item_version(item_read),
            item_digest=content_digest(item_read) if item_read is not None else None,
            ledger=entry,
        )
        if action is not ApplyAction.DISCARD:
            current = region.table.get(key)
            same_item = (current is None) == (item_read is None) and stamps_of(current) == stamps_of(
                item_read
            )
            # RAISE_LEDGER writes the ledger only (the item is a pending local change and stays).
            if self._ledger_state(region, key)[1] != rev or (
                action is not ApplyAction.RAISE_LEDGER and not same_item
            ):
                return  # transaction cancelled: re-read and decide again later
            digest = content_digest(wire.item) if wire.item is not None else None
            deleted = (
                removed_marker(item_version(item_read), content_digest(item_read))
                if action is ApplyAction.DELETE_ITEM and item_read is not None
                else None
            )
            new_entry = ledger_after_apply(
                entry,
                action,
                wire.version,
                digest=digest,
                deleted_marker=deleted,
                now_epoch=int(self.handler_now(region)),
            )
            self._write_ledger(region, key, new_entry)
            if action is ApplyAction.PUT:
                self._write_item(region, key, copy.deepcopy(wire.item))
            elif action is ApplyAction.DELETE_ITEM:
                self._write_item(region, key, None)
        if not keep:
            del region.inbound[index]

    # --- draining -------------------------------------------------------------------------

    def drain(self, limit: int = 20000) -> None:
        steps = 0
        while True:
            progressed = False
            for region in self.regions.values():
                region.sender_pending = None
                region.applier_pending = None
                while region.cursor < len(region.stream):
                    self.sender_read(region.name)
                    self.sender_write(region.name)
                    progressed = True
                    steps += 1
                while region.inbound:
                    self.applier_read(region.name, 0)
                    self.applier_write(region.name, keep=False)
                    progressed = True
                    steps += 1
                assert steps < limit, "the pipeline does not quiesce (ping-pong?)"
            if not progressed:
                return
