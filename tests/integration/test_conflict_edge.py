"""The conflict rules at the AWS edge: the REAL sender and applier handlers, in this process, against
the emulated regions, driven by a seeded random sequence of application writes and deliveries.

A pure model cannot catch a condition expression that DynamoDB evaluates differently from what its
author meant (number text, attribute_type, a composite or binary key, the stamp a skewed clock
lowered). Here every decision is written with the handlers' own expressions to moto over HTTP.

Setup: a pair reconciled by `ddbbridge reconcile` (so the handlers run with the DDBBRIDGE_CONFIG
that reconcile deployed), no runner: this test owns delivery. Stream records are read through the
emulator's DynamoDB Streams and Kinesis APIs and turned into Lambda events by the runner's event
builders, then handed to `ddbbridge_lambdas.sender.handler` / `.applier.handler`:
- application writes in both regions on a small key pool: stamped puts (clock, +-5 s skew, one
  timestamp shared by both regions), unstamped puts, UpdateItems that leave the old stamp (maybe
  the peer's) in place, stamps of the wrong type or claiming the peer, deletes, re-inserts;
- sender deliveries in stream order with random batch sizes, sometimes delivered twice;
- applier deliveries in order, shuffled (reordered within and across keys), and with late
  duplicates of records applied long ago;
- then a drain. Checks: both tables hold identical items (byte for byte); no write or delete that
  a region had SEEN before its own later write or delete survives it (so no delete is undone by an
  older version and no update is lost to an older one); the stats equations hold and match the
  deliveries made; nothing was dead-lettered.

Convergence and the stats are asserted strictly. The two tests at the end replay, explicitly, two
conflict-core bugs the causality check found and that are fixed (a peer version put over an unsent
local write and later re-stamped as local content; a tombstone enforcement deleting a later
application write); the third replays the no-ledger-entry case (a peer version put over a pending
first write of a key, which the sender writes back).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from botocore.credentials import Credentials

from ddbbridge_dev.runner.events import StreamRecord
from ddbbridge_dev.runner.sources import DynamoStreamSource, KinesisSource, Position, StreamSource
from ddbbridge_lambdas import applier, sender
from ddbbridge_lambdas.versions import TimestampUnit, clock_stamp, format_timestamp
from tests.fixtures.regions import CREDENTIALS, Regions
from tests.integration.replication_support import (
    PEER,
    SIDES,
    Pair,
    applier_equation,
    create_pair,
    ddbbridge,
    sender_equation,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

STEPS = 40
KEYS_PER_RUN = 3
SKEW_SECONDS = 5.0
MAX_BATCH = 6

# Two pairs, so the expressions meet both timestamp units and both key shapes:
# seconds with a fraction (the seed's Decimal(time.time())), default stamp names, hash + range key;
# milliseconds, custom stamp names, a BINARY hash key (base64 in events, bytes in requests).
SHAPES: dict[str, dict[str, Any]] = {
    "seconds-composite": {
        "keys": (("tenant", "S"), ("seq", "N")),
        "unit": "seconds",
        "replication": {"timestampUnit": "seconds"},
    },
    "millis-binary": {
        "keys": (("id", "B"),),
        "unit": "milliseconds",
        "replication": {
            "originAttribute": "origin",
            "timestampAttribute": "stamped_at",
            "timestampUnit": "milliseconds",
        },
    },
}
RUNS = [(shape, seed) for shape in SHAPES for seed in (1, 2, 3)]


# --- the handlers, in process, with their deployed environment ---------------------------------


class DeployedHandler:
    """One function's handler module run here with the environment the reconcile deployed (plus
    what Lambda's runtime adds: its own region and endpoint), one warm instance per function."""

    def __init__(self, pair: Pair, side: str, kind: str) -> None:
        names = pair.names(side)
        function = names.sender_function if kind == "sender" else names.applier_function
        region = pair.region(side)
        self.kind = kind
        self.module: ModuleType = sender if kind == "sender" else applier
        self.environment = {
            **pair.deployed_environment(side, function),
            "AWS_ENDPOINT_URL": region.local,
            "AWS_REGION": region.name,
            "AWS_DEFAULT_REGION": region.name,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
        }
        self.context = SimpleNamespace(
            function_name=function, get_remaining_time_in_millis=lambda: 60_000, aws_request_id=""
        )
        self.instance: Any = None

    def invoke(self, records: list[StreamRecord]) -> int:
        """Deliver one batch; returns how many records (from the front) the handler completed."""
        runtime: dict[str, Any] = self.module._runtime
        with mock.patch.dict(os.environ, self.environment):
            runtime.clear()
            if self.instance is not None:
                runtime[self.kind] = self.instance
            self.context.aws_request_id = str(uuid.uuid4())
            result = self.module.handler({"Records": [r.event_record for r in records]}, self.context)
            self.instance = runtime.pop(self.kind)
        failures = result["batchItemFailures"]
        if not failures:
            return len(records)
        failed = failures[0]["itemIdentifier"]
        return next(i for i, r in enumerate(records) if r.sequence_text == failed)


class Cursor:
    """Follows every shard of a stream from the trim horizon, like a poller."""

    def __init__(self, source: StreamSource) -> None:
        self.source = source
        self.iterators: dict[str, str] = {}

    def poll(self) -> list[StreamRecord]:
        found: list[StreamRecord] = []
        for shard in self.source.list_shards():
            iterator = self.iterators.get(shard.shard_id) or self.source.open(
                shard.shard_id, Position("TRIM_HORIZON")
            )
            while iterator:
                page = self.source.read(shard.shard_id, iterator, self.source.max_page)
                found += page.records
                iterator = page.next_iterator or iterator
                if not page.records:
                    break
            self.iterators[shard.shard_id] = iterator
        return found


@dataclass
class Side:
    name: str
    sender: DeployedHandler
    applier: DeployedHandler
    stream: Cursor  # the user table's DynamoDB stream
    inbound: Cursor  # this side's Kinesis stream, fed by the peer's sender
    pending_stream: list[StreamRecord] = field(default_factory=list)
    pending_inbound: list[StreamRecord] = field(default_factory=list)
    applied_inbound: list[StreamRecord] = field(default_factory=list)
    sender_received: int = 0
    applier_received: int = 0

    def refresh(self) -> None:
        self.pending_stream += self.stream.poll()
        self.pending_inbound += self.inbound.poll()


@dataclass
class Harness:
    pair: Pair
    unit: TimestampUnit
    sides: dict[str, Side]
    log: list[str] = field(default_factory=list)

    # sender: stream order always (Lambda's per-shard order), random batch sizes, duplicates
    def send(self, side: Side, size: int, again: bool) -> None:
        side.refresh()
        batch = side.pending_stream[:size]
        if not batch:
            return
        done = side.sender.invoke(batch)
        side.sender_received += done
        side.pending_stream[: len(batch)] = batch[done:]
        self.log.append(f"send {side.name} {len(batch)} -> {done}")
        if again and done:  # at-least-once: the same records once more (a retried invocation)
            repeat = side.sender.invoke(batch[:done])
            side.sender_received += repeat
            side.pending_stream[:0] = batch[repeat:done]
            self.log.append(f"send {side.name} again {done} -> {repeat}")

    # applier: in order, reordered, or with late duplicates of records applied long ago
    def apply(self, side: Side, rng: random.Random, mode: str, size: int) -> None:
        side.refresh()
        if not side.pending_inbound:
            return
        if mode == "shuffled":
            fresh = rng.sample(side.pending_inbound, min(size, len(side.pending_inbound)))
        else:
            fresh = side.pending_inbound[:size]
        batch = list(fresh)
        if mode == "duplicates" and side.applied_inbound:
            for old in rng.sample(side.applied_inbound, min(2, len(side.applied_inbound))):
                batch.insert(rng.randrange(len(batch) + 1), old)
        done = side.applier.invoke(batch)
        side.applier_received += done
        finished = {r.sequence_text for r in batch[:done]}
        side.pending_inbound = [r for r in side.pending_inbound if r.sequence_text not in finished]
        side.applied_inbound += [r for r in batch[:done] if r in fresh]
        self.log.append(f"apply {side.name} {mode} {len(batch)} -> {done}")

    def drain_side(self, name: str, *, sender_only: bool = False, applier_only: bool = False) -> None:
        """Deliver everything pending on one side, to its sender or to its applier only."""
        side = self.sides[name]
        side.refresh()
        while not applier_only and side.pending_stream:
            self.send(side, 10, again=False)
        while not sender_only and side.pending_inbound:
            self.apply(side, random.Random(0), "in-order", 10)

    def drain(self) -> None:
        for _ in range(60):
            moved = False
            for side in self.sides.values():
                side.refresh()
                while side.pending_stream:
                    moved = True
                    self.send(side, 10, again=False)
            for side in self.sides.values():
                side.refresh()
                while side.pending_inbound:
                    moved = True
                    self.apply(side, random.Random(0), "in-order", 10)
            if not moved:
                return
        raise AssertionError("the pipeline did not drain in 60 rounds:\n" + "\n".join(self.log[-40:]))


def make_harness(pair: Pair, unit: TimestampUnit) -> Harness:
    credentials = Credentials(CREDENTIALS["aws_access_key_id"], CREDENTIALS["aws_secret_access_key"])
    sides = {}
    for side in SIDES:
        region = pair.region(side)
        table = pair.client(side, "dynamodb").describe_table(TableName=pair.tables[side])["Table"]
        kinesis = pair.client(side, "kinesis").describe_stream_summary(
            StreamName=pair.names(side).inbound_stream
        )["StreamDescriptionSummary"]
        sides[side] = Side(
            side,
            DeployedHandler(pair, side, "sender"),
            DeployedHandler(pair, side, "applier"),
            Cursor(DynamoStreamSource(table["LatestStreamArn"], region.name, region.local, credentials)),
            Cursor(
                KinesisSource(kinesis["StreamARN"], region.name, region.local, credentials, "arn:test:role")
            ),
        )
    return Harness(pair, unit, sides)


@pytest.fixture(scope="module")
def harnesses(regions: Regions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Harness]]:
    folder = tmp_path_factory.mktemp("conflict-edge")
    built: dict[str, Harness] = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in regions.env().items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        for shape, settings in SHAPES.items():
            pair = create_pair(regions, folder, "ce", settings["keys"], settings["replication"])
            run = ddbbridge("reconcile", "-f", str(pair.path))
            assert run.code == 0, run.out + run.err
            built[shape] = make_harness(pair, settings["unit"])
    yield built


# --- application writes and what each region has seen -----------------------------------------


@dataclass
class History:
    """Causality per key, as far as the test can observe it.

    Every application write or delete gets an event id (`w...` is stored in the item's `w`
    attribute, `d...` is a delete). `seen[side][key]` holds the ids whose effect that side has
    observed, transitively: its own events, and every write whose content it held (read after
    every step), with that write's own past. An event's past is what its side had seen when it
    happened. A final state in some event's past lost to something that had seen it: forbidden.
    """

    seen: dict[str, dict[str, set[str]]] = field(default_factory=lambda: {s: {} for s in SIDES})
    past: dict[str, frozenset[str]] = field(default_factory=dict)
    events: dict[str, list[str]] = field(default_factory=dict)  # key -> event ids
    counter: int = 0

    def new_event(self, side: str, key: str, kind: str) -> str:
        self.counter += 1
        event = f"{kind}{self.counter}"
        mine = self.seen[side].setdefault(key, set())
        self.past[event] = frozenset(mine)
        mine.add(event)
        self.events.setdefault(key, []).append(event)
        return event

    def observe(self, side: str, key: str, write_id: str) -> None:
        mine = self.seen[side].setdefault(key, set())
        if write_id not in mine:
            mine.add(write_id)
            mine.update(self.past.get(write_id, ()))

    def dominated(self, key: str) -> set[str]:
        """Events of `key` some later event (on either side) had seen."""
        found: set[str] = set()
        for event in self.events.get(key, []):
            found |= self.past[event]
        return found


def random_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "B", "SS", "NS", "BS", "NULL", "BOOL"] + (["M", "L"] if depth < 2 else [])
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": rng.choice(["", "héllo", "x" * rng.randrange(1, 20)])} if depth else {"S": "text"}
    if kind == "N":
        return {"N": rng.choice(["0", "-1.5", "1E+3", str(rng.randrange(10**12))])}
    if kind == "B":
        return {"B": bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))}
    if kind == "SS":
        return {"SS": sorted({f"s{rng.randrange(9)}" for _ in range(3)})}
    if kind == "NS":
        return {"NS": sorted({str(rng.randrange(100)) for _ in range(3)})}
    if kind == "BS":
        return {"BS": list({bytes([rng.randrange(256), 0, 255]) for _ in range(3)})}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "M":
        return {"M": {f"m{i}": random_value(rng, depth + 1) for i in range(rng.randrange(0, 3))}}
    return {"L": [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 3))]}


@dataclass
class Application:
    """Writes like application servers in both regions would, with their own (skewed) clocks."""

    harness: Harness
    rng: random.Random
    history: History
    keys: dict[str, dict[str, Any]]  # label -> DynamoDB key
    shared_stamp: Decimal

    def stamp(self, skew: float = 0.0) -> str:
        unit = self.harness.unit
        text = format_timestamp(clock_stamp(time.time() + skew, unit))
        if unit == "seconds" and self.rng.random() < 0.3:
            text = text[: text.index(".") + 3]  # applications write fewer digits, too
        return text

    def step(self, side: str) -> None:
        pair, rng = self.harness.pair, self.rng
        label = rng.choice(sorted(self.keys))
        key = self.keys[label]
        table, dynamodb = pair.tables[side], pair.client(side, "dynamodb")
        ts_name, origin_name = pair.timestamp_attribute, pair.origin_attribute
        operation = rng.choices(
            ["put", "put-skewed", "put-shared-ts", "put-unstamped", "update-keep-stamp", "update-stamped",
             "put-wrong-type", "put-peer-origin", "delete"],
            weights=[3, 2, 2, 2, 3, 1, 1, 1, 4],
        )[0]  # fmt: skip
        if operation == "delete":
            event = self.history.new_event(side, label, "d")
            dynamodb.delete_item(TableName=table, Key=key)
            self.harness.log.append(f"app {side} delete {label} ({event})")
            return
        event = self.history.new_event(side, label, "w")
        data = random_value(self.rng)
        stamp: dict[str, Any] | None = {ts_name: {"N": self.stamp()}, origin_name: {"S": side}}
        if operation == "put-skewed":
            stamp = {
                ts_name: {"N": self.stamp(rng.choice([-SKEW_SECONDS, SKEW_SECONDS]))},
                origin_name: {"S": side},
            }
        elif operation == "put-shared-ts":  # both regions use this very timestamp: equal stamps
            stamp = {ts_name: {"N": format_timestamp(self.shared_stamp)}, origin_name: {"S": side}}
        elif operation == "put-unstamped":
            stamp = None
        elif operation == "put-wrong-type":
            stamp = {ts_name: {"S": "yesterday"}, origin_name: {"S": side}}
        elif operation == "put-peer-origin":  # copies the peer's name into the stamp
            stamp = {ts_name: {"N": self.stamp()}, origin_name: {"S": PEER[side]}}
        if operation.startswith("update"):
            names = {"#w": "w", "#d": "data"}
            values: dict[str, Any] = {":w": {"S": event}, ":d": data}
            expression = "SET #w = :w, #d = :d"
            if operation == "update-stamped":
                names |= {"#t": ts_name, "#o": origin_name}
                values |= {":t": {"N": self.stamp()}, ":o": {"S": side}}
                expression += ", #t = :t, #o = :o"
            dynamodb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        else:
            item = {**key, "w": {"S": event}, "data": data, **(stamp or {})}
            dynamodb.put_item(TableName=table, Item=item)
        self.harness.log.append(f"app {side} {operation} {label} ({event})")


def observe(harness: Harness, history: History, labels: dict[tuple[Any, ...], str]) -> None:
    """Record what each side holds now (for causality) and a one-line snapshot for the trail."""
    pair = harness.pair
    shown = []
    for side in SIDES:
        held = {labels[key]: item for key, item in pair.scan(side).items() if key in labels}
        for label, item in held.items():
            history.observe(side, label, item["w"]["S"])
        states = []
        for label in sorted(set(labels.values())):
            now = held.get(label)
            if now is None:
                states.append(f"{label}=-")
                continue
            stamp = now.get(pair.timestamp_attribute, {}), now.get(pair.origin_attribute, {})
            states.append(f"{label}={now['w']['S']}@{stamp[0]}/{stamp[1]}")
        shown.append(f"{side}[{' '.join(states)}]")
    harness.log.append("    " + " ".join(shown))


def key_pool(pair: Pair, run: str) -> dict[str, dict[str, Any]]:
    pool: dict[str, dict[str, Any]] = {}
    for n in range(KEYS_PER_RUN):
        if pair.key_names == ("tenant", "seq"):
            pool[f"k{n}"] = {"tenant": {"S": run}, "seq": {"N": str(n)}}
        else:
            pool[f"k{n}"] = {"id": {"B": run.encode() + bytes([0, n, 255])}}
    return pool


@pytest.mark.parametrize(("shape", "seed"), RUNS, ids=[f"{s}-seed{n}" for s, n in RUNS])
def test_random_interleavings_converge_without_undoing_deletes(
    harnesses: dict[str, Harness], shape: str, seed: int
) -> None:
    harness = harnesses[shape]
    harness.log = [f"shape {shape} seed {seed}"]
    pair, rng = harness.pair, random.Random(seed)
    keys = key_pool(pair, f"run{seed}")
    labels = {pair.key_of(key): label for label, key in keys.items()}
    history = History()
    app = Application(harness, rng, history, keys, clock_stamp(time.time(), harness.unit))

    for _ in range(STEPS):
        side = rng.choice(sorted(SIDES))
        roll = rng.random()
        if roll < 0.55:
            app.step(side)
        elif roll < 0.75:
            harness.send(harness.sides[side], rng.randrange(1, MAX_BATCH + 1), again=rng.random() < 0.3)
        else:
            mode = rng.choice(["in-order", "shuffled", "duplicates"])
            harness.apply(harness.sides[side], rng, mode, rng.randrange(1, MAX_BATCH + 1))
        observe(harness, history, labels)
    harness.drain()
    trail = "\n".join(harness.log)

    cn, sg = pair.scan("cn"), pair.scan("sg")
    ours = set(labels)
    cn_items = {k: v for k, v in cn.items() if k in ours}
    sg_items = {k: v for k, v in sg.items() if k in ours}
    assert cn_items == sg_items, f"the regions differ after the drain:\ncn={cn_items}\nsg={sg_items}\n{trail}"

    for side_name, state in harness.sides.items():
        applied_stats = pair.stats(side_name, "replicated_count")
        received, outcomes = applier_equation(applied_stats)
        assert received == outcomes == state.applier_received, (side_name, applied_stats)
        sent_stats = pair.stats(side_name, "sent_count")
        received, outcomes = sender_equation(sent_stats)
        assert received == outcomes == state.sender_received, (side_name, sent_stats)
        assert applied_stats.get("dead_lettered", 0) == sent_stats.get("dead_lettered", 0) == 0
        assert pair.queue_depth(side_name, pair.names(side_name).dead_letter_queue) == 0

    violations = causality_violations(history, labels, cn_items)
    assert not violations, "an older state won over a later one that had seen it:\n" + "\n".join(
        [*violations, trail]
    )


def causality_violations(
    history: History, labels: dict[tuple[Any, ...], str], final_items: dict[tuple[Any, ...], dict[str, Any]]
) -> list[str]:
    found = []
    for key, label in labels.items():
        dominated = history.dominated(label)
        final = final_items.get(key)
        if final is not None:
            winner = final["w"]["S"]
            if winner in dominated:
                found.append(f"{label}: {winner} survives, but a later write or delete had seen it")
        elif history.events.get(label):
            deletes = [e for e in history.events[label] if e.startswith("d")]
            if all(d in dominated for d in deletes):
                found.append(f"{label} is gone, but every delete of it was followed by a write that saw it")
    return found


def stamped(pair: Any, skew: float, side: str) -> dict[str, Any]:
    """The pair's two stamp attributes as an application would write them, `skew` seconds off."""
    now = format_timestamp(clock_stamp(time.time() + skew, "seconds"))
    return {pair.timestamp_attribute: {"N": now}, pair.origin_attribute: {"S": side}}


def test_a_peer_version_applied_over_an_unsent_local_write_does_not_come_back_after_its_delete(
    harnesses: dict[str, Harness],
) -> None:
    """The sequence the random runs found, made explicit. sg holds H (stamped ahead) and then an
    unstamped write U; neither has reached sg's sender yet. cn's version P (older than H) arrives.
    The ledger does not account for U (a local change not yet sent), so P is discarded and the
    ledger raised to it; U is re-stamped above. cn deletes P. U was written after H in sg, so it
    outranks H and P; P must not outlive cn's delete (it used to: put over U, then re-stamped)."""
    harness = harnesses["seconds-composite"]
    harness.log = ["explicit: applied peer version over an unsent local write"]
    pair = harness.pair
    key = {"tenant": {"S": "explicit"}, "seq": {"N": "1"}}
    cn, sg = pair.client("cn", "dynamodb"), pair.client("sg", "dynamodb")

    cn.put_item(TableName=pair.tables["cn"], Item={**key, "w": {"S": "P"}, **stamped(pair, 0, "cn")})
    harness.drain_side("cn", sender_only=True)  # P is on its way to sg
    sg.put_item(
        TableName=pair.tables["sg"], Item={**key, "w": {"S": "H"}, **stamped(pair, SKEW_SECONDS, "sg")}
    )
    sg.put_item(TableName=pair.tables["sg"], Item={**key, "w": {"S": "U"}})
    harness.drain_side("sg", applier_only=True)  # P arrives before sg's sender saw H or U
    assert pair.get("sg", key)["w"]["S"] == "U"  # type: ignore[index]
    cn.delete_item(TableName=pair.tables["cn"], Key=key)
    harness.drain()

    final = {side: pair.get(side, key) for side in SIDES}
    assert final["cn"] == final["sg"], final
    assert final["cn"] is not None and final["cn"]["w"]["S"] == "U", (final, "\n".join(harness.log))


def test_an_application_write_naming_the_peer_after_a_local_delete_survives(
    harnesses: dict[str, Harness],
) -> None:
    """sg sends X, then the application deletes X and writes Y whose stamp names cn (a restore
    from a copy, a read-modify-write that kept the stamp). Y came after the delete in sg: it must
    survive: the sender's tombstone enforcement only deletes exactly the applier's last put."""
    harness = harnesses["seconds-composite"]
    harness.log = ["explicit: application write naming the peer after a local delete"]
    pair = harness.pair
    key = {"tenant": {"S": "explicit"}, "seq": {"N": "2"}}
    sg = pair.client("sg", "dynamodb")

    sg.put_item(TableName=pair.tables["sg"], Item={**key, "w": {"S": "X"}, **stamped(pair, 0, "sg")})
    harness.drain()
    sg.delete_item(TableName=pair.tables["sg"], Key=key)
    sg.put_item(TableName=pair.tables["sg"], Item={**key, "w": {"S": "Y"}, **stamped(pair, -1, "cn")})
    harness.drain()

    final = {side: pair.get(side, key) for side in SIDES}
    assert final["cn"] == final["sg"], final
    assert final["sg"] is not None and final["sg"]["w"]["S"] == "Y", (final, "\n".join(harness.log))


def test_a_peer_version_put_over_a_pending_first_write_is_written_back_not_relabelled(
    harnesses: dict[str, Harness],
) -> None:
    """sg writes H (clock ahead) then L (clock behind) to a key its ledger has never seen; cn's P,
    stamped between them, reaches sg's applier first. With no ledger entry L's own stamp stands for
    itself, so P is put over L. sg's sender then sends H and, re-stamping L, finds P in its place:
    it writes L back above H. L (sg's last write) wins in both regions and P does not outlive
    cn's delete of P (it used to be re-stamped as sg's content)."""
    harness = harnesses["seconds-composite"]
    harness.log = ["explicit: peer version over a pending first write of a key"]
    pair = harness.pair
    key = {"tenant": {"S": "explicit"}, "seq": {"N": "3"}}
    cn, sg = pair.client("cn", "dynamodb"), pair.client("sg", "dynamodb")

    cn.put_item(TableName=pair.tables["cn"], Item={**key, "w": {"S": "P"}, **stamped(pair, 0, "cn")})
    harness.drain_side("cn", sender_only=True)  # P is on its way to sg
    sg.put_item(
        TableName=pair.tables["sg"], Item={**key, "w": {"S": "H"}, **stamped(pair, SKEW_SECONDS, "sg")}
    )
    sg.put_item(
        TableName=pair.tables["sg"], Item={**key, "w": {"S": "L"}, **stamped(pair, -SKEW_SECONDS, "sg")}
    )
    harness.drain_side("sg", applier_only=True)  # P arrives before sg's sender saw H or L
    assert pair.get("sg", key)["w"]["S"] == "P"  # type: ignore[index]
    cn.delete_item(TableName=pair.tables["cn"], Key=key)
    harness.drain()

    final = {side: pair.get(side, key) for side in SIDES}
    assert final["cn"] == final["sg"], final
    assert final["sg"] is not None and final["sg"]["w"]["S"] == "L", (final, "\n".join(harness.log))
