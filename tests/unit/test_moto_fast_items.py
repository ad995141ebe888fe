"""The launcher's fast attribute-value serialisation writes exactly what moto's generic serializer
writes, for generated items (every type, nested, binary, empty strings and sets) in the responses that
carry items: GetItem, BatchGetItem, Scan and DynamoDB Streams GetRecords."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.core.serialize import BaseJSONSerializer, JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model

from ddbbridge_dev import moto_fast_items


def operation(service: str, name: str) -> Any:
    return get_service_model(service).operation_model(name)


@pytest.fixture(scope="module")
def generic_and_fast() -> Iterator[tuple[Any, Any]]:
    current = BaseJSONSerializer._serialize_type_structure
    generic = getattr(current, "__wrapped__", current)
    BaseJSONSerializer._serialize_type_structure = generic  # type: ignore[method-assign]
    moto_fast_items.install()
    fast = BaseJSONSerializer._serialize_type_structure
    yield generic, fast
    BaseJSONSerializer._serialize_type_structure = current  # type: ignore[method-assign]


def serialise(method: Any, service: str, name: str, result: dict[str, Any]) -> Any:
    BaseJSONSerializer._serialize_type_structure = method  # type: ignore[method-assign]
    serializer = JSONSerializer(
        operation_model=operation(service, name),
        value_picker=XFormedAttributePicker(response_transformers={}),
    )
    return json.loads(serializer.serialize(result)["body"])


texts = st.text(max_size=12)
numbers = st.integers(-(10**12), 10**12).map(str) | st.decimals(
    allow_nan=False, allow_infinity=False, places=3
).map(str)
blobs = st.binary(max_size=16)
scalars = st.one_of(
    texts.map(lambda v: {"S": v}),
    numbers.map(lambda v: {"N": v}),
    blobs.map(lambda v: {"B": v}),
    st.lists(texts, min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(blobs, min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
    st.just({"NULL": True}),
    st.booleans().map(lambda v: {"BOOL": v}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.dictionaries(texts, inner, max_size=4).map(lambda v: {"M": v}),
        st.lists(inner, max_size=4).map(lambda v: {"L": v}),
    ),
    max_leaves=12,
)
items = st.dictionaries(st.text(min_size=1, max_size=8), values, min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(item=items)
def test_get_item_and_scan_are_serialised_the_same(
    generic_and_fast: tuple[Any, Any], item: dict[str, Any]
) -> None:
    generic, fast = generic_and_fast
    for name, result in (
        ("GetItem", {"Item": item}),
        ("Scan", {"Items": [item, item], "Count": 2, "ScannedCount": 2}),
        ("BatchGetItem", {"Responses": {"t": [item]}, "UnprocessedKeys": {}}),
    ):
        assert serialise(fast, "dynamodb", name, result) == serialise(generic, "dynamodb", name, result)


@settings(max_examples=150, deadline=None)
@given(new=items, old=items)
def test_stream_records_are_serialised_the_same(
    generic_and_fast: tuple[Any, Any], new: dict[str, Any], old: dict[str, Any]
) -> None:
    generic, fast = generic_and_fast
    record = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.0",
        "awsRegion": "cn-north-1",
        "dynamodb": {
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "ApproximateCreationDateTime": datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
            "SequenceNumber": "1100000000017454423009",
            "SizeBytes": 120,
            "Keys": {"PK": {"S": "k"}},
            "NewImage": new,
            "OldImage": old,
        },
    }
    result = {"Records": [record], "NextShardIterator": "it"}
    assert serialise(fast, "dynamodbstreams", "GetRecords", result) == serialise(
        generic, "dynamodbstreams", "GetRecords", result
    )


def test_binary_values_are_base64_encoded_once(generic_and_fast: tuple[Any, Any]) -> None:
    _, fast = generic_and_fast
    body = serialise(
        fast, "dynamodb", "GetItem", {"Item": {"b": {"B": b"\x00\xff"}, "bs": {"BS": [b"\x01"]}}}
    )
    assert body["Item"] == {"b": {"B": "AP8="}, "bs": {"BS": ["AQ=="]}}


def test_values_it_does_not_know_go_to_moto(generic_and_fast: tuple[Any, Any]) -> None:
    with pytest.raises(moto_fast_items.NotPlainError):
        moto_fast_items.attribute_value({"S": "x", "unknown": 1}, str)
    with pytest.raises(moto_fast_items.NotPlainError):
        moto_fast_items.attribute_value({"M": {"a": "not an attribute value"}}, str)
    generic, fast = generic_and_fast
    odd = {"Item": {"a": {"S": "x", "unknown": 1}}}
    assert serialise(fast, "dynamodb", "GetItem", odd) == serialise(generic, "dynamodb", "GetItem", odd)
