"""Which AWS operation a raw HTTP request calls, and the launcher's log of every one it served.

Tests count mutating calls from this log (what the emulator actually received), never from what the
product claims it did.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any, TypedDict
from urllib.parse import parse_qs

from moto.core.request import Request
from moto.core.routing import get_service_router

# SigV4 signing names that differ from the boto3 client name callers know the service by.
_SIGNING_TO_CLIENT = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions"}
DEFAULT_LIMIT = 200_000
# Single-item DynamoDB calls name one table at the top of their body; the log keeps it so a count can
# tell the handlers' stats-table updates from their writes to the user table.
TABLE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "GetItem"})


class RequestEntry(TypedDict):
    seq: int
    service: str
    operation: str
    fault: str | None
    table: str | None


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service in the SigV4 credential scope (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    start = auth.find(marker)
    if start < 0:
        return None
    scope = auth[start + len(marker) :].split(",", 1)[0].split("/")
    if len(scope) != 5:
        return None
    service = scope[3].lower()
    return str(_SIGNING_TO_CLIENT.get(service, service))


def _rest_operation(service: str, environ: dict[str, Any]) -> str | None:
    # REST protocols (Lambda, S3): moto's own router knows every operation's method and URI.
    try:
        operation, _ = get_service_router(service).match(Request(environ))
    except Exception:  # unknown service or path: reported by method and path instead
        return None
    name: str = operation.name
    return name


def identify(environ: dict[str, Any], body: bytes) -> tuple[str, str]:
    """(service, operation) of a request, e.g. ("dynamodb", "PutItem"), ("lambda", "GetFunction")."""
    service = signing_service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        prefix, _, operation = target.rpartition(".")
        if prefix.startswith("DynamoDBStreams"):
            service = "dynamodbstreams"
        return service or prefix.split("_", 1)[0].lower(), operation
    action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
    if (
        not action
        and body
        and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
    ):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return service or "unknown", action[0]
    if service:
        operation = _rest_operation(service, environ)
        if operation:
            return service, operation
    return service or "unknown", f"{environ.get('REQUEST_METHOD', '?')} {environ.get('PATH_INFO', '')}"


def names_table(service: str, operation: str) -> bool:
    return service == "dynamodb" and operation in TABLE_OPERATIONS


def table_of(body: bytes) -> str | None:
    """`TableName` of a JSON-protocol request body, or None when it has none (or is not JSON)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    name = document.get("TableName") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


class RequestLog:
    """Bounded, thread-safe log; `seq` keeps counting past the bound so `since` paging stays exact."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._entries: deque[RequestEntry] = deque(maxlen=limit)
        self._seq = 0
        self._lock = threading.Lock()

    def record(
        self, service: str, operation: str, fault: str | None = None, table: str | None = None
    ) -> None:
        with self._lock:
            self._seq += 1
            self._entries.append(
                {
                    "seq": self._seq,
                    "service": service,
                    "operation": operation,
                    "fault": fault,
                    "table": table,
                }
            )

    def since(self, seq: int = 0) -> list[RequestEntry]:
        with self._lock:
            return [entry for entry in self._entries if entry["seq"] > seq]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
