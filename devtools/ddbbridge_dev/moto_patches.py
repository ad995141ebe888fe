"""Fixes applied to moto 5.2.5 before our launcher serves a region. Each one names the trap it removes.

They replace moto internals by name, so they are tied to the pinned moto version: `apply_all()`
refuses any other version rather than patching code it was not written against.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from itertools import islice
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import StreamRecord, StreamShard
from moto.dynamodb.responses import DynamoHandler
from moto.dynamodbstreams.models import DynamoDBStreamsBackend
from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
from moto.kinesis.models import KinesisBackend, Shard, Stream
from moto.kinesis.utils import compose_shard_iterator, decompose_shard_iterator
from moto.utilities.utils import md5_hash

from ddbbridge_dev import federation, moto_fast_items, moto_transactions

MOTO_VERSION = "5.2.5"
STREAM_ITERATOR_LIFETIME_SECONDS = 15 * 60  # DynamoDB Streams shard iterators expire after 15 minutes

# One lock for every DynamoDB and DynamoDB Streams request: moto's tables are plain dicts that a
# concurrent Scan may iterate while a PutItem inserts, and a transaction must not be observed
# half-applied. moto is bound by the GIL anyway, so serialising costs little throughput.
DYNAMODB_LOCK = threading.RLock()


@dataclass(frozen=True)
class Patch:
    name: str
    reason: str
    apply: Callable[[], None]


def _disable_esm_invocation() -> None:
    def add(self: StreamShard, old: Any, new: Any) -> None:
        specification = self.table.stream_specification or {}
        if not specification.get("StreamEnabled"):
            # moto keeps the shard after a stream is disabled and then fails every write with a
            # KeyError (HTTP 500); DynamoDB simply stops recording changes.
            return
        view_type = specification["StreamViewType"]
        event_name = "INSERT" if old is None else "REMOVE" if new is None else "MODIFY"
        sequence = len(self.items) + self.starting_sequence_number
        record = StreamRecord(self.table, view_type, event_name, old, new, sequence)
        # DynamoDB Streams report the table's region; moto hard-codes us-east-1.
        record.record["awsRegion"] = self.table.region_name
        # moto encodes a BINARY key twice in `Keys` (base64 of its own base64 text), so a reader
        # addresses an item that does not exist; the item's attributes carry the key as DynamoDB does.
        attributes = (old if old is not None else new).to_json()["Attributes"]
        keys = record.record["dynamodb"]["Keys"]
        record.record["dynamodb"]["Keys"] = {name: attributes[name] for name in keys}
        self.items.append(record)

    def put_record(self: Stream, partition_key: str, explicit_hash_key: str, data: str) -> tuple[str, str]:
        with _stream_lock(self):
            shard = self.get_shard_for_key(partition_key, explicit_hash_key)
            if shard is None:  # moto would fail with AttributeError here too; say why instead
                raise ValueError(f"no shard of {self.stream_name} covers partition key {partition_key!r}")
            sequence_number = shard.put_record(partition_key, data, explicit_hash_key)
        return sequence_number, shard.shard_id

    _replace(StreamShard, "add", add)
    _replace(Stream, "put_record", put_record)


def _replace(owner: type, name: str, function: Callable[..., Any]) -> None:
    """Swap one moto method for ours (kept in one place: mypy rightly dislikes assigning methods)."""
    setattr(owner, name, function)


def _stream_lock(stream: Any) -> threading.Lock:
    # dict.setdefault is atomic under the GIL, so two threads always end up with the same lock.
    lock: threading.Lock = stream.__dict__.setdefault("_ddbbridge_lock", threading.Lock())
    return lock


def _serialise_kinesis() -> None:
    original_get_records = Shard.get_records

    def get_max_sequence_number(self: Shard) -> int:
        return next(reversed(self.records)) if self.records else 0  # moto copies every key: O(n)

    def get_min_sequence_number(self: Shard) -> int:
        return next(iter(self.records)) if self.records else 0

    def shard_get_records(
        self: Shard, last_sequence_id: str, limit: int | None
    ) -> tuple[list[Any], int, int]:
        # Sequence numbers of a shard are consecutive (each put is max + 1), so the first wanted
        # record sits at a known position; moto scans every record from the start on each call.
        last = int(last_sequence_id)
        records = self.records
        if not records:
            return [], last, 0
        first = next(iter(records))
        start = max(0, last - first + 1)
        stop = start + limit if limit else None
        found = list(islice(records.values(), start, stop))
        if found and found[0].sequence_number != max(last, first - 1) + 1:
            return original_get_records(self, last_sequence_id, limit)  # not consecutive: moto's way
        if not found:
            return [], last, 0
        newest = records[next(reversed(records))]
        behind_ms = int((newest.created_at - found[-1].created_at) * 1000)
        return found, found[-1].sequence_number, behind_ms

    def backend_get_records(
        self: KinesisBackend, stream_arn: str | None, shard_iterator: str, limit: int | None
    ) -> tuple[str, list[Any], int]:
        stream_name, shard_id, last_sequence_id = decompose_shard_iterator(shard_iterator)
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        shard = stream.get_shard(shard_id)
        # Readers iterate the shard's OrderedDict; a concurrent put would make that raise.
        with _stream_lock(stream):
            records, last, behind_ms = shard.get_records(last_sequence_id, limit)
        return compose_shard_iterator(stream_name, shard, last), records, behind_ms

    _replace(Shard, "get_max_sequence_number", get_max_sequence_number)
    _replace(Shard, "get_min_sequence_number", get_min_sequence_number)
    _replace(Shard, "get_records", shard_get_records)
    _replace(KinesisBackend, "get_records", backend_get_records)


def _load_managed_policies() -> None:
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"


def _serialise_dynamodb() -> None:
    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        original = handler.call_action

        def call_action(self: Any, _original: Any = original) -> Any:
            with DYNAMODB_LOCK:
                return _original(self)

        _replace(handler, "call_action", functools.wraps(original)(call_action))


def _transactions_in_place() -> None:
    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with DYNAMODB_LOCK:
            moto_transactions.transact_write_items(self, transact_items)

    _replace(DynamoDBBackend, "transact_write_items", transact_write_items)


def _single_insert_on_update() -> None:
    original = DynamoDBBackend.update_item

    def update_item(self: DynamoDBBackend, table_name: str, *args: Any, **kwargs: Any) -> Any:
        # UpdateItem on a missing item: moto first puts the bare key (one INSERT stream record
        # holding only the key) and then records the update as a second INSERT. DynamoDB emits one.
        with DYNAMODB_LOCK:
            shard = self.get_table(table_name).stream_shard
            before = len(shard.items) if shard is not None else 0
            result = original(self, table_name, *args, **kwargs)
            if shard is not None and len(shard.items) == before + 2:
                first, second = shard.items[before], shard.items[before + 1]
                if first.record["eventName"] == "INSERT" and second.record["eventName"] == "INSERT":
                    second.record["dynamodb"]["SequenceNumber"] = first.record["dynamodb"]["SequenceNumber"]
                    del shard.items[before]
            return result

    _replace(DynamoDBBackend, "update_item", update_item)


def _expire_stream_iterators() -> None:
    original_iterator = DynamoDBStreamsBackend.get_shard_iterator
    original_records = DynamoDBStreamsBackend.get_records

    def _born(self: DynamoDBStreamsBackend) -> deque[tuple[float, str]]:
        born: deque[tuple[float, str]] = self.__dict__.setdefault("_ddbbridge_born", deque())
        return born

    def _forget_expired(self: DynamoDBStreamsBackend, arn: str) -> None:
        # moto keeps every iterator it ever issued (one per GetRecords call): an endless leak for
        # a poller. DynamoDB expires them after 15 minutes; so do we.
        now = time.monotonic()
        born = _born(self)
        born.append((now, arn))
        while born and now - born[0][0] > STREAM_ITERATOR_LIFETIME_SECONDS:
            _, old = born.popleft()
            self.shard_iterators.pop(old, None)

    def get_shard_iterator(self: DynamoDBStreamsBackend, *args: Any, **kwargs: Any) -> Any:
        iterator = original_iterator(self, *args, **kwargs)
        _forget_expired(self, iterator.arn)
        return iterator

    def get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict[str, Any]:
        result: dict[str, Any] = original_records(self, iterator_arn, limit)
        _forget_expired(self, result["NextShardIterator"])
        return result

    _replace(DynamoDBStreamsBackend, "get_shard_iterator", get_shard_iterator)
    _replace(DynamoDBStreamsBackend, "get_records", get_records)


def _segment_binary_hash_keys() -> None:
    def is_within_segment(self: Item, segments: tuple[None, None] | tuple[int, int]) -> bool:
        # moto hashes the hash key's text to pick its segment; a binary hash key holds bytes, and
        # `.encode` on them raised, so a parallel Scan of such a table answered 500. Bytes are hashed
        # as they are; text exactly as moto does, so every other table keeps its segments.
        segment, total_segments = segments
        if segment is None or total_segments is None:
            return True
        value = self.hash_key.value
        raw = value if isinstance(value, bytes) else str(value).encode("utf8")
        return bool(md5_hash(raw).digest()[0] % total_segments == segment)

    _replace(Item, "is_within_segment", is_within_segment)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "esm-invocation-off",
        "once an event source mapping exists moto 'invokes' the function on every write and then "
        "clears the stream buffer (GetRecords returns nothing; PutItem answers 500 after the function "
        "is deleted); the local runner owns delivery",
        _disable_esm_invocation,
    ),
    Patch(
        "kinesis-serialised",
        "concurrent PutRecord(s) to one shard lose records (read-max-then-insert race) and a reader "
        "iterating a shard during a put fails; one lock per stream; also O(1) max sequence number "
        "and positional GetRecords (moto copies or scans the whole shard per record/call)",
        _serialise_kinesis,
    ),
    Patch(
        "iam-managed-policies",
        "without MOTO_IAM_LOAD_MANAGED_POLICIES=true AWS-managed policy ARNs do not exist",
        _load_managed_policies,
    ),
    Patch(
        "dynamodb-serialised",
        "moto's tables are unguarded dicts: concurrent requests can interleave a transaction or "
        "iterate a dict another request mutates",
        _serialise_dynamodb,
    ),
    Patch(
        "transactions-in-place",
        "TransactWriteItems deep-copies each touched table and on failure swaps the copies in, losing "
        "concurrent writes and orphaning open stream iterators; apply in place with an undo log",
        _transactions_in_place,
    ),
    Patch(
        "update-single-insert",
        "UpdateItem creating an item emits two INSERT stream records (the first holds only the key)",
        _single_insert_on_update,
    ),
    Patch(
        "outbound-federation",
        "moto has no IAM outbound identity federation nor STS GetWebIdentityToken, and its "
        "AssumeRoleWithWebIdentity accepts any token for any role; see federation.py",
        federation.install,
    ),
    Patch(
        "fast-attribute-values",
        "moto serialises each attribute value through its generic model walker (about 4 ms per item "
        "returned, under the DynamoDB lock): a 1,000-record stream page held every write in the "
        "region for seconds; written in one pass with the same output",
        moto_fast_items.install,
    ),
    Patch(
        "segments-of-binary-hash-keys",
        "a parallel (segmented) Scan of a table whose hash key is binary answers 500: moto calls "
        "`.encode` on the key's bytes to pick the segment",
        _segment_binary_hash_keys,
    ),
    Patch(
        "stream-iterators-expire",
        "moto never forgets a DynamoDB Streams shard iterator; a poller leaks memory forever",
        _expire_stream_iterators,
    ),
)

_applied: list[Patch] = []
_applied_lock = threading.Lock()


def apply_all() -> list[Patch]:
    """Apply every patch once (idempotent) and return them."""
    with _applied_lock:
        if _applied:
            return list(_applied)
        installed = version("moto")
        if installed != MOTO_VERSION:
            raise RuntimeError(f"moto patches target moto {MOTO_VERSION}, found {installed}")
        for patch in PATCHES:
            patch.apply()
            _applied.append(patch)
        return list(_applied)
