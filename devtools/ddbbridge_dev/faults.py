"""Fault injection: answer the next N matching requests with an AWS error, in the request's protocol.

Throttling and similar faults belong to the dev infrastructure, never to product environment variables.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from xml.sax.saxutils import escape

import botocore.session


class FaultSpecError(ValueError):
    """The fault request is malformed."""


@dataclass
class Fault:
    service: str
    operation: str | None  # None matches every operation of the service
    error: str
    status: int
    count: int
    message: str

    @classmethod
    def from_json(cls, document: Any) -> Fault:
        if not isinstance(document, dict):
            raise FaultSpecError("expected a JSON object")
        try:
            service = str(document["service"])
            error = str(document["error"])
        except KeyError as missing:
            raise FaultSpecError(f"missing field {missing}") from None
        operation = document.get("operation")
        count = int(document.get("count", 1))
        status = int(document.get("status", 400))
        if count < 1 or not 400 <= status <= 599:
            raise FaultSpecError("count must be >= 1 and status an HTTP error status")
        message = str(document.get("message") or f"injected fault: {error}")
        return cls(service, str(operation) if operation else None, error, status, count, message)

    def matches(self, service: str, operation: str) -> bool:
        return self.service == service and self.operation in (None, operation)


class FaultBook:
    """Pending faults, consumed first-added first as matching requests arrive."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, service: str, operation: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, operation):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


@functools.cache
def _service_protocol(service: str) -> str:
    try:
        model = botocore.session.get_session().get_service_model(service)
    except Exception:  # unknown to botocore: JSON is the most common shape
        return "json"
    return str(model.metadata.get("protocol", "json"))


def request_protocol(service: str, environ: dict[str, Any], is_query: bool) -> str:
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    if is_query:
        return "query"
    protocol = _service_protocol(service)
    return "query" if protocol == "ec2" else protocol


def render(fault: Fault, protocol: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body botocore parses into `ClientError` with `fault.error` as the code."""
    request_id = str(uuid.uuid4())
    if protocol in ("json", "rest-json"):
        body = json.dumps({"__type": fault.error, "message": fault.message}).encode()
        headers = [
            ("Content-Type", "application/x-amz-json-1.0" if protocol == "json" else "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", fault.error),
        ]
        return fault.status, headers, body
    error = f"<Code>{escape(fault.error)}</Code><Message>{escape(fault.message)}</Message>"
    if protocol == "query":
        text = (
            f"<ErrorResponse><Error><Type>Sender</Type>{error}</Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:  # rest-xml
        text = f"<Error>{error}<RequestId>{request_id}</RequestId></Error>"
    return fault.status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], text.encode()
