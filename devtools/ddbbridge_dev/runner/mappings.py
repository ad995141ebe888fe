"""Event source mappings of one region, read from its Lambda API, joined with their functions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ddbbridge_dev.runner.policy import MappingPolicy
from ddbbridge_dev.runner.workers import FunctionRuntime

log = logging.getLogger("ddbbridge.runner")

STREAM_SERVICES = ("dynamodb", "kinesis")


@dataclass(frozen=True)
class MappingSpec:
    """One stream mapping as the runner serves it; equality means 'nothing to restart'."""

    uuid: str
    region: str
    source_arn: str
    kind: str  # "dynamodb" | "kinesis"
    enabled: bool
    starting_position: str
    starting_timestamp: float | None
    created: float | None  # epoch seconds the mapping was last modified (LATEST starts here)
    policy: MappingPolicy
    runtime: FunctionRuntime


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _unqualified(function_arn: str) -> str:
    parts = function_arn.split(":")
    return ":".join(parts[:7])


def function_runtime(config: dict[str, Any], *, region: str, endpoint: str) -> FunctionRuntime:
    variables = (config.get("Environment") or {}).get("Variables") or {}
    return FunctionRuntime(
        region=region,
        endpoint=endpoint,
        function_name=config["FunctionName"],
        function_arn=config["FunctionArn"],
        handler=config.get("Handler") or "lambda_function.lambda_handler",
        code_sha256=config["CodeSha256"],
        environment=tuple(sorted((str(k), str(v)) for k, v in variables.items())),
        timeout=int(config.get("Timeout") or 3),
        memory=int(config.get("MemorySize") or 128),
        role=str(config.get("Role") or ""),
    )


def discover(lambda_client: Any, *, region: str, endpoint: str) -> list[MappingSpec]:
    """Every DynamoDB/Kinesis mapping of the region whose function exists and runs Python."""
    functions: dict[str, dict[str, Any]] = {}
    for page in lambda_client.get_paginator("list_functions").paginate():
        for config in page.get("Functions", []):
            functions[_unqualified(config["FunctionArn"])] = config
    specs: list[MappingSpec] = []
    for page in lambda_client.get_paginator("list_event_source_mappings").paginate():
        for mapping in page.get("EventSourceMappings", []):
            source_arn = str(mapping.get("EventSourceArn") or "")
            parts = source_arn.split(":")
            if len(parts) < 6 or parts[2] not in STREAM_SERVICES:
                continue
            config = functions.get(_unqualified(str(mapping.get("FunctionArn") or "")))
            if config is None:
                continue  # function deleted; the mapping delivers nothing
            runtime_name = str(config.get("Runtime") or "python3.11")
            if not runtime_name.startswith("python"):
                log.warning("mapping %s: runtime %s is not supported locally", mapping["UUID"], runtime_name)
                continue
            state = str(mapping.get("State") or "Enabled")
            specs.append(
                MappingSpec(
                    uuid=str(mapping["UUID"]),
                    region=region,
                    source_arn=source_arn,
                    kind=parts[2],
                    enabled=state in ("Enabled", "Enabling", "Creating", "Updating"),
                    starting_position=str(mapping.get("StartingPosition") or "TRIM_HORIZON"),
                    starting_timestamp=_epoch(mapping.get("StartingPositionTimestamp")),
                    created=_epoch(mapping.get("LastModified")),
                    policy=MappingPolicy.from_mapping(mapping),
                    runtime=function_runtime(config, region=region, endpoint=endpoint),
                )
            )
    return specs
