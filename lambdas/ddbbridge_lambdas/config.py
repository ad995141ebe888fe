"""Handler configuration: one env var, `DDBBRIDGE_CONFIG`, holding JSON with snake_case keys.

The reconcile writes this JSON into both functions' environment; the handlers parse it once per
container. Parsing is strict: a function with a broken configuration must fail loudly, not replicate
with wrong key names.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Literal

ENV_VAR = "DDBBRIDGE_CONFIG"

KeyType = Literal["S", "N", "B"]
KeyRole = Literal["HASH", "RANGE"]
TimestampUnit = Literal["seconds", "milliseconds"]

DEFAULT_CREDENTIALS_TTL_SECONDS = 300
DEFAULT_TOKEN_DURATION_SECONDS = 300
DEFAULT_PEER_SESSION_SECONDS = 3600
ACCESS_KEY_MODE = "accessKey"
FEDERATION_MODE = "federation"
DEFAULT_TOMBSTONE_RETENTION_SECONDS = 15 * 24 * 3600


class ConfigError(ValueError):
    """DDBBRIDGE_CONFIG is missing or does not describe a usable handler."""


@dataclass(frozen=True)
class KeyAttribute:
    """One attribute of the user table's primary key."""

    name: str
    type: KeyType
    role: KeyRole

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "role": self.role}


@dataclass(frozen=True)
class HandlerConfig:
    """Everything a sender or applier needs to know about its pair and side."""

    pair: str
    local_region_name: str
    local_region: str
    peer_region_name: str
    peer_region: str
    table_name: str
    key_schema: tuple[KeyAttribute, ...]
    ledger_table: str
    stats_table: str
    dead_letter_queue_url: str
    origin_attribute: str = "last_updater_region"
    timestamp_attribute: str = "last_update_timestamp"
    timestamp_unit: TimestampUnit = "seconds"
    tombstone_retention_seconds: int = DEFAULT_TOMBSTONE_RETENTION_SECONDS
    # Sender only: how to reach the peer partition's Kinesis stream.
    peer_stream_name: str | None = None
    peer_endpoint_url: str | None = None
    peer_access_key_parameter: str | None = None
    peer_secret_key_parameter: str | None = None
    credentials_ttl_seconds: int = DEFAULT_CREDENTIALS_TTL_SECONDS
    peer_proxy: str | None = None
    # accessKey: the key in SSM above; federation: a token of this partition exchanged in the peer's
    # STS for `peer_role_arn` (nothing stored).
    peer_credentials_mode: str = ACCESS_KEY_MODE
    peer_role_arn: str | None = None
    token_audience: str | None = None
    token_duration_seconds: int = DEFAULT_TOKEN_DURATION_SECONDS
    peer_session_seconds: int = DEFAULT_PEER_SESSION_SECONDS
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        hashes = [k for k in self.key_schema if k.role == "HASH"]
        ranges = [k for k in self.key_schema if k.role == "RANGE"]
        if len(hashes) != 1 or len(ranges) > 1:
            raise ConfigError("key_schema needs exactly one HASH attribute and at most one RANGE")
        if self.origin_attribute == self.timestamp_attribute:
            raise ConfigError("origin_attribute and timestamp_attribute must differ")
        if self.local_region_name == self.peer_region_name:
            raise ConfigError("local_region_name and peer_region_name must differ")
        key_names = {k.name for k in self.key_schema}
        if key_names & {self.origin_attribute, self.timestamp_attribute}:
            raise ConfigError("the stamp attributes cannot be key attributes")
        if self.timestamp_unit not in ("seconds", "milliseconds"):
            raise ConfigError(f"timestamp_unit must be seconds or milliseconds, not {self.timestamp_unit!r}")
        if self.peer_credentials_mode not in (ACCESS_KEY_MODE, FEDERATION_MODE):
            raise ConfigError(
                f"peer_credentials_mode must be accessKey or federation, not {self.peer_credentials_mode!r}"
            )
        if self.peer_credentials_mode == FEDERATION_MODE and not (self.peer_role_arn and self.token_audience):
            raise ConfigError("federation needs peer_role_arn and token_audience")
        if self.tombstone_retention_seconds <= 0 or self.credentials_ttl_seconds < 0:
            raise ConfigError("tombstone_retention_seconds must be > 0 and credentials_ttl_seconds >= 0")

    @property
    def key_names(self) -> tuple[str, ...]:
        """Key attribute names, HASH first."""
        return tuple(k.name for k in sorted(self.key_schema, key=lambda k: k.role != "HASH"))

    @property
    def stamp_attributes(self) -> tuple[str, str]:
        return (self.timestamp_attribute, self.origin_attribute)

    def to_json(self) -> str:
        """The exact JSON the reconcile puts into DDBBRIDGE_CONFIG (stable key order)."""
        document: dict[str, Any] = {}
        for item in fields(self):
            if item.name == "extra":
                continue
            value = getattr(self, item.name)
            if item.name == "key_schema":
                value = [k.to_json() for k in value]
            document[item.name] = value
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HandlerConfig:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{ENV_VAR} is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{ENV_VAR} must be a JSON object")
        return cls.from_mapping(document)

    @classmethod
    def from_mapping(cls, document: dict[str, Any]) -> HandlerConfig:
        known = {item.name for item in fields(cls)} - {"extra"}
        values = {name: value for name, value in document.items() if name in known}
        # Unknown keys are kept, not rejected: a newer reconcile may add settings an older handler
        # does not know yet, and the function must keep replicating.
        extra = {name: value for name, value in document.items() if name not in known}
        raw_keys = values.get("key_schema")
        if not isinstance(raw_keys, list) or not raw_keys:
            raise ConfigError("key_schema must be a non-empty list")
        keys = []
        for raw in raw_keys:
            if not isinstance(raw, dict):
                raise ConfigError("key_schema entries must be objects")
            name, key_type, role = raw.get("name"), raw.get("type"), raw.get("role", "HASH")
            if not isinstance(name, str) or not name:
                raise ConfigError("key_schema entry without a name")
            if key_type not in ("S", "N", "B"):
                raise ConfigError(f"key {name!r}: type must be S, N or B, not {key_type!r}")
            if role not in ("HASH", "RANGE"):
                raise ConfigError(f"key {name!r}: role must be HASH or RANGE, not {role!r}")
            keys.append(KeyAttribute(name=name, type=key_type, role=role))
        values["key_schema"] = tuple(keys)
        required = (
            "pair",
            "local_region_name",
            "local_region",
            "peer_region_name",
            "peer_region",
            "table_name",
            "ledger_table",
            "stats_table",
            "dead_letter_queue_url",
        )
        missing = [name for name in required if not values.get(name)]
        if missing:
            raise ConfigError(f"{ENV_VAR} lacks {', '.join(missing)}")
        try:
            return cls(**values, extra=extra)
        except TypeError as error:
            raise ConfigError(str(error)) from None

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> HandlerConfig:
        source = os.environ if environ is None else environ
        text = source.get(ENV_VAR)
        if not text:
            raise ConfigError(f"{ENV_VAR} is not set")
        return cls.from_json(text)
