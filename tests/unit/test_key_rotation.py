"""The pure rotation decision, the rotate-key request rule, and what a forced deletion reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ddbbridge.errors import ErrorReport
from ddbbridge.key_rotation import KeyFacts, RotationPlan, forced_rotation, plan_rotation
from ddbbridge.leftovers import leftovers
from ddbbridge.reconcile import RunResult

NOW = datetime(2026, 3, 1, tzinfo=UTC)
OVERLAP = timedelta(minutes=30)


def key(ident: str, age: timedelta, active: bool = True) -> KeyFacts:
    return KeyFacts(ident, active, NOW - age)


def plan(
    keys: list[KeyFacts], stored: str | None, forced: bool = False, days: int | None = 30
) -> RotationPlan:
    return plan_rotation(
        keys,
        stored_key_id=stored,
        secret_stored=stored is not None,
        rotation_days=days,
        forced=forced,
        overlap=OVERLAP,
        now=NOW,
    )


def test_fresh_user_gets_a_key() -> None:
    decided = plan([], None)
    assert decided.create and decided.live is None and not decided.rotating


def test_young_live_key_is_kept() -> None:
    decided = plan([key("A", timedelta(days=1))], "A")
    assert not decided.create and decided.retire == ()


def test_due_key_rotates_and_keeps_the_old_one_for_the_overlap() -> None:
    decided = plan([key("A", timedelta(days=31))], "A")
    assert decided.create and decided.rotating and decided.delete_before_create == ()


def test_forced_rotation_of_a_young_key() -> None:
    decided = plan([key("A", timedelta(hours=1))], "A", forced=True)
    assert decided.create and decided.forced


def test_old_key_retired_only_after_the_overlap() -> None:
    old, new = key("A", timedelta(days=31)), key("B", timedelta(minutes=10))
    during = plan([old, new], "B")
    assert not during.create and during.retire == ()
    after = plan([old, key("B", OVERLAP)], "B")
    assert [k.access_key_id for k in after.retire] == ["A"]


def test_rotation_due_during_an_overlap_waits() -> None:
    decided = plan([key("A", timedelta(days=40)), key("B", timedelta(minutes=5))], "B", forced=True)
    assert decided.wait and not decided.create


def test_two_keys_past_the_overlap_make_room_first() -> None:
    decided = plan([key("A", timedelta(days=40)), key("B", timedelta(days=31))], "B")
    assert decided.create
    assert [k.access_key_id for k in decided.delete_before_create] == ["A"]


def test_unknown_or_inactive_stored_key_is_replaced() -> None:
    assert plan([key("A", timedelta(days=1))], "Z").create
    assert plan([key("A", timedelta(days=1), active=False)], "A").create
    lost_secret = plan_rotation(
        [key("A", timedelta(days=1))],
        stored_key_id="A",
        secret_stored=False,
        rotation_days=30,
        forced=False,
        overlap=OVERLAP,
        now=NOW,
    )
    assert lost_secret.create and lost_secret.live is None


def test_keys_never_stored_are_deleted_at_once() -> None:
    """A reconcile killed between CreateAccessKey and storing it left a key no sender can hold."""
    decided = plan([key("A", timedelta(minutes=1))], None)
    assert decided.create and decided.live is None
    assert [k.access_key_id for k in decided.delete_before_create] == ["A"]


def test_rotation_request_rule() -> None:
    assert not forced_rotation(None, None, has_key=True)
    assert forced_rotation("1", None, has_key=True)
    assert not forced_rotation("1", "1", has_key=True)
    assert forced_rotation("2", "1", has_key=True)
    assert not forced_rotation("1", None, has_key=False)  # a new pair gets a new key anyway


def test_leftovers_list_iam_keys_first() -> None:
    result = RunResult("p", "destroy", False)
    for region, step in [
        ("sg", "queue ddbbridge-p-sg-dead-letters"),
        ("sg", "function ddbbridge-p-sg-sender"),
        ("sg", "peer key parameters"),
        ("sg", "user ddbbridge-p-sg-peer-writer"),
    ]:
        result.errors.append(ErrorReport(region, step, "unreachable", terminal=False))
    lines = leftovers(result)
    assert lines[0].startswith("[sg] IAM user ddbbridge-p-sg-peer-writer with its access keys")
    assert lines[1].startswith("[sg] SSM parameters with the peer's access key")
    assert lines[2].startswith("[sg] function") and lines[3].startswith("[sg] queue")
    assert leftovers(RunResult("p", "destroy", False)) == []
