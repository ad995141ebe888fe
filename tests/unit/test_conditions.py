"""The pure condition derivation: every combination of reconcile outcome and health, and the rules
that tie the conditions together (kstatus order, lastTransitionTime, observedGeneration)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ddbbridge.conditions import (
    ORDER,
    RESYNC_FRACTION,
    DirectionFacts,
    HealthFacts,
    Outcome,
    ReconcileFacts,
    derive_conditions,
    retention_seconds,
)
from ddbbridge.spec import DEGRADED_READY_REASONS, Condition, ConditionStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RETENTION = 24 * 3600.0


def direction(source: str = "cn", target: str = "sg", **values: Any) -> DirectionFacts:
    base = DirectionFacts(
        source,
        target,
        replicated_count=5,
        lag_seconds=0.5,
        on_failure_depth=0,
        dead_letter_depth=0,
        sender_mapping_state="Enabled",
        applier_mapping_state="Enabled",
        last_processing_result="OK",
    )
    return replace(base, **values)


def healthy(**first: Any) -> HealthFacts:
    return HealthFacts((direction(**first), direction("sg", "cn")), retention_seconds=RETENTION)


def by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def derive(
    reconcile: ReconcileFacts, health: HealthFacts | None, previous: list[Condition] | None = None
) -> dict[str, Condition]:
    return by_type(
        derive_conditions(generation=3, reconcile=reconcile, health=health, previous=previous or [], now=NOW)
    )


OK = ReconcileFacts(Outcome.OK)
TRANSIENT = ReconcileFacts(Outcome.TRANSIENT, "Throttling", "[cn] kinesis: slow down")
TERMINAL = ReconcileFacts(Outcome.TERMINAL, "TableMissing", "[sg] table 'x' does not exist")
PENDING = ReconcileFacts(Outcome.PENDING)

HEALTH_CASES = {
    "none": None,
    "healthy": healthy(),
    "dead-letter": healthy(dead_letter_depth=1),
    "on-failure": healthy(on_failure_depth=2),
    "mapping-disabled": healthy(applier_mapping_state="Disabled"),
    "mapping-missing": healthy(sender_mapping_state="missing"),
    "mapping-creating": healthy(sender_mapping_state="Creating"),
    "processing-problem": healthy(last_processing_result="PROBLEM: Function call failed"),
    "near-retention": healthy(lag_seconds=RESYNC_FRACTION * RETENTION),
    "unobservable": replace(healthy(), errors=("[cn->sg] queues: timeout",)),
    "paused": replace(
        healthy(sender_mapping_state="Disabled", applier_mapping_state="Disabled"), paused=True
    ),
}
# Expected Ready (status, reason) for an OK reconcile.
READY_WHEN_OK = {
    "none": ("Unknown", "AwaitingHealthCheck"),
    "healthy": ("True", "ReplicationHealthy"),
    "dead-letter": ("False", "DeadLetters"),
    "on-failure": ("False", "DeadLetters"),
    "mapping-disabled": ("False", "ReplicationFailing"),
    "mapping-missing": ("False", "ReplicationFailing"),
    "mapping-creating": ("False", "MappingsSettling"),
    "processing-problem": ("False", "ReplicationFailing"),
    "near-retention": ("False", "ResyncRequired"),
    "unobservable": ("Unknown", "HealthCheckFailed"),
    "paused": ("False", "Paused"),
}


@pytest.mark.parametrize(
    ("outcome", "health_case"),
    list(itertools.product([OK, TRANSIENT, TERMINAL, PENDING], HEALTH_CASES)),
    ids=lambda value: value.outcome.value if isinstance(value, ReconcileFacts) else str(value),
)
def test_every_combination(outcome: ReconcileFacts, health_case: str) -> None:
    health = HEALTH_CASES[health_case]
    conditions = derive_conditions(generation=3, reconcile=outcome, health=health, previous=[], now=NOW)
    assert [c.type for c in conditions] == [kind.value for kind in ORDER]
    found = by_type(conditions)
    assert all(c.observed_generation == 3 and c.last_transition_time == NOW for c in conditions)
    ready, synced, stalled = found["Ready"], found["Synced"], found["Stalled"]

    # Stalled and Synced depend on the reconcile alone.
    assert stalled.status == ("True" if outcome.outcome is Outcome.TERMINAL else "False")
    expected_synced = {Outcome.OK: "True", Outcome.TRANSIENT: "False", Outcome.TERMINAL: "False"}
    assert synced.status == expected_synced.get(outcome.outcome, "Unknown")

    # Ready is never True unless the reconcile succeeded AND replication is healthy.
    if outcome.outcome is Outcome.OK:
        assert (ready.status, ready.reason) == READY_WHEN_OK[health_case]
    elif outcome.outcome is Outcome.PENDING:
        assert (ready.status, ready.reason) == ("False", "Reconciling")
    else:
        assert (ready.status, ready.reason) == ("False", outcome.reason)
    if ready.status == "True":
        assert synced.status == "True" and stalled.status == "False"
        assert found["DeadLetters"].status == "False" and found["ResyncRequired"].status == "False"

    # The side conditions follow the health alone, whatever the reconcile said.
    letters = found["DeadLetters"]
    if health is None:
        assert letters.status == "Unknown" and found["ResyncRequired"].status == "Unknown"
    else:
        assert letters.status == ("True" if health_case in ("dead-letter", "on-failure") else "False")
        assert found["ResyncRequired"].status == ("True" if health_case == "near-retention" else "False")


def test_ready_reasons_that_need_a_person_are_the_ones_argo_cd_degrades() -> None:
    produced = {
        derive(OK, HEALTH_CASES[case])["Ready"].reason
        for case in ("dead-letter", "mapping-disabled", "near-retention")
    }
    assert produced == set(DEGRADED_READY_REASONS)


def test_dead_letters_carry_both_kinds_per_direction() -> None:
    health = HealthFacts(
        (direction(on_failure_depth=1, dead_letter_depth=2), direction("sg", "cn", dead_letter_depth=1)),
        retention_seconds=RETENTION,
    )
    found = derive(OK, health)
    assert health.dlq_depth == 4
    message = found["DeadLetters"].message
    assert "4 change(s)" in message
    assert "cn->sg: 3 (on-failure 1, with payload 2)" in message
    assert "sg->cn: 1 (on-failure 0, with payload 1)" in message
    assert found["Ready"].reason == "DeadLetters" and "replication continues" in found["Ready"].message


def test_unknown_depth_is_unknown_not_zero() -> None:
    found = derive(OK, healthy(dead_letter_depth=None))
    assert found["DeadLetters"].status == "Unknown"


def test_stalled_message_says_how_it_is_retried() -> None:
    found = by_type(
        derive_conditions(
            generation=1, reconcile=TERMINAL, health=None, previous=[], now=NOW, stalled_recheck_seconds=120
        )
    )
    assert found["Stalled"].reason == "TableMissing"
    assert "not retried until the spec changes" in found["Stalled"].message
    assert "every 120s" in found["Stalled"].message


def test_transition_time_changes_only_with_the_status() -> None:
    first = derive_conditions(generation=1, reconcile=OK, health=healthy(), previous=[], now=NOW)
    later = NOW + timedelta(minutes=5)
    # Same statuses, new message (more replicated): times stay.
    second = by_type(
        derive_conditions(
            generation=2, reconcile=OK, health=healthy(replicated_count=50), previous=first, now=later
        )
    )
    assert all(c.last_transition_time == NOW for c in second.values())
    assert second["Ready"].observed_generation == 2
    # Ready flips: only Ready and DeadLetters move.
    third = by_type(
        derive_conditions(
            generation=2,
            reconcile=OK,
            health=healthy(dead_letter_depth=1),
            previous=list(second.values()),
            now=later,
        )
    )
    moved = {kind for kind, c in third.items() if c.last_transition_time == later}
    assert moved == {"Ready", "DeadLetters"}
    assert third["Ready"].status is ConditionStatus.FALSE


def test_retention_is_the_shorter_window() -> None:
    assert retention_seconds(24) == 24 * 3600
    assert retention_seconds(168) == 24 * 3600  # the table stream keeps 24 h whatever Kinesis keeps
    below = healthy(lag_seconds=RESYNC_FRACTION * RETENTION - 1)
    assert derive(OK, below)["ResyncRequired"].status == "False"
