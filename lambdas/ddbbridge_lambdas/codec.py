"""Attribute values and the wire record between sender and applier (pure, no I/O).

Three forms of an attribute value:
- event form: what Lambda puts in DynamoDB stream events. B and BS arrive as base64 TEXT.
- wire form: the same JSON shape (B as base64 text); it is what the sender puts on Kinesis.
- boto3 form: what the low-level client takes and returns. B and BS are bytes.
The applier MUST decode base64 to bytes before writing, or binary values are stored double-encoded
(the known bug of public samples). Numbers stay strings everywhere: no float ever touches them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .config import KeyAttribute
from .versions import Version, format_timestamp, parse_timestamp

WIRE_FORMAT_VERSION = 1
SUPPORTED_WIRE_VERSIONS = frozenset({1})
_SCALARS = {"S", "N", "B", "BOOL", "NULL"}
_SETS = {"SS", "NS", "BS"}

AttributeMap = dict[str, Any]


class PoisonRecordError(ValueError):
    """A record that fails the same way on every try; it goes to the dead-letter queue."""


# --- attribute values ---------------------------------------------------------------------------


def to_boto3_value(value: Any) -> Any:
    """Event/wire form -> boto3 form (base64 text decoded to bytes, recursively)."""
    kind, inner = _single(value)
    if kind == "B":
        return {"B": _b64decode(inner)}
    if kind == "BS":
        return {"BS": [_b64decode(member) for member in _list(inner)]}
    if kind == "M":
        return {"M": {name: to_boto3_value(v) for name, v in _dict(inner).items()}}
    if kind == "L":
        return {"L": [to_boto3_value(v) for v in _list(inner)]}
    _check_plain(kind, inner)
    return {kind: inner}


def to_wire_value(value: Any) -> Any:
    """boto3 form -> wire form (bytes encoded as base64 text, recursively)."""
    kind, inner = _single(value)
    if kind == "B":
        return {"B": _b64encode(inner)}
    if kind == "BS":
        return {"BS": [_b64encode(member) for member in _list(inner)]}
    if kind == "M":
        return {"M": {name: to_wire_value(v) for name, v in _dict(inner).items()}}
    if kind == "L":
        return {"L": [to_wire_value(v) for v in _list(inner)]}
    _check_plain(kind, inner)
    return {kind: inner}


def item_to_boto3(item: AttributeMap) -> AttributeMap:
    return {name: to_boto3_value(value) for name, value in item.items()}


def item_to_wire(item: AttributeMap) -> AttributeMap:
    return {name: to_wire_value(value) for name, value in item.items()}


def canonical_value(value: Any) -> Any:
    """A wire-form value made comparable: sets sorted, numbers normalised, base64 re-encoded.
    Two representations of the same stored value give the same canonical value."""
    kind, inner = _single(value)
    if kind == "N":
        return {"N": _normal_number(inner)}
    if kind == "B":
        return {"B": _b64encode(_b64decode(inner))}
    if kind == "SS":
        return {"SS": sorted(_list(inner))}
    if kind == "NS":
        return {"NS": sorted(_normal_number(member) for member in _list(inner))}
    if kind == "BS":
        return {"BS": sorted(_b64encode(_b64decode(member)) for member in _list(inner))}
    if kind == "M":
        return {"M": {name: canonical_value(v) for name, v in sorted(_dict(inner).items())}}
    if kind == "L":
        return {"L": [canonical_value(v) for v in _list(inner)]}
    return {kind: inner}


def content_digest(item: AttributeMap) -> str:
    """Digest of a whole item (wire form). Equal versions with different content must be told
    apart: an echo is only our own write if the content is the same as what the applier wrote."""
    canonical = {name: canonical_value(value) for name, value in sorted(item.items())}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --- keys ---------------------------------------------------------------------------------------


def extract_key(item: AttributeMap, key_schema: tuple[KeyAttribute, ...]) -> AttributeMap:
    """The key attributes of a wire-form item, checked against the configured names and types."""
    key: AttributeMap = {}
    for attribute in key_schema:
        value = item.get(attribute.name)
        if not isinstance(value, dict) or len(value) != 1:
            raise PoisonRecordError(f"key attribute {attribute.name!r} is missing")
        (kind,) = value
        if kind != attribute.type:
            raise PoisonRecordError(
                f"key attribute {attribute.name!r} has type {kind}, the table's key type is {attribute.type}"
            )
        canonical_value(value)  # validates base64 / numbers
        key[attribute.name] = value
    return key


def canonical_key(key: AttributeMap, key_schema: tuple[KeyAttribute, ...]) -> str:
    """One string per item key, equal in both regions: the ledger's hash key and (hashed) the
    Kinesis partition key."""
    parts = []
    for attribute in sorted(key_schema, key=lambda a: a.role != "HASH"):
        value = canonical_value(key[attribute.name])
        parts.append([attribute.type, value[attribute.type]])
    text = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    # DynamoDB hash keys hold at most 2048 bytes; long composite keys are hashed.
    if len(text.encode("utf-8")) > 1024:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def partition_key(canonical: str) -> str:
    """Kinesis partition keys are at most 256 characters; the same item key always maps to the
    same partition key, so order per item key is kept."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- the wire record ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WireRecord:
    """One change, as the sender puts it on the peer's Kinesis stream."""

    source: str  # region name of the sending side
    key: AttributeMap  # wire form
    version: Version
    item: AttributeMap | None  # full image (wire form) for a put, None for a tombstone
    created_ms: int  # when the change entered the source stream (lag)
    sent_ms: int

    @property
    def is_delete(self) -> bool:
        return self.item is None


def encode_record(record: WireRecord) -> bytes:
    document: dict[str, Any] = {
        "v": WIRE_FORMAT_VERSION,
        "op": "delete" if record.item is None else "put",
        "src": record.source,
        "key": record.key,
        "ts": format_timestamp(record.version.timestamp),
        "o": record.version.origin,
        "created_ms": record.created_ms,
        "sent_ms": record.sent_ms,
    }
    if record.item is not None:
        document["item"] = record.item
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_record(
    data: bytes,
    key_schema: tuple[KeyAttribute, ...],
    timestamp_attribute: str,
    origin_attribute: str,
) -> WireRecord:
    """Parse and validate one wire record; anything malformed is poison (it will never improve)."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PoisonRecordError(f"undecodable payload: {error}") from None
    if not isinstance(document, dict):
        raise PoisonRecordError("payload is not a JSON object")
    format_version = document.get("v")
    if format_version not in SUPPORTED_WIRE_VERSIONS:
        raise PoisonRecordError(f"unsupported wire format version {format_version!r}")
    op, source, origin = document.get("op"), document.get("src"), document.get("o")
    timestamp = parse_timestamp(document["ts"]) if isinstance(document.get("ts"), str) else None
    if op not in ("put", "delete") or not isinstance(source, str) or not source:
        raise PoisonRecordError("payload lacks op or src")
    if timestamp is None or not isinstance(origin, str) or not origin:
        raise PoisonRecordError("payload has no valid version (ts, o)")
    version = Version(timestamp, origin)
    raw_key = document.get("key")
    if not isinstance(raw_key, dict):
        raise PoisonRecordError("payload has no key")
    key = extract_key(raw_key, key_schema)
    if set(raw_key) != set(key):
        raise PoisonRecordError("payload key has attributes the table's key does not have")
    item = None
    if op == "put":
        item = document.get("item")
        if not isinstance(item, dict):
            raise PoisonRecordError("put without an item")
        try:
            item_to_boto3(item)  # validates every value, recursively
        except PoisonRecordError:
            raise
        if extract_key(item, key_schema) != key:
            raise PoisonRecordError("item key differs from record key")
        stamp = (item.get(timestamp_attribute), item.get(origin_attribute))
        expected = ({"N": document["ts"]}, {"S": origin})
        if stamp[1] != expected[1] or not _same_number(stamp[0], timestamp):
            raise PoisonRecordError(f"item stamp {stamp!r} does not match the record version {version}")
    created_ms, sent_ms = document.get("created_ms", 0), document.get("sent_ms", 0)
    if not isinstance(created_ms, int) or not isinstance(sent_ms, int):
        raise PoisonRecordError("created_ms and sent_ms must be integers")
    return WireRecord(source, key, version, item, created_ms, sent_ms)


# --- helpers ------------------------------------------------------------------------------------


def _same_number(value: Any, expected: Decimal) -> bool:
    if not isinstance(value, dict) or set(value) != {"N"} or not isinstance(value["N"], str):
        return False
    parsed = parse_timestamp(value["N"])
    return parsed is not None and parsed == expected


def _single(value: Any) -> tuple[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise PoisonRecordError(f"not a typed attribute value: {value!r:.80}")
    ((kind, inner),) = value.items()
    if kind not in _SCALARS | _SETS | {"M", "L"}:
        raise PoisonRecordError(f"unknown attribute type {kind!r}")
    return kind, inner


def _check_plain(kind: str, inner: Any) -> None:
    ok = (
        (kind in ("S", "N") and isinstance(inner, str))
        or (kind in ("BOOL", "NULL") and isinstance(inner, bool))
        or (kind in ("SS", "NS") and isinstance(inner, list) and all(isinstance(m, str) for m in inner))
    )
    if not ok:
        raise PoisonRecordError(f"malformed {kind} value")
    if kind == "N":
        _normal_number(inner)
    if kind == "NS":
        for member in inner:
            _normal_number(member)


def _normal_number(text: Any) -> str:
    if not isinstance(text, str):
        raise PoisonRecordError("number is not a string")
    try:
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise PoisonRecordError(f"not a number: {text!r:.40}") from None
    if not value.is_finite():
        raise PoisonRecordError(f"not a finite number: {text!r:.40}")
    return "0" if value == 0 else format(value.normalize(), "f")


def _b64decode(text: Any) -> bytes:
    if isinstance(text, bytes | bytearray):
        # Already bytes (a boto3-form value): never decode twice.
        return bytes(text)
    if not isinstance(text, str):
        raise PoisonRecordError("binary value is neither base64 text nor bytes")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise PoisonRecordError("binary value is not valid base64") from None


def _b64encode(data: Any) -> str:
    if isinstance(data, str):
        return base64.b64encode(_b64decode(data)).decode("ascii")
    if not isinstance(data, bytes | bytearray):
        raise PoisonRecordError("binary value is not bytes")
    return base64.b64encode(bytes(data)).decode("ascii")


def _list(inner: Any) -> list[Any]:
    if not isinstance(inner, list):
        raise PoisonRecordError("expected a list")
    return inner


def _dict(inner: Any) -> dict[str, Any]:
    if not isinstance(inner, dict):
        raise PoisonRecordError("expected a map")
    return inner
