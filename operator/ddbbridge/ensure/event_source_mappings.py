"""Event source mappings: the user table's stream -> sender, the inbound Kinesis stream -> applier.

A mapping of our function whose source is not the desired one (the table's stream was re-enabled and
has a new ARN) is deleted: the function is ours, so is every mapping feeding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ddbbridge.desired import Mapping
from ddbbridge.ensure.context import EnsureContext, is_missing
from ddbbridge.errors import TransientError

SETTLED_STATES = ("Enabled", "Disabled")


@dataclass(frozen=True)
class MappingObserved:
    function_name: str
    uuid: str | None
    state: str
    last_processing_result: str | None
    event_source_arn: str


def list_mappings(ctx: EnsureContext, function_name: str) -> list[dict[str, Any]]:
    lam = ctx.client("lambda")
    mappings: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"FunctionName": function_name}
    try:
        while True:
            page = lam.list_event_source_mappings(**kwargs)
            mappings.extend(page.get("EventSourceMappings", []))
            if not page.get("NextMarker"):
                return mappings
            kwargs["Marker"] = page["NextMarker"]
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return []
        raise


def _settings(desired: Mapping) -> dict[str, Any]:
    return {
        "BatchSize": desired.batch_size,
        "MaximumBatchingWindowInSeconds": desired.maximum_batching_window_seconds,
        "MaximumRetryAttempts": desired.maximum_retry_attempts,
        "MaximumRecordAgeInSeconds": desired.maximum_record_age_seconds,
        "BisectBatchOnFunctionError": desired.bisect_batch_on_function_error,
        "ParallelizationFactor": desired.parallelization_factor,
        "FunctionResponseTypes": list(desired.function_response_types),
        "DestinationConfig": {"OnFailure": {"Destination": desired.on_failure_arn}},
    }


def _differences(current: dict[str, Any], desired: Mapping) -> dict[str, Any]:
    wanted = _settings(desired)
    changes = {
        key: value
        for key, value in wanted.items()
        if key not in ("FunctionResponseTypes", "DestinationConfig") and current.get(key) != value
    }
    if sorted(current.get("FunctionResponseTypes") or []) != sorted(wanted["FunctionResponseTypes"]):
        changes["FunctionResponseTypes"] = wanted["FunctionResponseTypes"]
    destination = ((current.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if destination != desired.on_failure_arn:
        changes["DestinationConfig"] = wanted["DestinationConfig"]
    state = current.get("State")
    if (state in ("Enabled", "Enabling")) != desired.enabled:
        changes["Enabled"] = desired.enabled
    return changes


def ensure_mapping(ctx: EnsureContext, desired: Mapping) -> MappingObserved:
    lam = ctx.client("lambda")
    existing = list_mappings(ctx, desired.function_name)
    for stale in existing:
        if stale["EventSourceArn"] != desired.event_source_arn:
            ctx.change(
                "lambda",
                "delete",
                f"mapping {stale['UUID']}",
                lambda uuid=stale["UUID"]: lam.delete_event_source_mapping(UUID=uuid),  # type: ignore[misc]
                detail=f"stale source {stale['EventSourceArn']}",
            )
    current = next((m for m in existing if m["EventSourceArn"] == desired.event_source_arn), None)
    if current is None:
        created = ctx.change(
            "lambda",
            "create",
            f"mapping {desired.function_name}",
            lambda: lam.create_event_source_mapping(
                FunctionName=desired.function_name,
                EventSourceArn=desired.event_source_arn,
                StartingPosition=desired.starting_position,
                Enabled=desired.enabled,
                **_settings(desired),
            ),
            detail=f"from {desired.event_source_arn}",
        )
        if created is None:
            return MappingObserved(desired.function_name, None, "(planned)", None, desired.event_source_arn)
        return MappingObserved(
            desired.function_name,
            created["UUID"],
            created.get("State", "Creating"),
            created.get("LastProcessingResult"),
            desired.event_source_arn,
        )
    if current.get("State") not in SETTLED_STATES and current.get("State") not in ("Enabling", "Disabling"):
        raise TransientError(
            f"mapping {current['UUID']} of {desired.function_name} is {current.get('State')}"
        )
    changes = _differences(current, desired)
    if changes:
        ctx.change(
            "lambda",
            "update",
            f"mapping {desired.function_name}",
            lambda: lam.update_event_source_mapping(UUID=current["UUID"], **changes),
            detail=", ".join(sorted(changes)),
        )
    return MappingObserved(
        desired.function_name,
        current["UUID"],
        str(current.get("State")),
        current.get("LastProcessingResult"),
        desired.event_source_arn,
    )


def delete_mappings(ctx: EnsureContext, function_name: str) -> None:
    lam = ctx.client("lambda")
    for mapping in list_mappings(ctx, function_name):
        if mapping.get("State") == "Deleting":
            continue

        def delete(uuid: str = mapping["UUID"]) -> None:
            try:
                lam.delete_event_source_mapping(UUID=uuid)
            except botocore.exceptions.ClientError as error:
                if not is_missing(error):
                    raise

        ctx.change("lambda", "delete", f"mapping {mapping['UUID']}", delete, detail=function_name)
