"""The load generator's fake user records: every DynamoDB type, nested, reproducible from a seed."""

from __future__ import annotations

import random
from typing import Any

from ddbbridge.fakedata import attribute_types, preference_changes, profile_changes, user_record

ALL_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}


def test_every_record_holds_every_attribute_type_at_top_level_and_nested() -> None:
    rng = random.Random(1)
    for _ in range(200):
        record = user_record(rng)
        top_level = {tag for value in record.values() for tag in value}
        assert top_level == ALL_TYPES
        assert nested_types(record) == ALL_TYPES
        # Inside one map alone: every type but M (sets, binary, NULL, BOOL, a list of lists).
        preferences = set().union(*(attribute_types(v) for v in record["preferences"]["M"].values()))
        assert preferences == ALL_TYPES - {"M"}
        # Inside a list: maps holding binary, NULL and BOOL.
        history = set().union(*(attribute_types(event) for event in record["history"]["L"]))
        assert {"M", "B", "NULL", "BOOL", "N", "S"} <= history


def test_same_seed_same_records_other_seed_other_records() -> None:
    first = [user_record(random.Random(42)) for _ in range(3)]
    again = [user_record(random.Random(42)) for _ in range(3)]
    other = user_record(random.Random(43))
    assert first == again
    assert other != first[0]


def test_values_are_valid_dynamodb_values() -> None:
    rng = random.Random(7)
    for _ in range(300):
        record = user_record(rng)
        for name in ("skills", "lucky_numbers", "device_keys"):
            members = next(iter(record[name].values()))
            assert members, f"{name}: DynamoDB rejects empty sets"
            assert len(members) == len(set(members)), f"{name}: DynamoDB rejects duplicate set members"
        assert isinstance(record["avatar"]["B"], bytes)
        assert record["avatar"]["B"].startswith(b"\x89PNG")
        for value in (record["age"], record["balance"], record["address"]["M"]["geo"]["M"]["lat"]):
            float(value["N"])  # numbers are text, parseable


def test_some_thumbnails_are_not_utf8() -> None:
    # Bytes that are not UTF-8 catch any layer that treats binary as text.
    rng = random.Random(3)
    assert any(not _is_utf8(user_record(rng)["avatar"]["B"]) for _ in range(20))


def test_update_changes_are_deterministic_and_typed() -> None:
    assert profile_changes(random.Random(5)) == profile_changes(random.Random(5))
    changes = preference_changes(random.Random(5))
    assert set(changes) == {"preferences"}
    assert {tag for value in changes["preferences"].values() for tag in value} == {"S", "BOOL"}


def nested_types(record: dict[str, Any]) -> set[str]:
    """Types of values that sit inside a map or a list (not at the top level)."""
    found: set[str] = set()
    for value in record.values():
        for tag, inner in value.items():
            members = inner.values() if tag == "M" else inner if tag == "L" else []
            for member in members:
                found |= attribute_types(member)
    return found


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
