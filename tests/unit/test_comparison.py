"""verify's pure comparison: what counts as equal, missing, extra and different."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from ddbbridge.comparison import (
    AttributeDifference,
    DifferenceKind,
    DigestMatcher,
    Side,
    attribute_differences,
    compare_items,
    item_digest,
    plain_key,
    values_equal,
)
from ddbbridge.fakedata import user_record
from ddbbridge_lambdas.config import KeyAttribute

HASH_ONLY = (KeyAttribute("user_id", "S", "HASH"),)
COMPOSITE = (KeyAttribute("tenant", "N", "HASH"), KeyAttribute("blob", "B", "RANGE"))


def users(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{**user_record(rng), "user_id": {"S": f"u{i:04d}"}} for i in range(count)]


def test_equal_tables_in_any_order_converge() -> None:
    items = users(30)
    shuffled = copy.deepcopy(items)
    random.Random(2).shuffle(shuffled)
    result = compare_items(items, shuffled, HASH_ONLY)
    assert result.converged
    assert result.equal == 30
    assert result.divergent == 0


def test_missing_extra_and_different_are_told_apart() -> None:
    a = users(10)
    b = copy.deepcopy(a)
    del b[3]  # missing in B
    b.append({"user_id": {"S": "only-in-b"}, "age": {"N": "3"}})  # missing in A
    b[0]["age"] = {"N": "999"}  # different
    result = compare_items(a, b, HASH_ONLY)
    assert not result.converged
    assert result.missing_in_b == [{"user_id": {"S": "u0003"}}]
    assert result.missing_in_a == [{"user_id": {"S": "only-in-b"}}]
    assert result.different == [{"user_id": {"S": "u0000"}}]
    assert result.equal == 8


def test_empty_tables_are_equal_and_one_empty_side_is_not() -> None:
    assert compare_items([], [], HASH_ONLY).converged
    result = compare_items(users(2), [], HASH_ONLY)
    assert len(result.missing_in_b) == 2


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        # DynamoDB normalises numbers: these are one stored value each.
        ({"N": "1.0"}, {"N": "1"}, True),
        ({"N": "1E2"}, {"N": "100"}, True),
        ({"N": "-0"}, {"N": "0.000"}, True),
        ({"N": "0012.50"}, {"N": "12.5"}, True),
        ({"N": "1.5"}, {"N": "1.50001"}, False),
        ({"NS": ["1", "2.0"]}, {"NS": ["2", "1.00"]}, True),
        # Types matter.
        ({"N": "1"}, {"S": "1"}, False),
        ({"B": b"a"}, {"S": "a"}, False),
        ({"SS": ["a"]}, {"L": [{"S": "a"}]}, False),
        ({"NULL": True}, {"BOOL": False}, False),
        # Sets are unordered, lists are ordered, maps unordered by key.
        ({"SS": ["x", "y"]}, {"SS": ["y", "x"]}, True),
        ({"L": [{"S": "x"}, {"S": "y"}]}, {"L": [{"S": "y"}, {"S": "x"}]}, False),
        ({"M": {"a": {"N": "1"}, "b": {"N": "2"}}}, {"M": {"b": {"N": "2"}, "a": {"N": "1.0"}}}, True),
        # Binary: the bytes count, including bytes that are not UTF-8; base64 text of the same bytes
        # (the event/wire form) is the same value.
        ({"B": b"\x00\xff"}, {"B": b"\x00\xff"}, True),
        ({"B": b"\x00\xff"}, {"B": b"\x00\xfe"}, False),
        ({"B": b"\x00\xff"}, {"B": "AP8="}, True),
        ({"BS": [b"\x01", b"\x02"]}, {"BS": [b"\x02", b"\x01"]}, True),
        ({"BS": [b"\x01", b"\x02"]}, {"BS": [b"\x01", b"\x03"]}, False),
        # Deep nesting: a difference three levels down is a difference.
        (
            {"M": {"p": {"L": [{"M": {"q": {"BS": [b"\x01"]}}}]}}},
            {"M": {"p": {"L": [{"M": {"q": {"BS": [b"\x09"]}}}]}}},
            False,
        ),
        ({"BOOL": True}, {"BOOL": True}, True),
        ({"BOOL": True}, {"BOOL": False}, False),
    ],
)
def test_value_equality_follows_dynamodb(left: dict[str, Any], right: dict[str, Any], equal: bool) -> None:
    assert values_equal(left, right) is equal
    a = {"user_id": {"S": "k"}, "v": left}
    b = {"user_id": {"S": "k"}, "v": right}
    assert (item_digest(a) == item_digest(b)) is equal
    assert compare_items([a], [b], HASH_ONLY).converged is equal


def test_stamps_are_compared_like_any_attribute() -> None:
    a = {
        "user_id": {"S": "k"},
        "last_update_timestamp": {"N": "1700000000.5"},
        "last_updater_region": {"S": "cn"},
    }
    b = {**a, "last_updater_region": {"S": "sg"}}
    assert compare_items([a], [b], HASH_ONLY).different == [{"user_id": {"S": "k"}}]


def test_attribute_differences_name_each_attribute() -> None:
    a: dict[str, Any] = {
        "user_id": {"S": "k"},
        "same": {"N": "1.0"},
        "changed": {"B": b"\x01"},
        "only_a": {"NULL": True},
    }
    b: dict[str, Any] = {
        "user_id": {"S": "k"},
        "same": {"N": "1"},
        "changed": {"B": b"\x02"},
        "only_b": {"BOOL": True},
    }
    assert attribute_differences(a, b) == [
        AttributeDifference("changed", DifferenceKind.DIFFERENT),
        AttributeDifference("only_a", DifferenceKind.MISSING_IN_B),
        AttributeDifference("only_b", DifferenceKind.MISSING_IN_A),
    ]
    assert attribute_differences(a, copy.deepcopy(a)) == []


def test_composite_keys_with_number_and_binary_parts() -> None:
    def item(tenant: str, blob: bytes, value: str) -> dict[str, Any]:
        return {"tenant": {"N": tenant}, "blob": {"B": blob}, "v": {"S": value}}

    a = [item("1", b"\x00", "x"), item("1", b"\x01", "y"), item("2", b"\x00", "z")]
    # "1.0" is the same tenant as "1": the key matches, the item is equal.
    b = [item("1.0", b"\x00", "x"), item("1", b"\x01", "CHANGED"), item("2", b"\x01", "z")]
    result = compare_items(a, b, COMPOSITE)
    assert result.equal == 1
    assert result.different == [{"tenant": {"N": "1"}, "blob": {"B": b"\x01"}}]
    assert result.missing_in_b == [{"tenant": {"N": "2"}, "blob": {"B": b"\x00"}}]
    assert result.missing_in_a == [{"tenant": {"N": "2"}, "blob": {"B": b"\x01"}}]
    assert plain_key(result.different[0]) == {"tenant": "1", "blob": "AQ=="}


def test_matcher_streams_interleaved_sides_and_keeps_only_unmatched_keys() -> None:
    a, b = users(50, seed=4), users(50, seed=4)
    matcher = DigestMatcher(HASH_ONLY)
    for left, right in zip(a, reversed(b), strict=True):
        matcher.observe_item(Side.A, left)
        matcher.observe_item(Side.B, right)
        assert len(matcher._pending) <= 50
    assert not matcher._pending
    result = matcher.result()
    assert result.converged
    assert matcher.seen == {Side.A: 50, Side.B: 50}


def test_a_key_seen_twice_on_one_side_is_an_error() -> None:
    matcher = DigestMatcher(HASH_ONLY)
    item = users(1)[0]
    matcher.observe_item(Side.A, item)
    with pytest.raises(ValueError, match="seen twice"):
        matcher.observe_item(Side.A, item)


def test_every_attribute_of_a_fake_record_is_compared() -> None:
    base = users(1)[0]
    for name in base:
        if name == "user_id":
            continue
        changed = copy.deepcopy(base)
        del changed[name]
        assert not compare_items([base], [changed], HASH_ONLY).converged, name
