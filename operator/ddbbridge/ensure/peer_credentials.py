"""The cross-partition key: the peer-writer user's access key in X, stored in the PEER's SSM.

Roles cannot be assumed across partitions, so the sender in the peer region signs its PutRecords into
X's inbound stream with this key. The step keeps the key's create date (key age in status) and is
built for rotation: a new key is created and stored while the previous one stays valid for an
overlap (senders cache credentials for a TTL), and keys older than the live one are deleted only
after that overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ddbbridge.desired import KeyParameters, User
from ddbbridge.ensure.context import EnsureContext
from ddbbridge.ensure.iam import AccessKey, list_access_keys
from ddbbridge.ensure.ssm import ensure_parameter_tags, put_parameter, read_stored_key
from ddbbridge.errors import TransientError

IAM_KEYS_PER_USER = 2
# Longer than the senders' credential cache (300 s) with a wide margin, so no in-flight batch signs
# with a deleted key.
DEFAULT_OVERLAP = timedelta(minutes=30)


@dataclass(frozen=True)
class PeerKeyObserved:
    user: str
    access_key_id: str | None  # None only in a dry run that would create it
    created: datetime | None
    rotated: bool

    def age_days(self, now: datetime) -> float | None:
        return None if self.created is None else (now - self.created).total_seconds() / 86400


def ensure_peer_key(
    user_ctx: EnsureContext,
    store_ctx: EnsureContext,
    user: User,
    parameters: KeyParameters,
    *,
    rotation_days: int | None = None,
    force_rotation: bool = False,
    overlap: timedelta = DEFAULT_OVERLAP,
    now: datetime | None = None,
) -> PeerKeyObserved:
    """Make the stored key a live key of `user`; rotate it when due or forced."""
    moment = now or datetime.now(UTC)
    keys = list_access_keys(user_ctx, user.name) if not _planned_user(user_ctx, user) else []
    stored = read_stored_key(store_ctx, parameters.access_key_parameter, parameters.secret_key_parameter)
    live = next((k for k in keys if k.access_key_id == stored.access_key_id and k.status == "Active"), None)
    live = live if stored.secret_present else None
    due = (
        live is not None
        and rotation_days is not None
        and moment - live.created >= timedelta(days=rotation_days)
    )
    if live is not None and not due and not force_rotation:
        _retire_old_keys(user_ctx, user=user.name, keys=keys, live=live, overlap=overlap, now=moment)
        for name in (parameters.access_key_parameter, parameters.secret_key_parameter):
            ensure_parameter_tags(store_ctx, name, parameters.tags)
        return PeerKeyObserved(user.name, live.access_key_id, live.created, rotated=False)

    others = [k for k in keys if live is None or k.access_key_id != live.access_key_id]
    if len(keys) >= IAM_KEYS_PER_USER:
        # Room for the new key: drop the oldest key that is not the live one, once past the overlap.
        if live is not None and moment - live.created < overlap:
            raise TransientError(f"rotation of {user.name}'s key waits for the previous overlap to end")
        victim = others[0]
        _delete_key(user_ctx, user.name, victim)
    iam = user_ctx.client("iam")
    created = user_ctx.change(
        "iam",
        "rotate" if live else "create",
        f"user/{user.name}/access-key",
        lambda: iam.create_access_key(UserName=user.name)["AccessKey"],
        detail=f"stored in {store_ctx.side}'s SSM",
    )
    exists = stored.access_key_id is not None
    # Secret first: a reader between the two writes gets a mismatched pair, fails to sign, and
    # re-reads; the reverse order would look like a valid pair pointing at the old secret.
    put_parameter(
        store_ctx,
        parameters.secret_key_parameter,
        created["SecretAccessKey"] if created else "(secret)",
        secure=True,
        tags=parameters.tags,
        exists=exists or stored.secret_present,
    )
    put_parameter(
        store_ctx,
        parameters.access_key_parameter,
        created["AccessKeyId"] if created else "(access key id)",
        secure=False,
        tags=parameters.tags,
        exists=exists,
    )
    if created is None:
        return PeerKeyObserved(user.name, None, None, rotated=live is not None)
    return PeerKeyObserved(user.name, created["AccessKeyId"], created["CreateDate"], rotated=live is not None)


def _planned_user(ctx: EnsureContext, user: User) -> bool:
    """In a dry run the user may only be planned; its keys cannot be listed then."""
    return ctx.dry_run and any(a.verb == "create" and a.resource == f"user/{user.name}" for a in ctx.actions)


def _retire_old_keys(
    ctx: EnsureContext,
    *,
    user: str,
    keys: list[AccessKey],
    live: AccessKey,
    overlap: timedelta,
    now: datetime,
) -> None:
    if now - live.created < overlap:
        return  # senders may still hold an older key from their cache
    for key in keys:
        if key.access_key_id != live.access_key_id:
            _delete_key(ctx, user, key)


def _delete_key(ctx: EnsureContext, user: str, key: AccessKey) -> None:
    iam = ctx.client("iam")
    ctx.change(
        "iam",
        "delete",
        f"user/{user}/access-key",
        lambda: iam.delete_access_key(UserName=user, AccessKeyId=key.access_key_id),
        detail=f"{key.access_key_id} (created {key.created:%Y-%m-%d})",
    )
