"""SSM parameters holding a peer-writer key in the region whose sender uses it.

Values are never read back decrypted: whether the stored key is the live one is decided from the
access key id (a String) and the presence and type of the secret parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes

MISSING_PARAMETER = ("ParameterNotFound",)


@dataclass(frozen=True)
class StoredKey:
    access_key_id: str | None
    secret_present: bool  # present AND a SecureString


def read_stored_key(ctx: EnsureContext, id_parameter: str, secret_parameter: str) -> StoredKey:
    found = ctx.client("ssm").get_parameters(Names=[id_parameter, secret_parameter], WithDecryption=False)
    by_name = {p["Name"]: p for p in found.get("Parameters", [])}
    identifier = by_name.get(id_parameter)
    secret = by_name.get(secret_parameter)
    return StoredKey(
        access_key_id=identifier["Value"] if identifier else None,
        secret_present=secret is not None and secret.get("Type") == "SecureString",
    )


def put_parameter(
    ctx: EnsureContext, name: str, value: str, *, secure: bool, tags: dict[str, str], exists: bool
) -> None:
    """Write a parameter (tags only on creation: SSM refuses Tags together with Overwrite)."""
    ssm = ctx.client("ssm")
    kind = "SecureString" if secure else "String"
    if exists:
        ctx.change(
            "ssm",
            "put",
            name,
            lambda: ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True),
            detail=kind,
        )
    else:
        ctx.change(
            "ssm",
            "put",
            name,
            lambda: ssm.put_parameter(
                Name=name,
                Value=value,
                Type=kind,
                Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
            ),
            detail=kind,
        )


def ensure_parameter_tags(ctx: EnsureContext, name: str, tags: dict[str, str]) -> None:
    ssm = ctx.client("ssm")
    try:
        current = {
            t["Key"]: t["Value"]
            for t in ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name).get("TagList", [])
        }
    except botocore.exceptions.ClientError as error:
        if is_missing(error, "InvalidResourceId", *MISSING_PARAMETER):
            return
        raise
    missing = tag_changes(current, tags)
    if missing:
        ctx.change(
            "ssm",
            "tag",
            name,
            lambda: ssm.add_tags_to_resource(
                ResourceType="Parameter",
                ResourceId=name,
                Tags=[{"Key": k, "Value": v} for k, v in sorted(missing.items())],
            ),
            detail=", ".join(sorted(missing)),
        )


def delete_parameters(ctx: EnsureContext, names: list[str]) -> None:
    ssm = ctx.client("ssm")
    found = ssm.get_parameters(Names=names, WithDecryption=False).get("Parameters", [])
    present = sorted(p["Name"] for p in found)
    if present:
        ctx.change(
            "ssm",
            "delete",
            ", ".join(present),
            lambda: ssm.delete_parameters(Names=present),
        )
