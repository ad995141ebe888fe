"""Outbound identity federation: the source account's switch and the destination's OIDC provider.

The provider is one per issuer URL and account, so several pairs whose senders live in the same peer
account share it: it is created with our audience as its client id, an existing one only gets our
audience added, and it is deleted only when it is ours (tagged) and no role in the account trusts it
any more.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import botocore.exceptions

from ddbbridge.credential_modes import OutboundFederation
from ddbbridge.desired import TAG_MANAGED_BY, IssuerProvider
from ddbbridge.ensure.context import EnsureContext, is_missing
from ddbbridge.ensure.iam import delete_role
from ddbbridge.errors import error_code

SWITCH = "account/outbound-web-identity-federation"
# What IAM (or an endpoint that predates the feature) answers when the calls do not exist there.
UNKNOWN_OPERATION_CODES = frozenset({"InvalidAction", "UnknownOperationException", "NotImplemented"})


def read_outbound_federation(ctx: EnsureContext) -> OutboundFederation:
    try:
        info = ctx.client("iam").get_outbound_web_identity_federation_info()
    except botocore.exceptions.ClientError as error:
        code = error_code(error)
        if code in ("FeatureDisabled", "FeatureDisabledException"):
            return OutboundFederation(enabled=False)
        if code in UNKNOWN_OPERATION_CODES:
            return OutboundFederation(enabled=False, unavailable=f"not offered by this endpoint ({code})")
        raise
    enabled = bool(info.get("JwtVendingEnabled"))
    return OutboundFederation(enabled=enabled, issuer_url=info.get("IssuerIdentifier"))


def enable_outbound_federation(ctx: EnsureContext) -> str | None:
    """Turn the account switch on (only when the spec asked); the issuer URL, None in a dry run."""
    iam = ctx.client("iam")

    def enable() -> str:
        try:
            return str(iam.enable_outbound_web_identity_federation()["IssuerIdentifier"])
        except botocore.exceptions.ClientError as error:
            if error_code(error) not in ("FeatureEnabled", "FeatureEnabledException"):
                raise
            # Someone enabled it in between: read the issuer instead.
            return str(iam.get_outbound_web_identity_federation_info()["IssuerIdentifier"])

    return ctx.change("iam", "enable", SWITCH, enable, detail="spec.credentials.enableOutboundFederation")


def ensure_issuer_provider(ctx: EnsureContext, desired: IssuerProvider) -> str:
    iam = ctx.client("iam")
    found = _provider(iam, desired.arn)
    if found is None:
        created = ctx.change(
            "iam",
            "create",
            f"oidc-provider/{desired.condition_prefix}",
            lambda: iam.create_open_id_connect_provider(
                Url=desired.url,
                ClientIDList=[desired.audience],
                Tags=[{"Key": k, "Value": v} for k, v in sorted(desired.tags.items())],
            ),
            detail=f"audience {desired.audience}",
        )
        return str(created["OpenIDConnectProviderArn"]) if created else desired.arn
    if desired.audience not in found.get("ClientIDList", []):
        ctx.change(
            "iam",
            "update",
            f"oidc-provider/{desired.condition_prefix}",
            lambda: iam.add_client_id_to_open_id_connect_provider(
                OpenIDConnectProviderArn=desired.arn, ClientID=desired.audience
            ),
            detail=f"add audience {desired.audience}",
        )
    return desired.arn


def release_issuer_provider(ctx: EnsureContext, arn: str) -> bool:
    """Delete the provider when we created it and no role of the account trusts it; True if deleted."""
    iam = ctx.client("iam")
    found = _provider(iam, arn)
    if found is None:
        return False
    tags = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
    if tags.get(TAG_MANAGED_BY) != "ddbbridge" or trusting_roles(ctx, arn):
        return False
    ctx.change(
        "iam",
        "delete",
        f"oidc-provider/{arn.split('oidc-provider/', 1)[-1]}",
        lambda: iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn),
    )
    return True


def delete_federated_role(ctx: EnsureContext, name: str) -> None:
    """Delete a federated-writer role, then the providers it trusted when nothing else trusts them."""
    iam = ctx.client("iam")
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return
        raise
    providers = federated_principals(role.get("AssumeRolePolicyDocument") or {})
    delete_role(ctx, name)
    for arn in sorted(providers):
        release_issuer_provider(ctx, arn)


def trusting_roles(ctx: EnsureContext, provider_arn: str) -> list[str]:
    """Names of the account's roles whose trust policy names the provider as a Federated principal."""
    names: list[str] = []
    for page in ctx.client("iam").get_paginator("list_roles").paginate():
        for role in page.get("Roles", []):
            if provider_arn in federated_principals(role.get("AssumeRolePolicyDocument") or {}):
                names.append(role["RoleName"])
    return names


def federated_principals(document: Any) -> set[str]:
    """Federated principals named by a trust policy (parsed, or IAM's URL-encoded text)."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    found: set[str] = set()
    for statement in statements:
        principal = statement.get("Principal", {})
        if isinstance(principal, dict):
            federated = principal.get("Federated", [])
            found.update([federated] if isinstance(federated, str) else federated)
    return found


def _provider(iam: Any, arn: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        return found
    except botocore.exceptions.ClientError as error:
        if is_missing(error, "NoSuchEntity", "NoSuchEntityException"):
            return None
        raise
