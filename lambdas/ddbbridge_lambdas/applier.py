"""Applier: a batch of the peer's changes from the local Kinesis stream -> the local table.

Decode -> coalesce per key (only the highest version of a key is written) -> consistent reads of
the items and ledger entries -> pure decision per key -> TransactWriteItems of [item write, ledger
write] conditioned on exactly the states read (several keys per transaction; a cancelled one is
re-read and decided again). Poison records are dead-lettered with their payload; transient failures
return `batchItemFailures` from the earliest record whose effect is not durable.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3

from . import stats
from .codec import (
    PoisonRecordError,
    WireRecord,
    canonical_key,
    content_digest,
    decode_record,
    item_to_boto3,
    item_to_wire,
)
from .config import HandlerConfig
from .dead_letters import DeadLetter, DeadLetterQueue
from .decisions import ApplyAction, coalesce, decide_apply, ledger_after_apply, removed_marker
from .errors import cancellation_codes, error_code, is_poison
from .ledger import KEY as LEDGER_KEY
from .ledger import Ledger, LedgerState, entry_from_item
from .runtime import aws_config
from .tables import Expression, batch_get_consistent, item_state_condition
from .versions import Version, version_from_attributes

log = logging.getLogger(__name__)

MAX_KEYS_PER_TRANSACTION = 50  # 2 writes per key, DynamoDB allows 100 per transaction
MAX_TRANSACTION_BYTES = 3_500_000  # DynamoDB allows 4 MB per transaction
_MAX_ROUNDS = 8


@dataclass
class Tally:
    """What happened to each record of one invocation."""

    records: list[dict[str, Any]]
    outcome: dict[int, str]
    letters: list[DeadLetter]
    failed: set[str]


@dataclass
class KeyState:
    item: dict[str, Any] | None  # boto3 form
    ledger: LedgerState


@dataclass
class KeyWork:
    ckey: str
    winner: int
    record: WireRecord
    first_index: int
    solo: bool = False  # write alone (isolates a ValidationException to one key)
    discarded: bool = False  # the write only raises the ledger: the record counts as discarded


class Applier:
    def __init__(
        self, config: HandlerConfig, dynamodb: Any, sqs: Any, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.dynamodb = dynamodb
        self.clock = clock
        # The Lambda yields to local changes its sender has not processed yet; a repair does not.
        self.pending_local_wins = True
        self.ledger = Ledger(dynamodb, config.ledger_table, config.tombstone_retention_seconds)
        self.dead_letters = DeadLetterQueue(
            sqs,
            config.dead_letter_queue_url,
            pair=config.pair,
            region=config.local_region_name,
            handler="applier",
            source=config.peer_region_name,
        )
        self.hash_key = config.key_names[0]

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        records = event.get("Records") or []
        outcome: dict[int, str] = {}
        letters: list[DeadLetter] = []
        decoded: dict[int, tuple[str, WireRecord]] = {}
        for index, record in enumerate(records):
            try:
                wire = self.decode(record)
                decoded[index] = (canonical_key(wire.key, self.config.key_schema), wire)
            except PoisonRecordError as error:
                letters.append(DeadLetter(index, "undecodable or invalid record", str(error), record))
                outcome[index] = "dead_lettered"

        ordered = sorted(decoded)
        groups = coalesce([(decoded[i][0], decoded[i][1].version) for i in ordered])
        work: dict[str, KeyWork] = {}
        for ckey, group in groups.items():
            winner = ordered[group.winner]
            members = [ordered[i] for i in (group.winner, *group.others)]
            for index in members:
                if index != winner:
                    outcome[index] = "coalesced"
            work[ckey] = KeyWork(ckey, winner, decoded[winner][1], min(members))

        failed_keys: set[str] = set()
        tally = Tally(records, outcome, letters, failed_keys)
        try:
            self.apply_all(work, tally)
        except Exception as error:
            if is_poison(error):
                raise
            log.warning("reading current state failed: %s", error_code(error))
            failed_keys.update(k for k in work if work[k].winner not in outcome)

        failure = min((work[k].first_index for k in failed_keys), default=None)
        for letter in sorted(letters, key=lambda item: item.index):
            if failure is not None and letter.index >= failure:
                break
            try:
                self.dead_letters.send(letter)
            except Exception as error:
                log.warning("dead-letter send failed: %s", error_code(error))
                failure = letter.index
                break

        self.record_stats(records, decoded, outcome, failure)
        if failure is None:
            return {"batchItemFailures": []}
        return {"batchItemFailures": [{"itemIdentifier": records[failure]["kinesis"]["sequenceNumber"]}]}

    def decode(self, record: dict[str, Any]) -> WireRecord:
        try:
            data = base64.b64decode(record["kinesis"]["data"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError) as error:
            raise PoisonRecordError(f"kinesis data is not base64: {error}") from None
        config = self.config
        return decode_record(data, config.key_schema, config.timestamp_attribute, config.origin_attribute)

    # --- writing ------------------------------------------------------------------------------

    def read_states(self, keys: list[KeyWork]) -> dict[str, KeyState]:
        config = self.config
        requests = []
        for work in keys:
            requests.append((config.table_name, item_to_boto3(work.record.key)))
            requests.append((config.ledger_table, {LEDGER_KEY: {"S": work.ckey}}))
        found = batch_get_consistent(self.dynamodb, requests)
        items = {
            canonical_key(
                item_to_wire({k.name: item[k.name] for k in config.key_schema}), config.key_schema
            ): item
            for item in found.get(config.table_name, [])
        }
        ledgers = {
            item[LEDGER_KEY]["S"]: entry_from_item(item) for item in found.get(config.ledger_table, [])
        }
        return {
            work.ckey: KeyState(items.get(work.ckey), ledgers.get(work.ckey, LedgerState(None, None)))
            for work in keys
        }

    def item_version(self, item: dict[str, Any] | None) -> Version | None:
        if item is None:
            return None
        return version_from_attributes(
            item.get(self.config.timestamp_attribute), item.get(self.config.origin_attribute)
        )

    def apply_all(self, work: dict[str, KeyWork], tally: Tally) -> None:
        pending = dict(work)
        states = self.read_states(list(pending.values())) if pending else {}
        for _ in range(_MAX_ROUNDS):
            if not pending:
                return
            operations: dict[str, list[dict[str, Any]]] = {}
            for ckey, item in list(pending.items()):
                ops = self.plan(item, states[ckey])
                if ops is None:
                    tally.outcome[item.winner] = "discarded_older"
                    del pending[ckey]
                else:
                    operations[ckey] = ops
            reread: list[str] = []
            for chunk in self.chunks(operations, pending):
                done, conflicted = self.execute(chunk, operations, pending, tally)
                for ckey in done:
                    pending.pop(ckey, None)
                reread.extend(conflicted)
            if reread:
                states.update(self.read_states([pending[k] for k in reread if k in pending]))
        tally.failed.update(pending)

    def plan(self, work: KeyWork, state: KeyState) -> list[dict[str, Any]] | None:
        config = self.config
        record = work.record
        item_version = self.item_version(state.item)
        item_digest = content_digest(item_to_wire(state.item)) if state.item is not None else None
        action = decide_apply(
            record.version,
            record.is_delete,
            item_present=state.item is not None,
            item_version=item_version,
            item_digest=item_digest,
            ledger=state.ledger.entry,
            pending_local_wins=self.pending_local_wins,
        )
        work.discarded = action is ApplyAction.RAISE_LEDGER
        if action is ApplyAction.DISCARD:
            return None
        now_epoch = int(self.clock())
        digest = content_digest(record.item) if record.item is not None else None
        deleted = None
        if action is ApplyAction.DELETE_ITEM and state.item is not None:
            assert item_digest is not None
            deleted = removed_marker(item_version, item_digest)
        entry = ledger_after_apply(
            state.ledger.entry,
            action,
            record.version,
            digest=digest,
            deleted_marker=deleted,
            now_epoch=now_epoch,
        )
        ledger_put = {"Put": self.ledger.put_request(work.ckey, entry, state.ledger, now_epoch)}
        if action is ApplyAction.RAISE_LEDGER:
            # The item (a pending local change) stays; only the high-water mark moves, conditioned
            # on the entry read: any sender write in between makes us read and decide again.
            return [ledger_put]
        ops: list[dict[str, Any]] = []
        expr = Expression("i")
        condition = item_state_condition(
            expr,
            self.hash_key,
            present=state.item is not None,
            version=item_version,
            timestamp_attribute=config.timestamp_attribute,
            origin_attribute=config.origin_attribute,
        )
        if action is ApplyAction.PUT:
            assert record.item is not None
            ops.append(
                {
                    "Put": expr.apply(
                        {"TableName": config.table_name, "Item": item_to_boto3(record.item)}, condition
                    )
                }
            )
        elif action is ApplyAction.DELETE_ITEM:
            ops.append(
                {
                    "Delete": expr.apply(
                        {"TableName": config.table_name, "Key": item_to_boto3(record.key)}, condition
                    )
                }
            )
        ops.append(ledger_put)
        return ops

    def chunks(
        self, operations: dict[str, list[dict[str, Any]]], pending: dict[str, KeyWork]
    ) -> list[list[str]]:
        chunks: list[list[str]] = []
        current: list[str] = []
        size = 0
        for ckey, ops in operations.items():
            weight = len(json.dumps(ops, default=lambda b: "x" * len(b)))
            if pending[ckey].solo:
                chunks.append([ckey])
                continue
            if current and (
                len(current) >= MAX_KEYS_PER_TRANSACTION or size + weight > MAX_TRANSACTION_BYTES
            ):
                chunks.append(current)
                current, size = [], 0
            current.append(ckey)
            size += weight
        if current:
            chunks.append(current)
        return chunks

    def execute(
        self,
        chunk: list[str],
        operations: dict[str, list[dict[str, Any]]],
        pending: dict[str, KeyWork],
        tally: Tally,
    ) -> tuple[list[str], list[str]]:
        """One transaction; returns (keys done, keys to re-read)."""
        items = [op for ckey in chunk for op in operations[ckey]]
        try:
            self.dynamodb.transact_write_items(TransactItems=items)
        except Exception as error:
            code = error_code(error)
            codes = cancellation_codes(error) if code == "TransactionCanceledException" else []
            validation = code == "ValidationException" or "ValidationError" in codes
            if validation and len(chunk) > 1:
                for ckey in chunk:
                    pending[ckey].solo = True
                return [], []
            if validation:
                work = pending[chunk[0]]
                tally.letters.append(
                    DeadLetter(work.winner, "rejected by DynamoDB", str(error), tally.records[work.winner])
                )
                tally.outcome[work.winner] = "dead_lettered"
                return chunk, []
            if code == "TransactionCanceledException" and all(
                c in ("None", "ConditionalCheckFailed", "TransactionConflict") for c in codes
            ):
                return [], chunk  # something changed since the read: read again, decide again
            log.warning("transaction of %d keys failed: %s", len(chunk), code)
            tally.failed.update(chunk)
            return chunk, []
        for ckey in chunk:
            work = pending[ckey]
            tally.outcome[work.winner] = "discarded_older" if work.discarded else "applied"
        return chunk, []

    def record_stats(
        self,
        records: list[dict[str, Any]],
        decoded: dict[int, tuple[str, WireRecord]],
        outcome: dict[int, str],
        failure: int | None,
    ) -> None:
        limit = len(records) if failure is None else failure
        if not limit:
            return
        counted = Counter(outcome.get(index, "unaccounted") for index in range(limit))
        now_ms = int(self.clock() * 1000)
        ages = [
            now_ms - decoded[i][1].created_ms
            for i in range(limit)
            if i in decoded and decoded[i][1].created_ms
        ]
        counters = {"received": limit, **{name: counted.get(name, 0) for name in _APPLIER_OUTCOMES}}
        counters["cnt"] = counters["applied"]
        fields: dict[str, Any] = {"last_batch_at": now_ms, "source": self.config.peer_region_name}
        if ages:
            fields["last_lag_ms"] = max(0, *ages)
        try:
            stats.record_batch(self.dynamodb, self.config.stats_table, stats.APPLIER_ITEM, counters, fields)
        except Exception as error:  # observability must never block replication
            log.warning("stats update failed: %s", error_code(error))


_APPLIER_OUTCOMES = ("applied", "discarded_older", "coalesced", "dead_lettered")

_runtime: dict[str, Applier] = {}


def _build() -> Applier:
    config = HandlerConfig.from_environment()
    session = boto3.session.Session()
    dynamodb = session.client("dynamodb", region_name=config.local_region, config=aws_config())
    sqs = session.client("sqs", region_name=config.local_region, config=aws_config())
    return Applier(config, dynamodb, sqs)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point: `ddbbridge_lambdas.applier.handler`."""
    if "applier" not in _runtime:
        _runtime["applier"] = _build()
    return _runtime["applier"].handle(event)
