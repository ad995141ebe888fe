"""IAM roles of the two functions and the peer-writer user: trust, one inline policy, tags.

Policy documents are compared as parsed JSON (botocore decodes IAM's URL-encoded documents), so a
role whose policy already says the same thing is left untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import botocore.exceptions

from ddbbridge.desired import Policy, Role, User
from ddbbridge.ensure.context import EnsureContext, is_missing, tag_changes


@dataclass(frozen=True)
class PrincipalObserved:
    name: str
    arn: str


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    status: str
    created: datetime


def _document(value: Any) -> Policy:
    if isinstance(value, str):
        parsed: Policy = json.loads(unquote(value))
        return parsed
    return dict(value)


def _as_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _get(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = call(**kwargs)
        return result
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise


def ensure_role(ctx: EnsureContext, desired: Role) -> PrincipalObserved:
    iam = ctx.client("iam")
    found = _get(iam.get_role, RoleName=desired.name)
    trust = json.dumps(desired.trust_policy, sort_keys=True)
    if found is None:
        ctx.change(
            "iam",
            "create",
            f"role/{desired.name}",
            lambda: iam.create_role(
                RoleName=desired.name,
                AssumeRolePolicyDocument=trust,
                Description="ddb-bridge function role",
                Tags=_as_tags(desired.tags),
            ),
        )
        current_inline: dict[str, Policy] = {}
        attached: set[str] = set()
        tags: dict[str, str] = dict(desired.tags)
    else:
        role = found["Role"]
        if _document(role.get("AssumeRolePolicyDocument", {})) != desired.trust_policy:
            ctx.change(
                "iam",
                "update",
                f"role/{desired.name}",
                lambda: iam.update_assume_role_policy(RoleName=desired.name, PolicyDocument=trust),
                detail="trust policy",
            )
        names = iam.list_role_policies(RoleName=desired.name).get("PolicyNames", [])
        current_inline = {
            name: _document(iam.get_role_policy(RoleName=desired.name, PolicyName=name)["PolicyDocument"])
            for name in names
        }
        attached = {
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=desired.name).get("AttachedPolicies", [])
        }
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=desired.name).get("Tags", [])}
    if current_inline.get(desired.inline_policy_name) != desired.inline_policy:
        document = json.dumps(desired.inline_policy, sort_keys=True)
        ctx.change(
            "iam",
            "put",
            f"role/{desired.name}/policy/{desired.inline_policy_name}",
            lambda: iam.put_role_policy(
                RoleName=desired.name, PolicyName=desired.inline_policy_name, PolicyDocument=document
            ),
        )
    # The role is ours by name: inline policies we did not write are removed (least privilege).
    for stale in sorted(set(current_inline) - {desired.inline_policy_name}):
        ctx.change(
            "iam",
            "delete",
            f"role/{desired.name}/policy/{stale}",
            lambda stale=stale: iam.delete_role_policy(RoleName=desired.name, PolicyName=stale),  # type: ignore[misc]
        )
    for arn in sorted(set(desired.managed_policy_arns) - attached):
        ctx.change(
            "iam",
            "attach",
            f"role/{desired.name}",
            lambda arn=arn: iam.attach_role_policy(RoleName=desired.name, PolicyArn=arn),  # type: ignore[misc]
            detail=arn,
        )
    for arn in sorted(attached - set(desired.managed_policy_arns)):
        ctx.change(
            "iam",
            "detach",
            f"role/{desired.name}",
            lambda arn=arn: iam.detach_role_policy(RoleName=desired.name, PolicyArn=arn),  # type: ignore[misc]
            detail=arn,
        )
    missing_tags = tag_changes(tags, desired.tags)
    if missing_tags:
        ctx.change(
            "iam",
            "tag",
            f"role/{desired.name}",
            lambda: iam.tag_role(RoleName=desired.name, Tags=_as_tags(missing_tags)),
            detail=", ".join(sorted(missing_tags)),
        )
    arn = found["Role"]["Arn"] if found else desired.arn
    return PrincipalObserved(desired.name, arn)


def ensure_user(ctx: EnsureContext, desired: User) -> PrincipalObserved:
    iam = ctx.client("iam")
    found = _get(iam.get_user, UserName=desired.name)
    if found is None:
        ctx.change(
            "iam",
            "create",
            f"user/{desired.name}",
            lambda: iam.create_user(UserName=desired.name, Tags=_as_tags(desired.tags)),
        )
        current_inline: dict[str, Policy] = {}
        tags: dict[str, str] = dict(desired.tags)
    else:
        names = iam.list_user_policies(UserName=desired.name).get("PolicyNames", [])
        current_inline = {
            name: _document(iam.get_user_policy(UserName=desired.name, PolicyName=name)["PolicyDocument"])
            for name in names
        }
        tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName=desired.name).get("Tags", [])}
    if current_inline.get(desired.inline_policy_name) != desired.inline_policy:
        document = json.dumps(desired.inline_policy, sort_keys=True)
        ctx.change(
            "iam",
            "put",
            f"user/{desired.name}/policy/{desired.inline_policy_name}",
            lambda: iam.put_user_policy(
                UserName=desired.name, PolicyName=desired.inline_policy_name, PolicyDocument=document
            ),
        )
    for stale in sorted(set(current_inline) - {desired.inline_policy_name}):
        ctx.change(
            "iam",
            "delete",
            f"user/{desired.name}/policy/{stale}",
            lambda stale=stale: iam.delete_user_policy(UserName=desired.name, PolicyName=stale),  # type: ignore[misc]
        )
    missing_tags = tag_changes(tags, desired.tags)
    if missing_tags:
        ctx.change(
            "iam",
            "tag",
            f"user/{desired.name}",
            lambda: iam.tag_user(UserName=desired.name, Tags=_as_tags(missing_tags)),
            detail=", ".join(sorted(missing_tags)),
        )
    arn = found["User"]["Arn"] if found else desired.arn
    return PrincipalObserved(desired.name, arn)


def list_access_keys(ctx: EnsureContext, user_name: str) -> list[AccessKey]:
    found = _get(ctx.client("iam").list_access_keys, UserName=user_name)
    if found is None:
        return []
    return sorted(
        (AccessKey(k["AccessKeyId"], k["Status"], k["CreateDate"]) for k in found["AccessKeyMetadata"]),
        key=lambda key: key.created,
    )


def delete_role(ctx: EnsureContext, name: str) -> None:
    iam = ctx.client("iam")
    if _get(iam.get_role, RoleName=name) is None:
        return
    for policy_name in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
        ctx.change(
            "iam",
            "delete",
            f"role/{name}/policy/{policy_name}",
            lambda p=policy_name: iam.delete_role_policy(RoleName=name, PolicyName=p),  # type: ignore[misc]
        )
    for attached in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
        ctx.change(
            "iam",
            "detach",
            f"role/{name}",
            lambda a=attached["PolicyArn"]: iam.detach_role_policy(RoleName=name, PolicyArn=a),  # type: ignore[misc]
            detail=attached["PolicyArn"],
        )
    ctx.change("iam", "delete", f"role/{name}", lambda: iam.delete_role(RoleName=name))


def delete_user(ctx: EnsureContext, name: str) -> None:
    """Delete the user with its keys (first: they are the secrets) and inline policies."""
    iam = ctx.client("iam")
    if _get(iam.get_user, UserName=name) is None:
        return
    for key in list_access_keys(ctx, name):
        ctx.change(
            "iam",
            "delete",
            f"user/{name}/access-key",
            lambda k=key.access_key_id: iam.delete_access_key(UserName=name, AccessKeyId=k),  # type: ignore[misc]
            detail=key.access_key_id,
        )
    for policy_name in iam.list_user_policies(UserName=name).get("PolicyNames", []):
        ctx.change(
            "iam",
            "delete",
            f"user/{name}/policy/{policy_name}",
            lambda p=policy_name: iam.delete_user_policy(UserName=name, PolicyName=p),  # type: ignore[misc]
        )
    ctx.change("iam", "delete", f"user/{name}", lambda: iam.delete_user(UserName=name))
