"""The launcher's fault book: matching by body text, letting the first N matches through, holds
without an error, and narrowed clearing (what the fault-injection suite relies on)."""

from __future__ import annotations

import pytest

from ddbbridge_dev.faults import DELAYED, Fault, FaultBook, FaultSpecError


def fault(**fields: object) -> Fault:
    return Fault.from_json({"service": "dynamodb", "operation": "TransactWriteItems", **fields})


def test_after_lets_the_first_matches_through_then_applies_count_times() -> None:
    book = FaultBook()
    book.add(fault(error="InternalServerError", status=500, after=1, count=2))
    taken = [book.take("dynamodb", "TransactWriteItems") for _ in range(4)]
    assert [t.error if t else None for t in taken] == [
        None,
        "InternalServerError",
        "InternalServerError",
        None,
    ]
    assert book.pending() == []


def test_contains_matches_only_requests_whose_body_holds_the_text() -> None:
    book = FaultBook()
    book.add(fault(error="ProvisionedThroughputExceededException", contains="users-sg"))
    assert book.needs_body("dynamodb", "TransactWriteItems")
    assert not book.needs_body("dynamodb", "PutItem")
    assert book.take("dynamodb", "TransactWriteItems", b'{"TableName":"ddbbridge-p-sg-ledger"}') is None
    taken = book.take("dynamodb", "TransactWriteItems", b'{"TableName":"p-users-sg"}')
    assert taken is not None and taken.mark == "ProvisionedThroughputExceededException"


def test_a_pure_delay_is_marked_delayed_and_needs_a_delay() -> None:
    held = fault(delay_ms=250)
    assert held.error is None and held.mark == DELAYED and held.delay_ms == 250
    with pytest.raises(FaultSpecError):
        fault()  # neither an error nor a delay
    with pytest.raises(FaultSpecError):
        fault(error="X", after=-1)


def test_clear_can_drop_one_service_and_operation_only() -> None:
    book = FaultBook()
    book.add(Fault.from_json({"service": "kinesis", "operation": "GetRecords", "error": "X", "count": 9}))
    book.add(fault(error="Y"))
    book.clear("kinesis", "GetRecords")
    assert [(f["service"], f["operation"]) for f in book.pending()] == [("dynamodb", "TransactWriteItems")]
    book.clear()
    assert book.pending() == []
