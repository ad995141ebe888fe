"""A lean signed client for the hot stream calls (GetShardIterator, GetRecords, shard listing).

boto3 would parse every record into Python types (bytes, datetimes) that the event builders then
turn back into base64 text and numbers; the JSON protocol's wire form is already Lambda's event
form, so the poller talks JSON directly and skips both conversions. Control-plane calls stay on boto3.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "KMSThrottlingException",
    }
)


class WireError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.code = code
        self.message = message
        self.status = status

    @property
    def transient(self) -> bool:
        return self.code in THROTTLING_CODES or self.status >= 500 or self.status == 0


class JsonApi:
    """One AWS JSON-protocol service at one endpoint; safe to share between threads."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        *,
        signing_name: str,
        target_prefix: str,
        json_version: str,
        credentials: Credentials,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(endpoint)
        self._endpoint = endpoint.rstrip("/") + "/"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._https = parts.scheme == "https"
        self._region = region
        self._signer = SigV4Auth(credentials, signing_name, region)
        self._target_prefix = target_prefix
        self._content_type = f"application/x-amz-json-{json_version}"
        self._timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            factory = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = factory(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        request = AWSRequest(
            method="POST",
            url=self._endpoint,
            data=payload,
            headers={
                "X-Amz-Target": f"{self._target_prefix}.{operation}",
                "Content-Type": self._content_type,
            },
        )
        self._signer.add_auth(request)
        headers = {key: str(value) for key, value in request.headers.items()}
        connection = self._connection()
        try:
            connection.request("POST", "/", body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
            if response.will_close:
                connection.close()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise WireError("ConnectionError", str(error), 0) from error
        document: dict[str, Any] = json.loads(data) if data else {}
        if status >= 300:
            code = str(document.get("__type", document.get("code", "UnknownError"))).rsplit("#", 1)[-1]
            message = str(document.get("message", document.get("Message", "")))
            raise WireError(code, message, status)
        return document
