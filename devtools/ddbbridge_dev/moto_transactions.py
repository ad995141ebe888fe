"""TransactWriteItems for moto 5.2.5, applied in place with an undo log.

moto's own implementation deep-copies every table a transaction touches before applying it and, when
any operation fails, REPLACES the live table objects with those copies. That costs time and memory on
every transaction, silently drops writes other requests made meanwhile, and orphans every open
DynamoDB stream iterator (they keep pointing at the replaced table's stream shard).

This version does what DynamoDB does: every condition is evaluated against the state before the
transaction, nothing is written unless all of them hold, and writes are then applied in place. If a
write still fails (a validation error only the write itself detects), the writes already made are
undone in place from a journal of the touched items, and the stream records they appended are
removed, so the live table and its stream shard stay the same objects.

Callers must hold the DynamoDB lock (see `moto_patches`) so no other request observes the
half-applied state.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import StreamShard, Table

_OPERATIONS = frozenset({"ConditionCheck", "Put", "Delete", "Update"})
_NO_ERROR: tuple[None, None, None] = (None, None, None)
Reason = tuple[str, str, dict[str, Any] | None] | tuple[None, None, None]


@dataclass
class _ItemBefore:
    table: Table
    hash_key: DynamoType
    range_key: DynamoType | None
    item: Item | None  # a private copy of the item before the write; None when it did not exist
    bucket_existed: bool  # range tables: whether the hash key's bucket existed


@dataclass
class UndoLog:
    """What a transaction changed, enough to put every touched item and stream shard back."""

    _items: list[_ItemBefore] = field(default_factory=list)
    _stream_lengths: dict[int, tuple[StreamShard, int]] = field(default_factory=dict)

    def before_write(self, table: Table, hash_key: DynamoType, range_key: DynamoType | None) -> None:
        shard = table.stream_shard
        if shard is not None and id(shard) not in self._stream_lengths:
            self._stream_lengths[id(shard)] = (shard, len(shard.items))
        bucket_existed = hash_key in table.items
        if range_key is not None:
            bucket = table.items.get(hash_key) or {}
            current = bucket.get(range_key)
        else:
            current = table.items.get(hash_key) if bucket_existed else None
        # update_item mutates the stored Item object itself, so keep a copy of one item (not a table)
        before = copy.deepcopy(current) if current is not None else None
        self._items.append(_ItemBefore(table, hash_key, range_key, before, bucket_existed))

    def rollback(self) -> None:
        for entry in reversed(self._items):
            items = entry.table.items
            if entry.range_key is None:
                if entry.item is None:
                    items.pop(entry.hash_key, None)
                else:
                    items[entry.hash_key] = entry.item  # type: ignore[assignment]  # moto's own typing
                continue
            if entry.item is None:
                bucket = items.get(entry.hash_key)
                if bucket is not None:
                    bucket.pop(entry.range_key, None)
                    if not bucket and not entry.bucket_existed:
                        items.pop(entry.hash_key, None)
            else:
                items[entry.hash_key][entry.range_key] = entry.item
        for shard, length in self._stream_lengths.values():
            del shard.items[length:]
        self._items.clear()
        self._stream_lengths.clear()


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        key: dict[str, Any] = op["Key"]
        return key
    attrs = op["Item"]
    table = backend.get_table(op["TableName"])
    put_key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        put_key[table.range_key_attr] = attrs[table.range_key_attr]
    return put_key


def _check_conditions(backend: DynamoDBBackend, operations: list[tuple[str, dict[str, Any]]]) -> list[Reason]:
    """Phase one: evaluate every operation against the state before the transaction, writing nothing."""
    seen: set[tuple[str, str]] = set()
    reasons: list[Reason] = []
    for op_type, op in operations:
        old_image: dict[str, Any] | None = None
        try:
            if op_type not in _OPERATIONS:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            key = _key_of(backend, op_type, op)
            identity = (str(table_name), str(dict(sorted(key.items()))))
            if identity in seen:
                raise MultipleTransactionsException()
            seen.add(identity)
            current = backend.get_item(table_name, key)
            condition = op.get("ConditionExpression")
            if condition is not None:
                condition_op = get_filter_expression(
                    condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                )
                if not condition_op.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        old_image = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=old_image)
            reasons.append(_NO_ERROR)
        except MockValidationException:
            raise  # the whole request is invalid (moto answers ValidationException too)
        except ConditionalCheckFailed as error:
            reasons.append(("ConditionalCheckFailed", str(error.message), old_image))
        except Exception as error:  # moto reports any other per-item failure as a cancellation reason
            reasons.append((type(error).__name__, str(error), old_image))
    return reasons


def _apply(backend: DynamoDBBackend, op_type: str, op: dict[str, Any], undo: UndoLog) -> None:
    if op_type == "ConditionCheck":
        return
    table_name = op["TableName"]
    table = backend.get_table(table_name)
    key = _key_of(backend, op_type, op)
    hash_key, range_key = backend.get_keys_value(table, key)
    undo.before_write(table, hash_key, range_key)
    names = op.get("ExpressionAttributeNames")
    values = op.get("ExpressionAttributeValues")
    condition = op.get("ConditionExpression")
    if op_type == "Put":
        backend.put_item(
            table_name,
            op["Item"],
            condition_expression=condition,
            expression_attribute_names=names,
            expression_attribute_values=values,
        )
    elif op_type == "Delete":
        backend.delete_item(
            table_name,
            key,
            condition_expression=condition,
            expression_attribute_names=names,
            expression_attribute_values=values,
        )
    else:
        backend.update_item(
            table_name,
            key,
            update_expression=op["UpdateExpression"],
            condition_expression=condition,
            expression_attribute_names=names,  # type: ignore[arg-type]
            expression_attribute_values=values,  # type: ignore[arg-type]
        )


def transact_write_items(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    """Drop-in replacement for `DynamoDBBackend.transact_write_items` (same errors as moto's)."""
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    operations: list[tuple[str, dict[str, Any]]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        operations.append((op_type, op))

    reasons = _check_conditions(backend, operations)
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)

    undo = UndoLog()
    for index, (op_type, op) in enumerate(operations):
        try:
            _apply(backend, op_type, op, undo)
        except MockValidationException:
            undo.rollback()
            raise
        except Exception as error:
            undo.rollback()
            failed: list[Reason] = [_NO_ERROR] * len(operations)
            failed[index] = (type(error).__name__, str(error), None)
            raise TransactionCanceledException(failed) from error
