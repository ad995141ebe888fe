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
from ddbbridge.ensure.iam import list_access_keys
from ddbbridge.ensure.ssm import ensure_parameter_tags, put_parameter, read_stored_key
from ddbbridge.errors import TransientError
from ddbbridge.key_rotation import DEFAULT_OVERLAP, KeyFacts, plan_rotation

__all__ = ["DEFAULT_OVERLAP", "PeerKeyObserved", "ensure_peer_key"]


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
    """Make the stored key a live key of `user`; rotate it when due or forced (see key_rotation)."""
    moment = now or datetime.now(UTC)
    keys = list_access_keys(user_ctx, user.name) if not _planned_user(user_ctx, user) else []
    stored = read_stored_key(store_ctx, parameters.access_key_parameter, parameters.secret_key_parameter)
    facts = [KeyFacts(k.access_key_id, k.status == "Active", k.created) for k in keys]
    plan = plan_rotation(
        facts,
        stored_key_id=stored.access_key_id,
        secret_stored=stored.secret_present,
        rotation_days=rotation_days,
        forced=force_rotation,
        overlap=overlap,
        now=moment,
    )
    if plan.wait is not None:
        raise TransientError(f"rotation of {user.name}'s key: {plan.wait}")
    for old in (*plan.delete_before_create, *plan.retire):
        _delete_key(user_ctx, user.name, old)
    if not plan.create:
        assert plan.live is not None  # a plan that creates nothing keeps the live key
        for name in (parameters.access_key_parameter, parameters.secret_key_parameter):
            ensure_parameter_tags(store_ctx, name, parameters.tags)
        return PeerKeyObserved(user.name, plan.live.access_key_id, plan.live.created, rotated=False)

    iam = user_ctx.client("iam")
    created = user_ctx.change(
        "iam",
        "rotate" if plan.live else "create",
        f"user/{user.name}/access-key",
        lambda: iam.create_access_key(UserName=user.name)["AccessKey"],
        detail=f"stored in {store_ctx.side}'s SSM" + (" (forced)" if plan.forced else ""),
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
        return PeerKeyObserved(user.name, None, None, rotated=plan.rotating)
    return PeerKeyObserved(user.name, created["AccessKeyId"], created["CreateDate"], rotated=plan.rotating)


def _planned_user(ctx: EnsureContext, user: User) -> bool:
    """In a dry run the user may only be planned; its keys cannot be listed then."""
    return ctx.dry_run and any(a.verb == "create" and a.resource == f"user/{user.name}" for a in ctx.actions)


def _delete_key(ctx: EnsureContext, user: str, key: KeyFacts) -> None:
    iam = ctx.client("iam")
    ctx.change(
        "iam",
        "delete",
        f"user/{user}/access-key",
        lambda: iam.delete_access_key(UserName=user, AccessKeyId=key.access_key_id),
        detail=f"{key.access_key_id} (created {key.created:%Y-%m-%d})",
    )
