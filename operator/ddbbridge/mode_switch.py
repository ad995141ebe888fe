"""After a credentials-mode switch: remove the identities of the mode no longer in use, after an overlap.

Senders cache what they got (a key for its TTL, a role session until shortly before it ends) and a batch
in flight may still sign with it, so the old mode's identities stay for the same overlap as a rotated
key (key_rotation.DEFAULT_OVERLAP), counted from when the new mode's identity appeared: the
federated-writer role's creation (accessKey -> federation) or the live key's creation (federation ->
accessKey). No state is kept anywhere: both moments are read from IAM. Per inbound side X:
- federation in use: X's peer-writer user (keys first) and its key parameters in the peer's SSM go;
- accessKey in use: X's federated-writer role goes, and the OIDC provider it trusted when it is ours
  and no other role trusts it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import botocore.exceptions

from ddbbridge.desired import RegionDesired
from ddbbridge.ensure.context import EnsureContext, is_missing
from ddbbridge.ensure.federation import delete_federated_role
from ddbbridge.ensure.iam import delete_user
from ddbbridge.ensure.ssm import delete_parameters
from ddbbridge.spec import CredentialsMode


def retire_other_mode(
    ctx: EnsureContext,
    peer_ctx: EnsureContext,
    want: RegionDesired,
    *,
    key_created: datetime | None,
    overlap: timedelta,
    now: datetime,
) -> list[str]:
    """Remove what is due; return what still waits for its overlap (for status), empty otherwise."""
    if want.inbound_mode == CredentialsMode.FEDERATION.value:
        return _retire_access_key(ctx, peer_ctx, want, overlap, now)
    return _retire_federation(ctx, want, key_created, overlap, now)


def _retire_access_key(
    ctx: EnsureContext, peer_ctx: EnsureContext, want: RegionDesired, overlap: timedelta, now: datetime
) -> list[str]:
    iam = ctx.client("iam")
    user = _get(iam.get_user, UserName=want.peer_writer.name)
    parameters = [want.names.access_key_parameter, want.names.secret_key_parameter]
    stored = peer_ctx.client("ssm").get_parameters(Names=parameters).get("Parameters", [])
    if user is None and not stored:
        return []
    role = _get(iam.get_role, RoleName=want.federated_writer.name)
    since = role["Role"]["CreateDate"] if role else None
    if since is None or _elapsed(since, now) < overlap:
        return [
            _waiting(f"user/{want.peer_writer.name} and its key in {peer_ctx.side}'s SSM", since, overlap)
        ]
    delete_user(ctx, want.peer_writer.name)
    delete_parameters(peer_ctx, parameters)
    return []


def _retire_federation(
    ctx: EnsureContext, want: RegionDesired, key_created: datetime | None, overlap: timedelta, now: datetime
) -> list[str]:
    role = _get(ctx.client("iam").get_role, RoleName=want.federated_writer.name)
    if role is None:
        return []
    if key_created is None or _elapsed(key_created, now) < overlap:
        return [_waiting(f"role/{want.federated_writer.name}", key_created, overlap)]
    delete_federated_role(ctx, want.federated_writer.name)
    return []


def _elapsed(since: datetime, now: datetime) -> timedelta:
    # The new mode's identity may have been created by this very run, after `now` was taken: it is
    # then zero time old, never a negative age (an overlap of zero retires at once). No clock is read
    # here, so a caller's `now` alone decides.
    return max(now - since, timedelta(0))


def _waiting(what: str, since: datetime | None, overlap: timedelta) -> str:
    if since is None:
        return f"{what} (until the new mode's identity exists)"
    return f"{what} (until {since + overlap:%Y-%m-%d %H:%M:%S} UTC)"


def _get(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = call(**kwargs)
        return found
    except botocore.exceptions.ClientError as error:
        if is_missing(error):
            return None
        raise
