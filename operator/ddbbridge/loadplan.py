"""What the load generator writes, decided ahead of execution: a deterministic stream of operations.

Pure: the plan depends only on the seed, the side and the mix, never on thread scheduling, so a
seeded load writes the same keys and values every time (stamps are taken at execution time, as an
application would). The executor routes operations by key to one worker each, so each key's
operations run in plan order.

Keys follow the table's key schema. A side's own keys are `<side>-<seed>-<index>` (S), the same text
as bytes (B), or a number built from the side's position, the seed and the index (N). The conflict
pool is `shared-<index>` (no seed, no side), so both regions, even loaded from different machines,
write the same keys.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from ddbbridge.comparison import AttributeValue, Item
from ddbbridge.fakedata import preference_changes, profile_changes, user_record
from ddbbridge_lambdas.config import KeyAttribute

# Hash + range tables get this many items per partition key, as a user table with sub-items would.
RANGE_FAN = 3
# Share of new puts that re-insert a key this loader deleted earlier (when there is one).
REINSERT_SHARE = 0.3
RUN_CODE_LIMIT = 10**6
INDEX_LIMIT = 10**10
SHARED_NAMESPACE = "shared"


class OperationKind(StrEnum):
    PUT = "put"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class LoadMix:
    """Shares of the operation mix; every ratio is in [0, 1]."""

    delete_ratio: float = 0.05
    update_ratio: float = 0.25
    unstamped_ratio: float = 0.1
    conflict_keys: int = 0
    conflict_ratio: float = 0.2

    def __post_init__(self) -> None:
        for name in ("delete_ratio", "update_ratio", "unstamped_ratio", "conflict_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.delete_ratio + self.update_ratio > 1.0:
            raise ValueError("delete_ratio + update_ratio must not exceed 1")
        if self.conflict_keys < 0:
            raise ValueError("conflict_keys must be >= 0")


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    key: Item
    # Full record for a put, the changed top-level attributes for an update, nothing for a delete.
    attributes: Item
    # False: the application does not stamp origin and timestamp (a put without them, or an update
    # that leaves the previous stamp in place).
    stamped: bool = True
    # Map attribute -> members an update sets inside it (a nested path); only planned for keys
    # this loader knows exist, since a path into a missing map fails.
    nested: dict[str, Item] = field(default_factory=dict)
    shared: bool = False
    reinsert: bool = False


class KeyFactory:
    """Builds primary keys of the table's schema from (namespace, index)."""

    def __init__(self, schema: tuple[KeyAttribute, ...], side: str, position: int, seed: int) -> None:
        if not schema or schema[0].role != "HASH":
            raise ValueError("key schema must start with its HASH attribute")
        self.schema = schema
        self.side = side
        self.position = position
        self.seed = seed

    def own(self, index: int) -> Item:
        return self._key(f"{self.side}-{self.seed}", 2 + self.position, self.seed % RUN_CODE_LIMIT, index)

    def shared(self, index: int) -> Item:
        return self._key(SHARED_NAMESPACE, 1, 0, index)

    def _key(self, namespace: str, namespace_code: int, run_code: int, index: int) -> Item:
        if index >= INDEX_LIMIT:
            raise ValueError("key index out of range")
        has_range = len(self.schema) > 1
        hash_index, range_index = divmod(index, RANGE_FAN) if has_range else (index, 0)
        hash_attribute = self.schema[0]
        key: Item = {
            hash_attribute.name: _key_value(
                hash_attribute.type,
                text=f"{namespace}-{hash_index:09d}",
                number=(namespace_code * RUN_CODE_LIMIT + run_code) * INDEX_LIMIT + hash_index,
            )
        }
        if has_range:
            range_attribute = self.schema[1]
            key[range_attribute.name] = _key_value(
                range_attribute.type, text=f"item#{range_index:02d}", number=range_index
            )
        return key


def _key_value(key_type: str, *, text: str, number: int) -> AttributeValue:
    if key_type == "S":
        return {"S": text}
    if key_type == "N":
        return {"N": str(number)}
    if key_type == "B":
        return {"B": text.encode("utf-8")}
    raise ValueError(f"unsupported key type {key_type!r}")


class _KeyPool:
    """Indexes with O(1) random pick and removal."""

    def __init__(self) -> None:
        self._items: list[int] = []
        self._where: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, index: int) -> None:
        if index not in self._where:
            self._where[index] = len(self._items)
            self._items.append(index)

    def pick(self, rng: random.Random) -> int:
        return self._items[rng.randrange(len(self._items))]

    def remove(self, index: int) -> None:
        position = self._where.pop(index)
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._where[last] = position


def plan_rng(seed: int, side: str) -> random.Random:
    """The side's own random stream: `--region all` gives each side a different, seeded load."""
    return random.Random(f"ddbbridge-load:{seed}:{side}")


def plan_operations(keys: KeyFactory, mix: LoadMix, count: int, rng: random.Random) -> Iterator[Operation]:
    """`count` operations: new puts, updates, deletes, re-inserts, and conflict-pool writes."""
    live, deleted = _KeyPool(), _KeyPool()
    next_index = 0
    for _ in range(count):
        roll = rng.random()
        stamped = rng.random() >= mix.unstamped_ratio
        if mix.conflict_keys and rng.random() < mix.conflict_ratio:
            key = keys.shared(rng.randrange(mix.conflict_keys))
            if roll < mix.delete_ratio:
                yield Operation(OperationKind.DELETE, key, {}, stamped=False, shared=True)
            elif roll < mix.delete_ratio + mix.update_ratio:
                # The peer may have deleted this key: top-level SETs only (they upsert).
                yield Operation(OperationKind.UPDATE, key, profile_changes(rng), stamped, shared=True)
            else:
                yield Operation(OperationKind.PUT, key, user_record(rng), stamped, shared=True)
            continue
        if len(live) and roll < mix.delete_ratio:
            index = live.pick(rng)
            live.remove(index)
            deleted.add(index)
            yield Operation(OperationKind.DELETE, keys.own(index), {}, stamped=False)
        elif len(live) and roll < mix.delete_ratio + mix.update_ratio:
            index = live.pick(rng)
            yield Operation(
                OperationKind.UPDATE,
                keys.own(index),
                profile_changes(rng),
                stamped,
                nested=preference_changes(rng),
            )
        elif len(deleted) and rng.random() < REINSERT_SHARE:
            index = deleted.pick(rng)
            deleted.remove(index)
            live.add(index)
            yield Operation(OperationKind.PUT, keys.own(index), user_record(rng), stamped, reinsert=True)
        else:
            index = next_index
            next_index += 1
            live.add(index)
            yield Operation(OperationKind.PUT, keys.own(index), user_record(rng), stamped)
