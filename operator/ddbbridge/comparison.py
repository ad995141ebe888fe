"""Pure comparison of two DynamoDB tables' items, shared by `verify` and `verify --repair`.

Items are in the low-level attribute-value format (`{"S": ...}`, B as bytes) that boto3's client
returns. Two values are equal when DynamoDB would hold them as the same value:
- numbers compare by numeric value: "1.0", "1", "1E0" and "01" are one number. DynamoDB stores
  numbers normalised (it returns "1" for a written "1.0"), so a textual difference can only come
  from an emulator that keeps the text; it is never a replication difference;
- string, number and binary sets are unordered; map keys are unordered; lists are ordered;
- types matter: S "1" differs from N "1", B b"a" from S "a".

Every attribute is compared, the stamps included; `BOOKKEEPING_ATTRIBUTES` names the attributes that
are per-region bookkeeping and therefore skipped. There are none today: the replicator keeps its
bookkeeping (version ledger, tombstones) in side tables, never in the user's items.

Canonical forms (numbers, base64, sets) and digests come from the data plane's codec, so verify,
repair and the replicator agree on what "equal" means and on how a key is named.

Big tables are compared without holding their items: each side streams (canonical key, digest)
pairs into a `DigestMatcher`, which keeps only keys not yet seen on the other side.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ddbbridge_lambdas import codec
from ddbbridge_lambdas.config import KeyAttribute

# Low-level DynamoDB values, as boto3's client reads and writes them.
AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

BOOKKEEPING_ATTRIBUTES: frozenset[str] = frozenset()


class Side(StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


def canonical_key(key: Item, key_schema: tuple[KeyAttribute, ...]) -> str:
    """The text naming an item's primary key, the same in both regions and in the version ledger."""
    return codec.canonical_key(key, key_schema)


def key_of(item: Item, key_schema: tuple[KeyAttribute, ...]) -> Item:
    return {attribute.name: item[attribute.name] for attribute in key_schema}


def comparable_attributes(item: Item, skip: frozenset[str] = BOOKKEEPING_ATTRIBUTES) -> Item:
    return {name: value for name, value in item.items() if name not in skip}


def item_digest(item: Item, skip: frozenset[str] = BOOKKEEPING_ATTRIBUTES) -> str:
    """A short hash of every compared attribute; equal digests mean equal items."""
    return codec.content_digest(comparable_attributes(item, skip))


def values_equal(a: AttributeValue, b: AttributeValue) -> bool:
    return bool(codec.canonical_value(a) == codec.canonical_value(b))


class DifferenceKind(StrEnum):
    MISSING_IN_A = "missing-in-a"
    MISSING_IN_B = "missing-in-b"
    DIFFERENT = "different"


@dataclass(frozen=True)
class AttributeDifference:
    name: str
    kind: DifferenceKind


def attribute_differences(
    a: Item, b: Item, skip: frozenset[str] = BOOKKEEPING_ATTRIBUTES
) -> list[AttributeDifference]:
    """Which top-level attributes differ between two versions of one item, sorted by name."""
    left, right = comparable_attributes(a, skip), comparable_attributes(b, skip)
    differences = []
    for name in sorted(left.keys() | right.keys()):
        if name not in left:
            differences.append(AttributeDifference(name, DifferenceKind.MISSING_IN_A))
        elif name not in right:
            differences.append(AttributeDifference(name, DifferenceKind.MISSING_IN_B))
        elif not values_equal(left[name], right[name]):
            differences.append(AttributeDifference(name, DifferenceKind.DIFFERENT))
    return differences


@dataclass
class Comparison:
    """The outcome of comparing two tables: keys (as attribute-value maps) in each class."""

    equal: int = 0
    missing_in_a: list[Item] = field(default_factory=list)
    missing_in_b: list[Item] = field(default_factory=list)
    different: list[Item] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not (self.missing_in_a or self.missing_in_b or self.different)

    @property
    def divergent(self) -> int:
        return len(self.missing_in_a) + len(self.missing_in_b) + len(self.different)


@dataclass
class _Pending:
    side: Side
    digest: str
    key: Item


class DigestMatcher:
    """Matches items of two tables by canonical key as they stream in, in any order.

    Memory holds only keys seen on one side and not yet on the other, plus the divergent keys.
    Not thread-safe: callers that feed it from several threads hold one lock around `observe`.
    """

    def __init__(
        self, key_schema: tuple[KeyAttribute, ...], skip: frozenset[str] = BOOKKEEPING_ATTRIBUTES
    ) -> None:
        self.key_schema = key_schema
        self.skip = skip
        self._pending: dict[str, _Pending] = {}
        self._equal = 0
        self._different: dict[str, Item] = {}
        self.seen = {Side.A: 0, Side.B: 0}

    def observe_item(self, side: Side, item: Item) -> None:
        self.observe(side, key_of(item, self.key_schema), item_digest(item, self.skip))

    def observe(self, side: Side, key: Item, digest: str) -> None:
        text = canonical_key(key, self.key_schema)
        self.seen[side] += 1
        waiting = self._pending.pop(text, None)
        if waiting is None:
            self._pending[text] = _Pending(side, digest, key)
            return
        if waiting.side is side:
            self._pending[text] = waiting
            raise ValueError(f"key {text} seen twice on side {side}")
        if waiting.digest == digest:
            self._equal += 1
        else:
            self._different[text] = key

    def result(self) -> Comparison:
        missing_in_a = {t: p.key for t, p in self._pending.items() if p.side is Side.B}
        missing_in_b = {t: p.key for t, p in self._pending.items() if p.side is Side.A}
        return Comparison(
            equal=self._equal,
            missing_in_a=[missing_in_a[t] for t in sorted(missing_in_a)],
            missing_in_b=[missing_in_b[t] for t in sorted(missing_in_b)],
            different=[self._different[t] for t in sorted(self._different)],
        )


def compare_items(
    items_a: Iterable[Item],
    items_b: Iterable[Item],
    key_schema: tuple[KeyAttribute, ...],
    skip: frozenset[str] = BOOKKEEPING_ATTRIBUTES,
) -> Comparison:
    """Compare two whole collections of items (small tables, tests)."""
    matcher = DigestMatcher(key_schema, skip)
    for item in items_a:
        matcher.observe_item(Side.A, item)
    for item in items_b:
        matcher.observe_item(Side.B, item)
    return matcher.result()


def plain_key(key: Item) -> dict[str, Any]:
    """A key for humans and JSON output: S and N as text, B as base64 text."""
    plain: dict[str, Any] = {}
    for name, value in key.items():
        ((_type, inner),) = value.items()
        plain[name] = base64.b64encode(bytes(inner)).decode("ascii") if isinstance(inner, bytes) else inner
    return plain
