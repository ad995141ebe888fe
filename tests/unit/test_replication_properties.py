"""Property tests of the conflict core: two regions, any interleaving, duplicates and reordering.

Operations are drawn by hypothesis and interpreted by the model in `replication_model`; every
decision inside is made by the real pure functions of `ddbbridge_lambdas.decisions`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.replication_model import Model, item_version

KEYS = ("k1", "k2")
REGIONS = ("a", "b")

stamps = st.one_of(
    st.just(("none", None)),
    st.tuples(st.just("now"), st.integers(-3, 3)),
    st.tuples(
        st.just("fixed"), st.sampled_from([Decimal(999), Decimal(1000), Decimal(1001), Decimal("1000.5")])
    ),
    st.tuples(st.just("peer"), st.integers(-2, 2)),
    st.just(("bad", None)),
    st.just(("copy", None)),
    st.tuples(st.just("stale"), st.integers(0, 10)),
)
region_st = st.sampled_from(REGIONS)
key_st = st.sampled_from(KEYS)

operations = st.one_of(
    st.tuples(st.just("put"), region_st, key_st, stamps),
    st.tuples(st.just("update"), region_st, key_st),
    st.tuples(st.just("delete"), region_st, key_st),
    st.tuples(st.just("sender_read"), region_st),
    st.tuples(st.just("sender_write"), region_st),
    st.tuples(st.just("sender_step"), region_st),
    st.tuples(st.just("sender_rewind"), region_st, st.integers(1, 4)),
    st.tuples(st.just("applier_read"), region_st, st.integers(0, 50)),
    st.tuples(st.just("applier_write"), region_st, st.booleans()),
    st.tuples(st.just("tick"), st.sampled_from([Decimal(0), Decimal(1), Decimal("0.5"), Decimal(3)])),
)


def run(model: Model, ops: list[tuple[Any, ...]]) -> None:
    contents = model.contents  # unique across calls: contents are the history's event ids
    for op in ops:
        name = op[0]
        if name == "put":
            model.app_put(op[1], op[2], f"c{next(contents)}", op[3])
        elif name == "update":
            model.app_update(op[1], op[2], f"c{next(contents)}")
        elif name == "delete":
            model.app_delete(op[1], op[2])
        elif name == "sender_read":
            model.sender_read(op[1])
        elif name == "sender_write":
            model.sender_write(op[1])
        elif name == "sender_step":
            model.sender_read(op[1])
            model.sender_write(op[1])
        elif name == "sender_rewind":
            model.sender_rewind(op[1], op[2])
        elif name == "applier_read":
            model.applier_read(op[1], op[2])
        elif name == "applier_write":
            model.applier_write(op[1], op[2])
        elif name == "tick":
            model.now += op[1]
        model.observe()


def check_invariants(model: Model) -> None:
    a, b = model.regions["a"], model.regions["b"]
    # Convergence: exactly the same items, stamps included.
    assert a.table == b.table
    for key in KEYS:
        final = a.table.get(key)
        version = item_version(final)
        if final is not None:
            # Every item that survives carries a valid version, and it is above every tombstone
            # either region ever recorded for the key: no delete was undone by an older version.
            assert version is not None
            for tombstone in model.tombstones.get(key, []):
                assert version > tombstone, (key, version, tombstone)
        # The item holds each region's high-water mark (or the key is deleted everywhere).
        for region in (a, b):
            entry = region.ledger.get(key)
            if entry is not None and final is not None:
                assert entry[0].version == version
            if entry is not None and final is None:
                assert entry[0].tombstone
    # Loop prevention: a region only ever sends versions it created (asserted in the model) and
    # keys written in one region only are never sent back by the other.
    for key, writers in model.app_ops.items():
        if len(writers) == 1:
            (writer,) = writers
            other = model.regions["b" if writer == "a" else "a"]
            assert not [w for w in other.sent if w.key == key], f"{key} bounced from {other.name}"


def single_writer_final(model: Model, ops: list[tuple[Any, ...]]) -> None:
    """When only one region writes a key, its final local state is what both sides hold."""
    for key, writers in model.app_ops.items():
        if len(writers) == 1:
            (writer,) = writers
            local = model.regions[writer].table.get(key)
            other = model.regions["b" if writer == "a" else "a"].table.get(key)
            assert (local is None) == (other is None)
            if local is not None and other is not None:
                assert local["data"] == other["data"]


SETTINGS = settings(
    max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)


@SETTINGS
@given(
    ops=st.lists(operations, max_size=70),
    unit=st.sampled_from(["seconds", "milliseconds"]),
    skew_a=st.sampled_from([Decimal(0), Decimal(-5), Decimal(5), Decimal("0.000001")]),
    skew_b=st.sampled_from([Decimal(0), Decimal(-5), Decimal(5)]),
)
def test_any_interleaving_converges_without_resurrection(
    ops: list[tuple[Any, ...]], unit: Any, skew_a: Decimal, skew_b: Decimal
) -> None:
    model = Model(unit, skew_a, skew_b)
    run(model, ops)
    model.drain()
    check_invariants(model)
    single_writer_final(model, ops)
    # Causality: no write or delete a region had seen before its own later write or delete
    # survives it (a local change not yet sent wins over a peer version arriving meanwhile).
    assert not model.history.violations(model.regions["a"].table)


@SETTINGS
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.just("a"), key_st, stamps),
            st.tuples(st.just("update"), st.just("a"), key_st),
            st.tuples(st.just("delete"), st.just("a"), key_st),
            st.tuples(st.just("sender_step"), region_st),
            st.tuples(st.just("sender_rewind"), region_st, st.integers(1, 4)),
            st.tuples(st.just("applier_read"), region_st, st.integers(0, 50)),
            st.tuples(st.just("applier_write"), region_st, st.booleans()),
            st.tuples(st.just("tick"), st.sampled_from([Decimal(0), Decimal(1)])),
        ),
        max_size=60,
    ),
    unit=st.sampled_from(["seconds", "milliseconds"]),
)
def test_single_writer_state_reaches_the_peer_and_nothing_bounces(
    ops: list[tuple[Any, ...]], unit: Any
) -> None:
    model = Model(unit, Decimal(0), Decimal(-5))
    run(model, ops)
    model.drain()
    check_invariants(model)
    single_writer_final(model, ops)
    assert not model.regions["b"].sent


def test_a_delete_beats_an_older_peer_version_applied_before_the_sender_saw_it() -> None:
    """a writes V1 and deletes it; before a's sender reads either record, the applier in a puts an
    older peer version into the now absent item. The delete must win in both regions."""
    model = Model("milliseconds", Decimal(0), Decimal(0))
    model.app_put("b", "k1", "old-peer", ("now", -10))  # b's version, older than a's
    model.sender_read("b")
    model.sender_write("b")
    model.app_put("a", "k1", "v1", ("now", 0))
    model.app_delete("a", "k1")
    model.applier_read("a", 0)
    model.applier_write("a", keep=False)
    assert model.regions["a"].table["k1"]["data"] == {"S": "old-peer"}
    model.drain()
    check_invariants(model)
    assert "k1" not in model.regions["a"].table
    assert "k1" not in model.regions["b"].table


def test_a_peer_version_arriving_over_an_unsent_local_write_loses_to_it() -> None:
    """a holds H (stamped ahead) and then an unstamped write U, neither seen by a's sender; b's
    older version P arrives. P must not be put over U (and later re-stamped as a's own content,
    outliving b's delete of P): the pending local change wins, its re-stamp goes above P."""
    model = Model("seconds", Decimal(0), Decimal(0))
    run(model, [("put", "b", "k1", ("now", 0)), ("sender_step", "b")])  # P, on its way to a
    run(model, [("put", "a", "k1", ("now", 5)), ("put", "a", "k1", ("none", None))])  # H, U
    run(model, [("applier_read", "a", 0), ("applier_write", "a", False)])
    assert model.regions["a"].table["k1"]["data"] == {"S": "c2"}  # U stays
    run(model, [("delete", "b", "k1")])
    model.drain()
    check_invariants(model)
    assert model.regions["a"].table["k1"]["data"] == {"S": "c2"}
    assert not model.history.violations(model.regions["a"].table)


def test_an_application_write_naming_the_peer_after_a_local_delete_survives() -> None:
    """a sends X, deletes it and writes Y stamped with b's name before its sender saw the delete.
    Y came after the delete: the tombstone must not take it for the applier's write."""
    model = Model("seconds", Decimal(0), Decimal(0))
    run(model, [("put", "a", "k1", ("now", 0)), ("sender_step", "a")])
    run(model, [("delete", "a", "k1"), ("put", "a", "k1", ("peer", -1))])
    model.drain()
    check_invariants(model)
    assert model.regions["a"].table["k1"]["data"] == {"S": "c1"}
    assert not model.history.violations(model.regions["a"].table)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), region_st, st.just("k1"), stamps),
            st.tuples(st.just("update"), region_st, st.just("k1")),
            st.tuples(st.just("delete"), region_st, st.just("k1")),
            st.tuples(st.just("sender_step"), region_st),
            st.tuples(st.just("applier_read"), region_st, st.integers(0, 3)),
            st.tuples(st.just("applier_write"), region_st, st.booleans()),
            st.tuples(st.just("tick"), st.sampled_from([Decimal(0), Decimal(1)])),
        ),
        max_size=30,
    ),
    unit=st.sampled_from(["seconds", "milliseconds"]),
    skew_a=st.sampled_from([Decimal(0), Decimal(5)]),
)
def test_one_key_no_write_or_delete_survives_a_later_one_that_had_seen_it(
    ops: list[tuple[Any, ...]], unit: Any, skew_a: Decimal
) -> None:
    """Dense conflicts on one key: the causality check of the edge test, plus convergence."""
    model = Model(unit, skew_a, Decimal(0))
    run(model, ops)
    model.drain()
    check_invariants(model)
    assert not model.history.violations(model.regions["a"].table)


def test_a_peer_version_over_a_pending_first_write_of_a_key_is_not_relabelled() -> None:
    """a writes H (stamped ahead) and L (stamped behind) to a key its ledger has never seen; before
    a's sender reads either, b's version P (between them) arrives. With no ledger entry the item's
    own stamp stands for itself, so P is put over L. a's sender then sends H above P; re-stamping L
    finds P in its place, recognises the applier's put the ledger has passed, and writes L back with
    the fresh stamp. P is never relabelled as a's content, so it cannot outlive b's delete of P."""
    model = Model("seconds", Decimal(0), Decimal(0))
    run(model, [("put", "b", "k1", ("now", 0)), ("sender_step", "b")])  # P
    run(model, [("put", "a", "k1", ("now", 5)), ("put", "a", "k1", ("now", -5))])  # H, L
    run(model, [("applier_read", "a", 0), ("applier_write", "a", False)])
    run(model, [("delete", "b", "k1")])
    model.drain()
    check_invariants(model)
    assert not model.history.violations(model.regions["a"].table)
    # L, a's last write, is the winner in both regions (P = c0, H = c1, L = c2).
    assert model.regions["a"].table["k1"]["data"] == {"S": "c2"}
