"""The load plan: deterministic keys of any schema, a coherent mix, a conflict pool both sides share."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from ddbbridge.comparison import canonical_key
from ddbbridge.loadplan import KeyFactory, LoadMix, Operation, OperationKind, plan_operations, plan_rng
from ddbbridge_lambdas.config import KeyAttribute

SCHEMAS = {
    "hash S": (KeyAttribute("user_id", "S", "HASH"),),
    "hash N": (KeyAttribute("id", "N", "HASH"),),
    "hash B": (KeyAttribute("raw", "B", "HASH"),),
    "hash N + range S": (KeyAttribute("tenant", "N", "HASH"), KeyAttribute("sk", "S", "RANGE")),
    "hash S + range B": (KeyAttribute("pk", "S", "HASH"), KeyAttribute("blob", "B", "RANGE")),
    "hash B + range N": (KeyAttribute("pk", "B", "HASH"), KeyAttribute("n", "N", "RANGE")),
}


def plan(
    schema: tuple[KeyAttribute, ...], side: str, position: int, *, seed: int, count: int, mix: LoadMix
) -> list[Operation]:
    keys = KeyFactory(schema, side, position, seed)
    return list(plan_operations(keys, mix, count, plan_rng(seed, side)))


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_keys_follow_the_schema_and_never_collide(schema: tuple[KeyAttribute, ...]) -> None:
    factories = [
        KeyFactory(schema, side, position, seed)
        for (side, position), seed in itertools.product([("cn", 0), ("sg", 1)], [1, 2])
    ]
    seen: set[str] = set()
    for factory in factories:
        for index in range(300):
            key = factory.own(index)
            assert list(key) == [k.name for k in schema]
            for attribute in schema:
                assert set(key[attribute.name]) == {attribute.type}
            text = canonical_key(key, schema)
            assert text not in seen
            seen.add(text)
    shared = {canonical_key(factories[0].shared(i), schema) for i in range(50)}
    assert not shared & seen
    # The conflict pool depends on nothing but the index: every side and seed names it alike.
    for factory in factories[1:]:
        assert {canonical_key(factory.shared(i), schema) for i in range(50)} == shared


def test_composite_keys_group_several_items_under_one_partition_key() -> None:
    schema = SCHEMAS["hash N + range S"]
    keys = [KeyFactory(schema, "cn", 0, 9).own(i) for i in range(6)]
    assert len({k["tenant"]["N"] for k in keys}) == 2
    assert len({(k["tenant"]["N"], k["sk"]["S"]) for k in keys}) == 6


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    mix = LoadMix(conflict_keys=10)
    schema = SCHEMAS["hash S"]
    first = plan(schema, "cn", 0, seed=5, count=300, mix=mix)
    assert first == plan(schema, "cn", 0, seed=5, count=300, mix=mix)
    assert first != plan(schema, "cn", 0, seed=6, count=300, mix=mix)
    # Each side has its own stream of operations.
    assert [op.kind for op in first] != [op.kind for op in plan(schema, "sg", 1, seed=5, count=300, mix=mix)]


def test_mix_is_coherent_deletes_hit_live_keys_and_reinserts_hit_deleted_ones() -> None:
    schema = SCHEMAS["hash N + range S"]
    mix = LoadMix(
        delete_ratio=0.2, update_ratio=0.3, unstamped_ratio=0.25, conflict_keys=20, conflict_ratio=0.3
    )
    operations = plan(schema, "cn", 0, seed=11, count=4000, mix=mix)
    assert len(operations) == 4000
    live: set[str] = set()
    ever: set[str] = set()
    kinds: Counter[str] = Counter()
    for op in operations:
        text = canonical_key(op.key, schema)
        kinds[op.kind] += 1
        kinds["shared"] += op.shared
        kinds["unstamped"] += not op.stamped and op.kind is not OperationKind.DELETE
        kinds["reinsert"] += op.reinsert
        if op.shared:
            assert not op.nested, "a shared key may have been deleted by the peer: no nested paths"
            continue
        if op.kind is OperationKind.DELETE:
            assert text in live
            assert not op.stamped and not op.attributes
            live.remove(text)
        elif op.kind is OperationKind.UPDATE:
            assert text in live and op.nested and op.attributes
        else:
            assert op.reinsert == (text in ever)
            assert text not in live
            live.add(text)
            ever.add(text)
            assert {"avatar", "preferences", "tags"} <= set(op.attributes)
    total = 4000
    assert 0.2 * total < kinds["shared"] < 0.4 * total
    assert 0.12 * total < kinds[OperationKind.DELETE] < 0.28 * total
    assert 0.2 * total < kinds[OperationKind.UPDATE] < 0.4 * total
    assert 0.15 * total < kinds["unstamped"] < 0.35 * total
    assert kinds["reinsert"] > 0


def test_zero_ratios_mean_only_fresh_stamped_puts() -> None:
    mix = LoadMix(delete_ratio=0, update_ratio=0, unstamped_ratio=0)
    operations = plan(SCHEMAS["hash S"], "cn", 0, seed=1, count=500, mix=mix)
    assert {op.kind for op in operations} == {OperationKind.PUT}
    assert all(op.stamped and not op.shared and not op.reinsert for op in operations)
    assert len({op.key["user_id"]["S"] for op in operations}) == 500


@pytest.mark.parametrize(
    "bad",
    [
        {"delete_ratio": -0.1},
        {"update_ratio": 1.5},
        {"delete_ratio": 0.6, "update_ratio": 0.6},
        {"conflict_keys": -1},
        {"unstamped_ratio": 2},
    ],
)
def test_invalid_mixes_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LoadMix(**bad)  # type: ignore[arg-type]
