"""`ddbbridge verify --repair`: make every divergent key equal again, by the version order.

For each key `verify` found missing or different, right before writing:
1. re-read the item in both regions and both regions' ledger entries, all with consistent reads;
2. plan with `plan_repair` (pure): each side's claim is max(item stamp, ledger version), exactly the
   high-water mark the applier's `decide_apply` uses; the higher claim wins;
3. write the winner to the loser through the applier's own code (`replay.RegionApplier`), so the
   write is conditioned on the state read and a tombstone is written for a delete;
4. when the applier discards it (something changed in between), start again at 1 (a few times).

Missing or broken stamps (defined here, documented in docs/operations.md): an item without a valid
stamp (attribute missing, wrong type, empty origin) has no version; it ranks below every version,
as in the applier. When the winning content has no version of its own at the top of the order (no
stamp, a stamp below its own region's ledger, or the two regions claim the SAME version with
different content), the winner is first re-stamped in its own region with a version above both
claims (origin = its region, as the sender does for unstamped writes), then copied. A tie of two
present items is won by `prefer` (regions[0] unless told otherwise).

A key present on one side only is a delete when the other side's ledger holds a tombstone above the
present version (the delete wins and is applied with that tombstone's version), else a copy.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ddbbridge.aws import RegionSession, region_session
from ddbbridge.comparison import Comparison, Item, Side, item_digest, plain_key
from ddbbridge.replay import RegionApplier
from ddbbridge.restamp import restamp_item
from ddbbridge.spec import PairManifest, RegionSpec
from ddbbridge_lambdas.codec import WireRecord, extract_key, item_to_wire
from ddbbridge_lambdas.decisions import LedgerEntry, ledger_version
from ddbbridge_lambdas.versions import (
    Version,
    clock_stamp,
    highest,
    next_version_above,
    version_from_attributes,
)

MAX_ROUNDS = 5


@dataclass(frozen=True)
class SideState:
    """One region's view of a key, as re-read right before a repair."""

    item: Item | None  # boto3 form
    item_version: Version | None
    ledger: LedgerEntry | None

    @property
    def present(self) -> bool:
        return self.item is not None

    @property
    def claim(self) -> Version | None:
        return highest(self.item_version, ledger_version(self.ledger))


class RepairKind(StrEnum):
    NOTHING = "nothing"  # equal on re-read
    COPY = "copy"  # winner's item at its own version -> loser
    DELETE = "delete"  # winner's tombstone -> loser
    RESTAMP_THEN_COPY = "restamp-then-copy"  # new version on the winner first, then copy
    WAIT = "wait"  # winner's delete is still in its stream (ledger not yet a tombstone)


@dataclass(frozen=True)
class RepairPlan:
    kind: RepairKind
    winner: Side | None = None
    version: Version | None = None  # COPY / DELETE: the version written to the loser


def plan_repair(a: SideState, b: SideState, *, equal: bool, prefer: Side = Side.A) -> RepairPlan:
    """Which side wins a divergent key and how the loser is brought in line (pure)."""
    if equal or (not a.present and not b.present):
        return RepairPlan(RepairKind.NOTHING)
    states = {Side.A: a, Side.B: b}
    if a.claim == b.claim:
        # Same version (or none) on both sides with different content: the order cannot choose.
        winner = prefer if states[prefer].present else prefer.other
        return RepairPlan(RepairKind.RESTAMP_THEN_COPY, winner)
    winner = Side.A if highest(a.claim, b.claim) == a.claim else Side.B
    state = states[winner]
    if state.present:
        if state.item_version is not None and state.item_version == state.claim:
            return RepairPlan(RepairKind.COPY, winner, state.item_version)
        return RepairPlan(RepairKind.RESTAMP_THEN_COPY, winner)
    if state.ledger is not None and state.ledger.tombstone:
        return RepairPlan(RepairKind.DELETE, winner, state.ledger.version)
    return RepairPlan(RepairKind.WAIT, winner)


@dataclass
class KeyRepair:
    key: Item
    result: str  # what was done, for people
    changed: bool
    ok: bool
    written_to: str | None = None
    version: str | None = None


@dataclass
class RepairReport:
    keys: list[KeyRepair] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.keys)

    def counts(self) -> Counter[str]:
        return Counter(k.result.split(":")[0] for k in self.keys)

    def document(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "changed": sum(1 for k in self.keys if k.changed),
            "keys": [
                {
                    "key": plain_key(k.key),
                    "result": k.result,
                    "changed": k.changed,
                    "ok": k.ok,
                    "written_to": k.written_to,
                    "version": k.version,
                }
                for k in self.keys
            ],
        }

    def text(self) -> str:
        changed = sum(1 for k in self.keys if k.changed)
        lines = [f"repair: {len(self.keys)} divergent key(s), {changed} changed, ok={self.ok}"]
        for k in self.keys:
            lines.append(f"  {json.dumps(plain_key(k.key), ensure_ascii=False)}: {k.result}")
        return "\n".join(lines)


class PairRepairer:
    """Repairs keys of one pair; one instance per run (clients and deployed configs cached)."""

    def __init__(
        self,
        manifest: PairManifest,
        sessions: dict[str, RegionSession] | None = None,
        *,
        prefer: Side = Side.A,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.manifest = manifest
        self.sessions = sessions or {side.name: region_session(side) for side in manifest.spec.regions}
        self.specs: dict[Side, RegionSpec] = {Side.A: manifest.spec.side_a, Side.B: manifest.spec.side_b}
        self.appliers = {
            side: RegionApplier.deployed(
                self.sessions[spec.name], manifest.name, spec.name, authoritative=True
            )
            for side, spec in self.specs.items()
        }
        self.prefer = prefer
        self.clock = clock

    def read(self, side: Side, key: Item) -> SideState:
        applier = self.appliers[side]
        config = applier.config
        item = (
            applier.session.client("dynamodb")
            .get_item(TableName=config.table_name, Key=key, ConsistentRead=True)
            .get("Item")
        )
        version = None
        if item is not None:
            version = version_from_attributes(
                item.get(config.timestamp_attribute), item.get(config.origin_attribute)
            )
        return SideState(item, version, applier.ledger_state(key).entry)

    def repair_key(self, key: Item) -> KeyRepair:
        last = "not attempted"
        for _round in range(MAX_ROUNDS):
            a, b = self.read(Side.A, key), self.read(Side.B, key)
            equal = a.item is not None and b.item is not None and item_digest(a.item) == item_digest(b.item)
            plan = plan_repair(a, b, equal=equal, prefer=self.prefer)
            if plan.kind is RepairKind.NOTHING:
                return KeyRepair(key, "equal on re-read", changed=False, ok=True)
            assert plan.winner is not None
            winner, loser = plan.winner, plan.winner.other
            states = {Side.A: a, Side.B: b}
            if plan.kind is RepairKind.WAIT:
                last = f"wait: a delete in {self.specs[winner].name} is still in its stream"
                continue
            if plan.kind is RepairKind.DELETE:
                assert plan.version is not None
                record = self.wire(winner, key, plan.version, None)
            else:
                item = states[winner].item
                version = plan.version
                if plan.kind is RepairKind.RESTAMP_THEN_COPY:
                    version = self.next_version(winner, a, b)
                    item = restamp_item(
                        self.appliers[winner].session.client("dynamodb"),
                        self.appliers[winner].config,
                        key,
                        states[winner].item_version,
                        version,
                    )
                    if item is None:
                        last = f"changed in {self.specs[winner].name} during the repair"
                        continue
                assert item is not None and version is not None
                record = self.wire(winner, key, version, item)
            outcome = self.appliers[loser].apply_wire([record])
            if outcome.rejected:
                letter = outcome.rejected[0]
                return KeyRepair(
                    key,
                    f"rejected: {self.specs[loser].name} refused the write: {letter.error}",
                    changed=plan.kind is RepairKind.RESTAMP_THEN_COPY,
                    ok=False,
                )
            if outcome.counts.get("applied"):
                action = {
                    RepairKind.COPY: "copied",
                    RepairKind.DELETE: "deleted",
                    RepairKind.RESTAMP_THEN_COPY: "restamped and copied",
                }[plan.kind]
                source, target = self.specs[winner].name, self.specs[loser].name
                detail = (
                    f"deleted in {target} (tombstone of {source} at {record.version})"
                    if plan.kind is RepairKind.DELETE
                    else f"{source} -> {target} at {record.version}"
                )
                return KeyRepair(
                    key,
                    f"{action}: {detail}",
                    changed=True,
                    ok=True,
                    written_to=target,
                    version=str(record.version),
                )
            last = f"{self.specs[loser].name} discarded the write (changed during the repair)"
        return KeyRepair(key, f"not repaired: {last}", changed=False, ok=False)

    def next_version(self, winner: Side, a: SideState, b: SideState) -> Version:
        config = self.appliers[winner].config
        now = clock_stamp(self.clock(), config.timestamp_unit)
        return next_version_above(
            highest(a.claim, b.claim), now, config.local_region_name, config.timestamp_unit
        )

    def wire(self, side: Side, key: Item, version: Version, item: Item | None) -> WireRecord:
        config = self.appliers[side].config
        return WireRecord(
            source=config.local_region_name,
            key=extract_key(item_to_wire(key), config.key_schema),
            version=version,
            item=item_to_wire(item) if item is not None else None,
            created_ms=0,
            sent_ms=int(self.clock() * 1000),
        )


def divergent_keys(comparison: Comparison) -> list[Item]:
    return [*comparison.missing_in_a, *comparison.missing_in_b, *comparison.different]


def repair_divergence(
    manifest: PairManifest,
    comparison: Comparison,
    *,
    sessions: dict[str, RegionSession] | None = None,
    prefer: Side = Side.A,
) -> RepairReport:
    """Repair every key `verify` found divergent; see the module docstring."""
    report = RepairReport()
    keys = divergent_keys(comparison)
    if not keys:
        return report
    repairer = PairRepairer(manifest, sessions, prefer=prefer)
    for key in keys:
        report.keys.append(repairer.repair_key(key))
    return report
