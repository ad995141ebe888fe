"""Versions (order, unit steps) and the codec (exact round trip of every attribute type)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddbbridge_lambdas.codec import (
    PoisonRecordError,
    WireRecord,
    canonical_key,
    content_digest,
    decode_record,
    encode_record,
    item_to_boto3,
    item_to_wire,
)
from ddbbridge_lambdas.config import KeyAttribute
from ddbbridge_lambdas.versions import Version, clock_stamp, next_version_above

KEYS = (KeyAttribute("id", "S", "HASH"), KeyAttribute("n", "N", "RANGE"))


def test_versions_order_by_timestamp_then_origin() -> None:
    assert Version(Decimal(5), "cn") < Version(Decimal(5), "sg") < Version(Decimal("5.000001"), "cn")
    assert Version(Decimal("5.0"), "cn") == Version(Decimal(5), "cn")


def test_next_version_above_adds_the_unit_step_never_a_second() -> None:
    floor = Version(Decimal("1700000000.5"), "sg")
    assert next_version_above(floor, Decimal(1), "cn", "seconds") == Version(
        Decimal("1700000000.500001"), "cn"
    )
    assert next_version_above(floor, Decimal(1), "cn", "milliseconds") == Version(Decimal(1700000001), "cn")
    # a long fraction (Decimal(time.time())) still gets a strictly greater stamp
    long = Version(Decimal("1700000000.1234567165374755859375"), "sg")
    above = next_version_above(long, Decimal(0), "cn", "seconds")
    assert above.timestamp == Decimal("1700000000.123457") and above > long
    # the clock wins when it is ahead
    assert next_version_above(floor, Decimal(1800000000), "cn", "seconds").timestamp == Decimal(1800000000)
    assert clock_stamp(1700000000.1234567, "milliseconds") == Decimal(1700000000123)


values: st.SearchStrategy[Any] = st.deferred(
    lambda: st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=5)),
        st.builds(lambda n: {"N": str(n)}, st.decimals(allow_nan=False, allow_infinity=False, places=3)),
        st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=8)),
        st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=3), min_size=1, max_size=3)),
        st.builds(lambda s: {"NS": [str(x) for x in s]}, st.sets(st.integers(), min_size=1, max_size=3)),
        st.builds(
            lambda s: {"BS": [base64.b64encode(x).decode() for x in s]},
            st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3),
        ),
        st.just({"NULL": True}),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(min_size=1, max_size=3), values, max_size=3)),
        st.builds(lambda items: {"L": items}, st.lists(values, max_size=3)),
    )
)


@given(item=st.dictionaries(st.text(min_size=1, max_size=4), values, max_size=6))
def test_every_attribute_type_round_trips_exactly(item: dict[str, object]) -> None:
    boto3_form = item_to_boto3(item)
    assert item_to_wire(boto3_form) == item
    assert content_digest(item) == content_digest(item_to_wire(boto3_form))


def test_binary_from_a_lambda_event_is_decoded_once_not_double_encoded() -> None:
    event_value = {"B": base64.b64encode(b"\x00\xffraw").decode()}
    assert item_to_boto3({"b": event_value}) == {"b": {"B": b"\x00\xffraw"}}
    assert item_to_boto3({"s": {"BS": [base64.b64encode(b"\x01").decode()]}}) == {"s": {"BS": [b"\x01"]}}


def test_wire_record_round_trip_and_format_version() -> None:
    item = {"id": {"S": "u"}, "n": {"N": "1"}, "ts": {"N": "10.5"}, "o": {"S": "cn"}}
    record = WireRecord("cn", {"id": {"S": "u"}, "n": {"N": "1"}}, Version(Decimal("10.5"), "cn"), item, 1, 2)
    data = encode_record(record)
    assert decode_record(data, KEYS, "ts", "o") == record
    with pytest.raises(PoisonRecordError, match="format version"):
        decode_record(data.replace(b'"v":1', b'"v":99'), KEYS, "ts", "o")
    with pytest.raises(PoisonRecordError, match="key type"):
        decode_record(data.replace(b'"n":{"N":"1"}', b'"n":{"S":"1"}'), KEYS, "ts", "o")


def test_canonical_key_is_the_same_for_equal_numbers() -> None:
    assert canonical_key({"id": {"S": "u"}, "n": {"N": "1.0"}}, KEYS) == canonical_key(
        {"id": {"S": "u"}, "n": {"N": "1"}}, KEYS
    )
