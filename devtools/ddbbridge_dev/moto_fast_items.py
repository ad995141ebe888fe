"""DynamoDB attribute values written straight into moto's JSON responses.

moto 5.2.5 serialises every response by walking the botocore output shape, and for each attribute
value it looks each of the ten `AttributeValue` members up through alias providers. That costs about
4 ms per item returned (a 1,000-record stream page took 4.4 s on an idle emulator), and it runs under
the region's single DynamoDB lock, so one stream page or scan page stalls every write behind it.

An attribute value as moto holds it is already the wire form except for binaries (raw bytes that
the serializer base64-encodes). `attribute_value` produces exactly what the generic path produces
(`tests/unit/test_moto_fast_items.py` compares the two on generated values), in one pass. Anything
it does not recognise (not a plain dict, an unknown member, an empty map key) goes to moto's own path
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.serialize import BaseJSONSerializer

SHAPE_NAME = "AttributeValue"
_STRINGS = ("S", "N")
_STRING_SETS = ("SS", "NS")
MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class NotPlainError(Exception):
    """A value the fast path does not handle: the generic serializer takes it."""


def _string(value: Any) -> Any:
    # moto's JSON string rule, kept as is: None, {} and [] pass through unconverted.
    return str(value) if value not in [None, {}, []] else value


def attribute_value(value: Any, encode_blob: Callable[[Any], str]) -> dict[str, Any]:
    """The serialised form of one attribute value (raises NotPlainError for anything unusual)."""
    if type(value) is not dict or not value.keys() <= MEMBERS:
        raise NotPlainError
    out: dict[str, Any] = {}
    for name, member in value.items():
        if member is None:
            continue  # the generic path skips members whose value is None
        if name in _STRINGS:
            out[name] = _string(member)
        elif name == "B":
            out[name] = encode_blob(member)
        elif name in _STRING_SETS:
            out[name] = [_string(element) for element in member]
        elif name == "BS":
            out[name] = [encode_blob(element) for element in member]
        elif name == "M":
            if type(member) is not dict or "" in member:
                raise NotPlainError  # moto writes an empty-named entry's members into the map itself
            out[name] = {
                key: attribute_value(nested, encode_blob)
                for key, nested in member.items()
                if nested is not None
            }
        elif name == "L":
            out[name] = [
                None if nested is None else attribute_value(nested, encode_blob) for nested in member
            ]
        else:  # NULL and BOOL: moto's JSON serializer writes booleans unchanged
            out[name] = member
    return out


def install() -> None:
    generic = BaseJSONSerializer._serialize_type_structure

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == SHAPE_NAME and not getattr(self._value_picker, "response_transformers", None):
            try:
                encoded = attribute_value(value, self._base64)
            except NotPlainError:
                pass
            else:
                if key:
                    serialized[self.get_serialized_name(shape, key)] = encoded
                else:
                    serialized.update(encoded)
                return
        generic(self, serialized, value, shape, key)

    serialize_structure.__wrapped__ = generic  # type: ignore[attr-defined]
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]
