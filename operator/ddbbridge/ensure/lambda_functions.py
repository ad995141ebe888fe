"""The sender and applier functions: code by CodeSha256, configuration, reserved concurrency, tags."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from ddbbridge.desired import Function
from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes
from ddbbridge.errors import TransientError, error_code
from ddbbridge.package import CodeBundle

# A role created seconds ago may not be assumable by Lambda yet (IAM is eventually consistent).
ROLE_PROPAGATION_SECONDS = 60.0


@dataclass(frozen=True)
class FunctionObserved:
    name: str
    arn: str
    code_sha256: str
    state: str


def get_function(ctx: EnsureContext, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = ctx.client("lambda").get_function(FunctionName=name)
        return found
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def _role_not_ready(error: botocore.exceptions.ClientError) -> bool:
    message = str(error.response.get("Error", {}).get("Message", ""))
    return error_code(error) == "InvalidParameterValueException" and "role" in message.lower()


def _create(ctx: EnsureContext, desired: Function, bundle: CodeBundle) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "FunctionName": desired.name,
        "Runtime": desired.runtime,
        "Role": desired.role_arn,
        "Handler": desired.handler,
        "Code": {"ZipFile": bundle.zip_bytes},
        "Timeout": desired.timeout_seconds,
        "MemorySize": desired.memory_mb,
        "Environment": {"Variables": desired.environment},
        "Tags": desired.tags,
        "Publish": False,
    }
    if desired.subnet_ids:
        kwargs["VpcConfig"] = {
            "SubnetIds": list(desired.subnet_ids),
            "SecurityGroupIds": list(desired.security_group_ids),
        }
    deadline = time.monotonic() + ROLE_PROPAGATION_SECONDS
    delay = 1.0
    while True:
        try:
            created: dict[str, Any] = ctx.client("lambda").create_function(**kwargs)
            return created
        except botocore.exceptions.ClientError as error:
            if not _role_not_ready(error):
                raise
            if time.monotonic() + delay > deadline:
                raise TransientError(
                    f"role {desired.role_arn} still not assumable by Lambda after "
                    f"{ROLE_PROPAGATION_SECONDS:.0f}s"
                ) from error
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _configuration_changes(current: dict[str, Any], desired: Function) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if current.get("Runtime") != desired.runtime:
        changes["Runtime"] = desired.runtime
    if current.get("Handler") != desired.handler:
        changes["Handler"] = desired.handler
    if current.get("Role") != desired.role_arn:
        changes["Role"] = desired.role_arn
    if current.get("MemorySize") != desired.memory_mb:
        changes["MemorySize"] = desired.memory_mb
    if current.get("Timeout") != desired.timeout_seconds:
        changes["Timeout"] = desired.timeout_seconds
    if (current.get("Environment") or {}).get("Variables", {}) != desired.environment:
        changes["Environment"] = {"Variables": desired.environment}
    vpc = current.get("VpcConfig") or {}
    if sorted(vpc.get("SubnetIds") or []) != sorted(desired.subnet_ids) or sorted(
        vpc.get("SecurityGroupIds") or []
    ) != sorted(desired.security_group_ids):
        changes["VpcConfig"] = {
            "SubnetIds": list(desired.subnet_ids),
            "SecurityGroupIds": list(desired.security_group_ids),
        }
    return changes


def _wait_updated(ctx: EnsureContext, name: str) -> None:
    def done() -> bool:
        config = ctx.client("lambda").get_function_configuration(FunctionName=name)
        return config.get("State", "Active") == "Active" and config.get("LastUpdateStatus", "Successful") in (
            "Successful",
            "Failed",
        )

    ctx.settle(f"function {name}", done)


def ensure_function(ctx: EnsureContext, desired: Function, bundle: CodeBundle) -> FunctionObserved:
    lam = ctx.client("lambda")
    found = get_function(ctx, desired.name)
    if found is None:
        created = ctx.change(
            "lambda",
            "create",
            desired.name,
            lambda: _create(ctx, desired, bundle),
            detail=f"{desired.runtime} {desired.handler}, code {bundle.code_sha256}",
        )
        if desired.reserved_concurrency is not None:
            ctx.change(
                "lambda",
                "update",
                desired.name,
                lambda: lam.put_function_concurrency(
                    FunctionName=desired.name, ReservedConcurrentExecutions=desired.reserved_concurrency
                ),
                detail=f"reserved concurrency {desired.reserved_concurrency}",
            )
        if created is None:
            return FunctionObserved(desired.name, desired.arn, bundle.code_sha256, "(planned)")
        _wait_updated(ctx, desired.name)
        return FunctionObserved(desired.name, created["FunctionArn"], created["CodeSha256"], "Active")

    config = found["Configuration"]
    if config.get("State") == "Pending" or config.get("LastUpdateStatus") == "InProgress":
        _wait_updated(ctx, desired.name)
    changes = _configuration_changes(config, desired)
    if changes:
        ctx.change(
            "lambda",
            "update",
            desired.name,
            lambda: lam.update_function_configuration(FunctionName=desired.name, **changes),
            detail="configuration: " + ", ".join(sorted(changes)),
        )
        if not ctx.dry_run:
            _wait_updated(ctx, desired.name)
    code_sha = str(config.get("CodeSha256"))
    if code_sha != bundle.code_sha256:
        ctx.change(
            "lambda",
            "update",
            desired.name,
            lambda: lam.update_function_code(FunctionName=desired.name, ZipFile=bundle.zip_bytes),
            detail=f"code {code_sha} -> {bundle.code_sha256}",
        )
        if not ctx.dry_run:
            _wait_updated(ctx, desired.name)
            code_sha = bundle.code_sha256
    reserved = (found.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
    if reserved != desired.reserved_concurrency:
        if desired.reserved_concurrency is None:
            ctx.change(
                "lambda",
                "update",
                desired.name,
                lambda: lam.delete_function_concurrency(FunctionName=desired.name),
                detail="no reserved concurrency",
            )
        else:
            ctx.change(
                "lambda",
                "update",
                desired.name,
                lambda: lam.put_function_concurrency(
                    FunctionName=desired.name, ReservedConcurrentExecutions=desired.reserved_concurrency
                ),
                detail=f"reserved concurrency {reserved} -> {desired.reserved_concurrency}",
            )
    missing_tags = tag_changes(found.get("Tags") or {}, desired.tags)
    if missing_tags:
        ctx.change(
            "lambda",
            "tag",
            desired.name,
            lambda: lam.tag_resource(Resource=config["FunctionArn"], Tags=missing_tags),
            detail=", ".join(sorted(missing_tags)),
        )
    return FunctionObserved(desired.name, config["FunctionArn"], code_sha, str(config.get("State", "Active")))


def delete_function(ctx: EnsureContext, name: str) -> None:
    if get_function(ctx, name) is None:
        return

    def delete() -> None:
        try:
            ctx.client("lambda").delete_function(FunctionName=name)
        except botocore.exceptions.ClientError as error:
            if not is_missing(error):
                raise

    ctx.change("lambda", "delete", name, delete)
