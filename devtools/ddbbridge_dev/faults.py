"""Fault injection: answer the next N matching requests with an AWS error, in the request's protocol,
or hold them first.

A fault matches by service and operation (None: every operation), optionally only requests whose raw
body contains a text (`contains`, e.g. one table's name) and only after `after` matching requests
went through untouched. `delay_ms` holds a matched request before answering: with an `error` the
request then fails (the emulator never applies it), without one it is served normally, late. A held
request is already in the request log while it waits, so a test can act while it is in flight
(kill the caller mid-call, say).

Throttling and similar faults belong to the dev infrastructure, never to product environment variables.
"""

from __future__ import annotations

import functools
import json
import threading
import uuid
from dataclasses import asdict, dataclass, replace
from typing import Any
from xml.sax.saxutils import escape

import botocore.session


class FaultSpecError(ValueError):
    """The fault request is malformed."""


DELAYED = "delayed"  # the request log's fault mark of a request held but then served normally


@dataclass
class Fault:
    service: str
    operation: str | None  # None matches every operation of the service
    error: str | None  # None: hold for `delay_ms`, then serve normally
    status: int
    count: int
    message: str
    delay_ms: float = 0.0
    after: int = 0  # matching requests that pass untouched before this fault applies
    contains: str | None = None  # only requests whose raw body contains this text

    @property
    def mark(self) -> str:
        """What the request log says about a request this fault matched."""
        return self.error or DELAYED

    @classmethod
    def from_json(cls, document: Any) -> Fault:
        if not isinstance(document, dict):
            raise FaultSpecError("expected a JSON object")
        try:
            service = str(document["service"])
        except KeyError as missing:
            raise FaultSpecError(f"missing field {missing}") from None
        error = str(document["error"]) if document.get("error") else None
        operation = document.get("operation")
        count = int(document.get("count", 1))
        status = int(document.get("status", 400))
        delay_ms = float(document.get("delay_ms", 0) or 0)
        after = int(document.get("after", 0) or 0)
        contains = str(document["contains"]) if document.get("contains") else None
        if count < 1 or not 400 <= status <= 599:
            raise FaultSpecError("count must be >= 1 and status an HTTP error status")
        if delay_ms < 0 or after < 0:
            raise FaultSpecError("delay_ms and after must be >= 0")
        if error is None and delay_ms <= 0:
            raise FaultSpecError("a fault needs an error, a delay_ms, or both")
        message = str(document.get("message") or f"injected fault: {error or DELAYED}")
        return cls(
            service,
            str(operation) if operation else None,
            error,
            status,
            count,
            message,
            delay_ms,
            after,
            contains,
        )

    def matches(self, service: str, operation: str, body: bytes = b"") -> bool:
        if self.service != service or self.operation not in (None, operation):
            return False
        return self.contains is None or self.contains.encode() in body


class FaultBook:
    """Pending faults, consumed first-added first as matching requests arrive."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def needs_body(self, service: str, operation: str) -> bool:
        """Whether a pending fault of this call looks into request bodies (the caller buffers it)."""
        with self._lock:
            return any(
                f.contains is not None and f.service == service and f.operation in (None, operation)
                for f in self._faults
            )

    def take(self, service: str, operation: str, body: bytes = b"") -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, operation, body):
                    if fault.after > 0:  # this one passes untouched; the fault waits for a later one
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return replace(fault)
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def clear(self, service: str | None = None, operation: str | None = None) -> None:
        """Drop pending faults: all, or those of one service (and operation)."""
        with self._lock:
            self._faults = [
                f
                for f in self._faults
                if (service is not None and f.service != service)
                or (operation is not None and f.operation != operation)
            ]


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
    assert fault.error is not None, "a pure delay is served by the emulator, not rendered"
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
