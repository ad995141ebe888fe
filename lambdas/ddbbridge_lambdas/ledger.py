"""The per-region version ledger (`ddbbridge-P-X-ledger`): high-water marks and tombstones.

One entry per item key (hash key `k` = canonical key string; `ts`/`o` version, `tomb`, `h` digest,
`removed` markers, `av`/`ah` the applier's last put). Every write is a whole-entry Put
conditioned on the revision read (`rev`), i.e. on exactly the state a decision was made on.
Entries expire through TTL (`expires_at`) after the tombstone retention: after that a key's
high-water mark falls back to the item's own stamp (documented limit under extreme clock skew).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .decisions import LedgerEntry
from .errors import is_condition_failure
from .tables import Expression, batch_get_consistent
from .versions import Version, format_timestamp, format_version, parse_timestamp, parse_version

KEY = "k"


@dataclass(frozen=True)
class LedgerState:
    """An entry as read, with the revision a conditional write must match (None: absent)."""

    entry: LedgerEntry | None
    rev: int | None


ABSENT = LedgerState(None, None)


def entry_from_item(item: dict[str, Any]) -> LedgerState:
    timestamp = parse_timestamp(item.get("ts", {}).get("N", ""))
    origin = item.get("o", {}).get("S")
    rev = int(item.get("rev", {}).get("N", "0"))
    if timestamp is None or not origin:
        return LedgerState(None, rev)
    removed = tuple(
        (marker, int(value.get("N", "0")))
        for marker, value in sorted(item.get("removed", {}).get("M", {}).items())
    )
    digest = item.get("h", {}).get("S")
    applied_version = parse_version(item.get("av", {}).get("S", ""))
    applied_digest = item.get("ah", {}).get("S")
    applied = (applied_version, applied_digest) if applied_version and applied_digest else None
    tombstone = bool(item.get("tomb", {}).get("BOOL"))
    entry = LedgerEntry(Version(timestamp, origin), tombstone, digest, removed, applied)
    return LedgerState(entry, rev)


class Ledger:
    def __init__(self, client: Any, table_name: str, retention_seconds: int) -> None:
        self.client = client
        self.table_name = table_name
        self.retention_seconds = retention_seconds

    def read_many(self, keys: list[str]) -> dict[str, LedgerState]:
        found = batch_get_consistent(self.client, [(self.table_name, {KEY: {"S": key}}) for key in keys])
        states = {key: ABSENT for key in keys}
        for item in found.get(self.table_name, []):
            states[item[KEY]["S"]] = entry_from_item(item)
        return states

    def read(self, key: str) -> LedgerState:
        response = self.client.get_item(TableName=self.table_name, Key={KEY: {"S": key}}, ConsistentRead=True)
        item = response.get("Item")
        return entry_from_item(item) if item else ABSENT

    def put_request(self, key: str, entry: LedgerEntry, base: LedgerState, now_epoch: int) -> dict[str, Any]:
        """A Put (for PutItem or a TransactWriteItems element) of `entry`, conditioned on `base`."""
        item: dict[str, Any] = {
            KEY: {"S": key},
            "ts": {"N": format_timestamp(entry.version.timestamp)},
            "o": {"S": entry.version.origin},
            "tomb": {"BOOL": entry.tombstone},
            "rev": {"N": str((base.rev or 0) + 1)},
            "expires_at": {"N": str(now_epoch + self.retention_seconds)},
        }
        if entry.digest:
            item["h"] = {"S": entry.digest}
        if entry.applied:
            item["av"] = {"S": format_version(entry.applied[0])}
            item["ah"] = {"S": entry.applied[1]}
        if entry.removed:
            item["removed"] = {"M": {marker: {"N": str(at)} for marker, at in entry.removed}}
        expr = Expression("l")
        if base.rev is None:
            condition = f"attribute_not_exists({expr.name(KEY)})"
        else:
            condition = f"{expr.name('rev')} = {expr.value({'N': str(base.rev)})}"
        return expr.apply({"TableName": self.table_name, "Item": item}, condition)

    def write(self, key: str, entry: LedgerEntry, base: LedgerState, now_epoch: int) -> LedgerState | None:
        """Conditional write; the new state, or None when the entry changed since `base` was read."""
        try:
            self.client.put_item(**self.put_request(key, entry, base, now_epoch))
        except Exception as error:
            if is_condition_failure(error):
                return None
            raise
        return LedgerState(entry, (base.rev or 0) + 1)
