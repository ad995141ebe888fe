"""Sender: a batch of the local table's stream records -> the peer region's Kinesis stream.

Per record (see `decisions`): new local versions are sent and max-merged into the ledger; the
applier's own writes (echoes) and the replicator's own deletes are dropped; everything without a
trustworthy stamp is re-stamped in place (its own stream record is sent later); a local delete
(application or TTL expiry, treated alike) becomes a tombstone above everything the region held.
Transient failures return `batchItemFailures` from the earliest record not done, so nothing behind
is skipped; poison records go to our dead-letter queue and block nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3

from . import stats
from .codec import (
    AttributeMap,
    PoisonRecordError,
    WireRecord,
    canonical_key,
    content_digest,
    encode_record,
    extract_key,
    item_to_boto3,
    item_to_wire,
    partition_key,
)
from .config import FEDERATION_MODE, HandlerConfig
from .dead_letters import DeadLetter, DeadLetterQueue
from .decisions import (
    ChangeAction,
    LedgerEntry,
    RemoveAction,
    decide_change,
    decide_remove,
    displaced_by_applier,
    enforces_tombstone,
    ledger_after_send,
    ledger_after_tombstone,
    removed_marker,
)
from .errors import cancellation_codes, error_code, is_condition_failure, is_poison
from .federation import FederatedCredentials
from .ledger import Ledger, LedgerState
from .peer import MAX_BYTES_PER_RECORD, CredentialSource, OutgoingRecord, PeerCredentials, PeerKinesis
from .runtime import aws_config
from .tables import Expression, item_state_condition
from .versions import (
    Version,
    clock_stamp,
    format_timestamp,
    highest,
    next_version_above,
    version_from_attributes,
)

log = logging.getLogger(__name__)
_MAX_CONFLICT_ROUNDS = 6
MAX_LEDGER_WRITES_PER_TRANSACTION = 100  # DynamoDB allows 100 items per transaction


class StreamViewError(RuntimeError):
    """The table's stream does not carry NEW_AND_OLD_IMAGES: a deployment error, never poison."""


class TransientError(RuntimeError):
    """Retry the batch from this record on (after Lambda's own backoff)."""


@dataclass(frozen=True)
class StreamChange:
    index: int
    sequence_number: str
    event_name: str
    key: AttributeMap  # wire form
    ckey: str
    new: AttributeMap | None
    old: AttributeMap | None
    created_ms: int


def parse_stream_record(index: int, record: dict[str, Any], config: HandlerConfig) -> StreamChange:
    body = record.get("dynamodb")
    if not isinstance(body, dict):
        raise PoisonRecordError("stream record without a dynamodb body")
    event_name = record.get("eventName")
    if event_name not in ("INSERT", "MODIFY", "REMOVE"):
        raise PoisonRecordError(f"unknown eventName {event_name!r}")
    key = extract_key(body.get("Keys") or {}, config.key_schema)
    new, old = body.get("NewImage"), body.get("OldImage")
    if event_name == "REMOVE" and old is None:
        raise StreamViewError("REMOVE without OldImage: the stream must be NEW_AND_OLD_IMAGES")
    if event_name != "REMOVE" and new is None:
        raise StreamViewError(f"{event_name} without NewImage: the stream must be NEW_AND_OLD_IMAGES")
    for image in (new, old):
        if image is not None:
            item_to_boto3(image)  # validates every value (base64, numbers, shapes)
    created = body.get("ApproximateCreationDateTime", 0)
    created_ms = int(Decimal(str(created)) * 1000) if created else 0
    return StreamChange(
        index=index,
        sequence_number=str(body.get("SequenceNumber", "")),
        event_name=event_name,
        key=key,
        ckey=canonical_key(key, config.key_schema),
        new=new,
        old=old,
        created_ms=created_ms,
    )


class Sender:
    def __init__(
        self,
        config: HandlerConfig,
        dynamodb: Any,
        sqs: Any,
        peer: PeerKinesis,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.dynamodb = dynamodb
        self.peer = peer
        self.clock = clock
        self.ledger = Ledger(dynamodb, config.ledger_table, config.tombstone_retention_seconds)
        self.dead_letters = DeadLetterQueue(
            sqs,
            config.dead_letter_queue_url,
            pair=config.pair,
            region=config.local_region_name,
            handler="sender",
            source=config.local_region_name,
        )
        self.hash_key = config.key_names[0]

    # --- one invocation ---------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        records = event.get("Records") or []
        run = _Batch(self, records)
        return run.execute()

    # --- helpers used by a batch ------------------------------------------------------------

    def now(self) -> tuple[Decimal, int]:
        reading = self.clock()
        return clock_stamp(reading, self.config.timestamp_unit), int(reading)

    def version_of(self, image: AttributeMap | None) -> Version | None:
        if image is None:
            return None
        return version_from_attributes(
            image.get(self.config.timestamp_attribute), image.get(self.config.origin_attribute)
        )

    def wire(self, change: StreamChange, version: Version, item: AttributeMap | None) -> OutgoingRecord:
        record = WireRecord(
            source=self.config.local_region_name,
            key=change.key,
            version=version,
            item=item,
            created_ms=change.created_ms,
            sent_ms=int(self.clock() * 1000),
        )
        data = encode_record(record)
        pk = partition_key(change.ckey)
        if len(data) + len(pk) > MAX_BYTES_PER_RECORD:
            raise PoisonRecordError(f"record of {len(data)} bytes exceeds the Kinesis record limit")
        return OutgoingRecord(change.index, data, pk)


class _Batch:
    """State of one invocation: in-memory ledger entries ahead of what is persisted."""

    def __init__(self, sender: Sender, records: list[dict[str, Any]]) -> None:
        self.sender = sender
        self.config = sender.config
        self.records = records
        self.persisted: dict[str, LedgerState] = {}
        self.entries: dict[str, Any] = {}
        self.merge_first_index: dict[str, int] = {}
        self.sends: dict[str, list[tuple[StreamChange, Version]]] = {}  # per key, this batch
        self.outgoing: list[OutgoingRecord] = []
        self.letters: list[DeadLetter] = []
        self.outcome: dict[int, str] = {}

    def execute(self) -> dict[str, Any]:
        changes: list[StreamChange] = []
        for index, record in enumerate(self.records):
            try:
                changes.append(parse_stream_record(index, record, self.config))
            except PoisonRecordError as error:
                self.letters.append(DeadLetter(index, "malformed stream record", str(error), record))
                self.outcome[index] = "dead_lettered"
        if changes:
            states = self.sender.ledger.read_many(sorted({c.ckey for c in changes}))
            self.persisted.update(states)
            self.entries.update({key: state.entry for key, state in states.items()})

        failure: int | None = None
        for change in changes:
            try:
                self.process(change)
            except PoisonRecordError as error:
                self.letters.append(
                    DeadLetter(change.index, "cannot replicate", str(error), self.records[change.index])
                )
                self.outcome[change.index] = "dead_lettered"
            except Exception as error:
                if not is_poison(error):
                    log.warning("record %d: transient failure %s", change.index, error_code(error))
                    failure = change.index
                    break
                self.letters.append(
                    DeadLetter(change.index, "rejected by DynamoDB", str(error), self.records[change.index])
                )
                self.outcome[change.index] = "dead_lettered"

        try:
            self.flush_merges(failure)
        except Exception as error:
            log.warning("ledger merge failed: %s", error_code(error))
            unsaved = [
                first for first in self.merge_first_index.values() if failure is None or first < failure
            ]
            if unsaved:
                failure = min(unsaved) if failure is None else min(failure, *unsaved)

        deliverable = [r for r in self.outgoing if failure is None or r.index < failure]
        undelivered = self.sender.peer.put_records(deliverable)
        if undelivered is not None:
            failure = undelivered if failure is None else min(failure, undelivered)

        for letter in sorted(self.letters, key=lambda item: item.index):
            if failure is not None and letter.index >= failure:
                break
            try:
                self.sender.dead_letters.send(letter)
            except Exception as error:
                log.warning("dead-letter send failed: %s", error_code(error))
                failure = letter.index
                break

        self.record_stats(failure)
        if failure is None:
            return {"batchItemFailures": []}
        sequence = self.records[failure].get("dynamodb", {}).get("SequenceNumber", "")
        return {"batchItemFailures": [{"itemIdentifier": sequence}]}

    def record_stats(self, failure: int | None) -> None:
        counted = Counter(
            outcome for index, outcome in self.outcome.items() if failure is None or index < failure
        )
        received = len(self.records) if failure is None else failure
        if not received:
            return
        counters = {"received": received, **{name: counted.get(name, 0) for name in _SENDER_OUTCOMES}}
        counters["cnt"] = counters["sent"]
        try:
            stats.record_batch(
                self.sender.dynamodb,
                self.config.stats_table,
                stats.SENDER_ITEM,
                counters,
                {"last_batch_at": int(self.sender.clock() * 1000), "target": self.config.peer_region_name},
            )
        except Exception as error:  # observability must never block replication
            log.warning("stats update failed: %s", error_code(error))

    # --- per record -------------------------------------------------------------------------

    def process(self, change: StreamChange) -> None:
        if change.event_name == "REMOVE":
            self.process_remove(change)
        else:
            self.process_change(change)

    def process_change(self, change: StreamChange) -> None:
        assert change.new is not None
        sender, config = self.sender, self.config
        now, epoch = sender.now()
        new_version = sender.version_of(change.new)
        digest = content_digest(change.new)
        decision = decide_change(
            new_version,
            digest,
            sender.version_of(change.old),
            self.entries.get(change.ckey),
            local=config.local_region_name,
            now=now,
            unit=config.timestamp_unit,
        )
        if decision.action is ChangeAction.DROP_ECHO:
            self.outcome[change.index] = "loops_dropped"
        elif decision.action is ChangeAction.RESTAMP:
            self.outcome[change.index] = (
                "restamped" if self.restamp(change, new_version, decision.version) else "skipped"
            )
        else:
            outgoing = sender.wire(change, decision.version, change.new)
            merged = ledger_after_send(self.entries.get(change.ckey), decision.version, digest, epoch)
            if merged is not None:
                self.entries[change.ckey] = merged
                self.merge_first_index.setdefault(change.ckey, change.index)
            self.outgoing.append(outgoing)
            self.sends.setdefault(change.ckey, []).append((change, decision.version))
            self.outcome[change.index] = "sent"

    def restamp(self, change: StreamChange, seen: Version | None, stamp: Version) -> bool:
        """Write a fresh stamp only if the item still holds exactly the stamp this record saw.

        If it does not, and it now holds the applier's put that displaced this pending write (see
        `displaced_by_applier`), the record's own content is written back with the fresh stamp."""
        try:
            self.write_stamped(change, seen, stamp, content=None)
            return True
        except Exception as error:
            if not is_condition_failure(error):
                raise
        found = self.sender.dynamodb.get_item(
            TableName=self.config.table_name, Key=item_to_boto3(change.key), ConsistentRead=True
        ).get("Item")
        if found is None:
            return False
        current = item_to_wire(found)
        current_version = self.sender.version_of(current)
        if not displaced_by_applier(current_version, content_digest(current), self.entries.get(change.ckey)):
            return False  # the item changed again: a later record carries its state
        assert change.new is not None
        try:
            self.write_stamped(change, current_version, stamp, content=change.new)
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def write_stamped(
        self, change: StreamChange, expected: Version | None, stamp: Version, content: AttributeMap | None
    ) -> None:
        """Set the item's stamps to `stamp` (or put `content` with them), if its stamps are still
        exactly `expected`."""
        config = self.config
        expr = Expression("r")
        condition = item_state_condition(
            expr,
            self.sender.hash_key,
            present=True,
            version=expected,
            timestamp_attribute=config.timestamp_attribute,
            origin_attribute=config.origin_attribute,
        )
        ts_typed = {"N": format_timestamp(stamp.timestamp)}
        origin_typed = {"S": stamp.origin}
        if content is not None:
            item = {
                **item_to_boto3(content),
                config.timestamp_attribute: ts_typed,
                config.origin_attribute: origin_typed,
            }
            self.sender.dynamodb.put_item(
                **expr.apply({"TableName": config.table_name, "Item": item}, condition)
            )
            return
        ts_name, origin_name = expr.name(config.timestamp_attribute), expr.name(config.origin_attribute)
        update = f"SET {ts_name} = {expr.value(ts_typed)}, {origin_name} = {expr.value(origin_typed)}"
        request = expr.apply(
            {"TableName": config.table_name, "Key": item_to_boto3(change.key), "UpdateExpression": update},
            condition,
        )
        self.sender.dynamodb.update_item(**request)

    def flush_merges(self, failure: int | None) -> None:
        """Persist every pending max-merge (of records before `failure`), up to
        MAX_LEDGER_WRITES_PER_TRANSACTION keys per TransactWriteItems: one round trip per chunk, not
        one PutItem per key (that dominated the sender's time under load). Keys whose entry changed
        since it was read are re-read, merged again and retried."""
        keys = [k for k, first in self.merge_first_index.items() if failure is None or first < failure]
        epoch = int(self.sender.clock())
        for _ in range(_MAX_CONFLICT_ROUNDS):
            writes = []
            for ckey in keys:
                target, base = self.entries.get(ckey), self.persisted.get(ckey, LedgerState(None, None))
                if target is None or target == base.entry:
                    self.merge_first_index.pop(ckey, None)
                else:
                    writes.append(ckey)
            if not writes:
                return
            lost: list[str] = []
            for start in range(0, len(writes), MAX_LEDGER_WRITES_PER_TRANSACTION):
                lost.extend(
                    self.write_ledger_chunk(writes[start : start + MAX_LEDGER_WRITES_PER_TRANSACTION], epoch)
                )
            if lost:
                fresh = self.sender.ledger.read_many(lost)
                for ckey in lost:
                    target = self.entries[ckey]
                    self.persisted[ckey] = fresh[ckey]
                    assert target is not None and target.digest is not None
                    merged = ledger_after_send(fresh[ckey].entry, target.version, target.digest, epoch)
                    self.entries[ckey] = merged if merged is not None else fresh[ckey].entry
                    if merged is None:
                        self.demote_sends(ckey, fresh[ckey].entry, target.version)
            keys = [k for k in writes if k in self.merge_first_index]
        raise TransientError(f"ledger entries kept changing: {len(keys)} keys")

    def write_ledger_chunk(self, chunk: list[str], epoch: int) -> list[str]:
        """Write the merged entries of `chunk` at once; returns the keys whose entry changed since
        it was read (nothing of a cancelled transaction is written: the others are retried)."""
        ledger = self.sender.ledger
        bases = {ckey: self.persisted.get(ckey, LedgerState(None, None)) for ckey in chunk}
        if len(chunk) == 1:
            (ckey,) = chunk
            written = ledger.write(ckey, self.entries[ckey], bases[ckey], epoch)
            if written is None:
                return [ckey]
            self.persisted[ckey] = written
            self.merge_first_index.pop(ckey, None)
            return []
        puts = [{"Put": ledger.put_request(ckey, self.entries[ckey], bases[ckey], epoch)} for ckey in chunk]
        try:
            self.sender.dynamodb.transact_write_items(TransactItems=puts)
        except Exception as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            codes = cancellation_codes(error)
            if not codes or any(
                c not in ("None", "ConditionalCheckFailed", "TransactionConflict") for c in codes
            ):
                raise
            return [
                ckey for ckey, code in zip(chunk, codes, strict=False) if code == "ConditionalCheckFailed"
            ]
        for ckey in chunk:
            self.persisted[ckey] = LedgerState(self.entries[ckey], (bases[ckey].rev or 0) + 1)
            self.merge_first_index.pop(ckey, None)
        return []

    def demote_sends(self, ckey: str, fresh: LedgerEntry | None, target: Version) -> None:
        """The ledger went above this batch's versions of `ckey` before they were merged (the
        applier discarded a peer version for them and raised it). Sent as is they would lose at
        the peer while this region keeps them, so they are re-stamped above instead (only if the
        item still holds that stamp; a later stream record carries anything newer)."""
        if fresh is None or fresh.version == target:
            return
        sends = self.sends.pop(ckey, [])
        dropped = {change.index for change, _ in sends}
        self.outgoing = [record for record in self.outgoing if record.index not in dropped]
        now, _ = self.sender.now()
        for change, version in sends:
            stamp = next_version_above(
                highest(fresh.version, version),
                now,
                self.config.local_region_name,
                self.config.timestamp_unit,
            )
            self.outcome[change.index] = "restamped" if self.restamp(change, version, stamp) else "skipped"

    def flush_merge(self, ckey: str) -> None:
        """Persist the in-memory max-merge of sent versions; on a lost race, merge again."""
        epoch = int(self.sender.clock())
        for _ in range(_MAX_CONFLICT_ROUNDS):
            target, base = self.entries.get(ckey), self.persisted.get(ckey, LedgerState(None, None))
            if target is None or target == base.entry:
                self.merge_first_index.pop(ckey, None)
                return
            written = self.sender.ledger.write(ckey, target, base, epoch)
            if written is not None:
                self.persisted[ckey] = written
                self.merge_first_index.pop(ckey, None)
                return
            fresh = self.sender.ledger.read(ckey)
            self.persisted[ckey] = fresh
            assert target.digest is not None
            merged = ledger_after_send(fresh.entry, target.version, target.digest, epoch)
            self.entries[ckey] = merged if merged is not None else fresh.entry
            if merged is None:
                self.demote_sends(ckey, fresh.entry, target.version)
        raise TransientError(f"ledger entry {ckey} kept changing")

    def process_remove(self, change: StreamChange) -> None:
        assert change.old is not None
        sender, config = self.sender, self.config
        if change.ckey in self.merge_first_index:
            self.flush_merge(change.ckey)
        old_version = sender.version_of(change.old)
        marker = removed_marker(old_version, content_digest(change.old))
        for _ in range(_MAX_CONFLICT_ROUNDS):
            now, epoch = sender.now()
            entry = self.entries.get(change.ckey)
            decision = decide_remove(
                old_version,
                marker,
                entry,
                local=config.local_region_name,
                now=now,
                unit=config.timestamp_unit,
            )
            if decision.action in (RemoveAction.DROP_REPLICATOR_DELETE, RemoveAction.DROP_COVERED):
                self.outcome[change.index] = "loops_dropped"
                return
            assert decision.version is not None
            if decision.action is RemoveAction.RESEND_TOMBSTONE:
                self.outgoing.append(sender.wire(change, decision.version, None))
                self.outcome[change.index] = "sent"
                return
            if self.write_tombstone(change, decision.version, entry, epoch):
                self.outgoing.append(sender.wire(change, decision.version, None))
                self.outcome[change.index] = "tombstones"
                return
            fresh = sender.ledger.read(change.ckey)
            self.persisted[change.ckey] = fresh
            self.entries[change.ckey] = fresh.entry
        raise TransientError(f"ledger entry {change.ckey} kept changing")

    def write_tombstone(self, change: StreamChange, tombstone: Version, entry: Any, epoch: int) -> bool:
        """Ledger tombstone, plus the delete of an older peer version applied in the meantime, in
        one transaction conditioned on the states read. False when either changed."""
        sender, config = self.sender, self.config
        key = item_to_boto3(change.key)
        response = sender.dynamodb.get_item(TableName=config.table_name, Key=key, ConsistentRead=True)
        item = response.get("Item")
        present = item_to_wire(item) if item is not None else None
        present_version = sender.version_of(present)
        present_digest = content_digest(present) if present is not None else None
        enforce = enforces_tombstone(present_version, present_digest, entry, config.peer_region_name)
        deleted_marker = removed_marker(present_version, present_digest or "") if enforce else None
        new_entry = ledger_after_tombstone(entry, tombstone, deleted_marker, epoch)
        base = self.persisted.get(change.ckey, LedgerState(None, None))
        put = sender.ledger.put_request(change.ckey, new_entry, base, epoch)
        try:
            if enforce:
                expr = Expression("d")
                condition = item_state_condition(
                    expr,
                    sender.hash_key,
                    present=True,
                    version=present_version,
                    timestamp_attribute=config.timestamp_attribute,
                    origin_attribute=config.origin_attribute,
                )
                delete = expr.apply({"TableName": config.table_name, "Key": key}, condition)
                sender.dynamodb.transact_write_items(TransactItems=[{"Put": put}, {"Delete": delete}])
            else:
                sender.dynamodb.put_item(**put)
        except Exception as error:
            if is_condition_failure(error) or error_code(error) == "TransactionCanceledException":
                codes = cancellation_codes(error)
                if codes and any(code not in ("None", "ConditionalCheckFailed") for code in codes):
                    raise
                return False
            raise
        self.persisted[change.ckey] = LedgerState(new_entry, (base.rev or 0) + 1)
        self.entries[change.ckey] = new_entry
        return True


_SENDER_OUTCOMES = ("sent", "loops_dropped", "restamped", "skipped", "tombstones", "dead_lettered")


_runtime: dict[str, Sender] = {}


def _build() -> Sender:
    config = HandlerConfig.from_environment()
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb", region_name=config.local_region, config=aws_config())
    sqs = session.client("sqs", region_name=config.local_region, config=aws_config())
    credentials: CredentialSource | None = None
    if config.peer_credentials_mode == FEDERATION_MODE:
        credentials = FederatedCredentials(config, session.client)
    elif config.peer_access_key_parameter and config.peer_secret_key_parameter:
        ssm = session.client("ssm", region_name=config.local_region, config=aws_config())
        credentials = PeerCredentials(
            ssm,
            config.peer_access_key_parameter,
            config.peer_secret_key_parameter,
            config.credentials_ttl_seconds,
        )
    # The local session's client factory: a second boto3 session would parse the models again
    # (+0.14 s CPU and +7 MiB per cold start, docs/bench/profiling.md).
    peer = PeerKinesis(config, session.client, credentials)
    return Sender(config, dynamodb, sqs, peer)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: `ddbbridge_lambdas.sender.handler`."""
    if "sender" not in _runtime:
        _runtime["sender"] = _build()
    return _runtime["sender"].handle(event)
