"""The peer region's Kinesis stream, reached with the peer partition's credentials.

Roles cannot be assumed across partitions, so in accessKey mode the sender uses an access key of an
IAM user of the peer partition, stored in the LOCAL region's SSM (access key id as String, secret as
SecureString). In federation mode `federation.FederatedCredentials` supplies a role session instead;
both have `get()` (a key pair, or a key pair and a session token) and `invalidate()`.
The pair is cached for `credentials_ttl_seconds`: a rotated key takes effect without a redeploy,
and an authentication error drops the cache at once (the old key may be deleted before the TTL).
Secrets are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.config import Config

from .config import HandlerConfig
from .errors import error_code, is_aws_error

log = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD = 1024 * 1024
AUTH_ERRORS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "IncompleteSignature",
    }
)


@dataclass(frozen=True)
class OutgoingRecord:
    index: int  # position of the stream record in the sender's batch
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode("utf-8"))


def split_for_put_records(records: Sequence[OutgoingRecord]) -> list[list[OutgoingRecord]]:
    """Consecutive chunks of at most 500 records and 5 MiB (data + partition keys) each."""
    chunks: list[list[OutgoingRecord]] = []
    current: list[OutgoingRecord] = []
    size = 0
    for record in records:
        if current and (len(current) >= MAX_RECORDS_PER_CALL or size + record.size > MAX_BYTES_PER_CALL):
            chunks.append(current)
            current, size = [], 0
        current.append(record)
        size += record.size
    if current:
        chunks.append(current)
    return chunks


class CredentialSource(Protocol):
    def get(self) -> tuple[str, ...]: ...

    def invalidate(self) -> None: ...


class PeerCredentials:
    """Access key pair from SSM, cached with a TTL (monotonic clock)."""

    def __init__(
        self,
        ssm: Any,
        access_key_parameter: str,
        secret_key_parameter: str,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ssm = ssm
        self.access_key_parameter = access_key_parameter
        self.secret_key_parameter = secret_key_parameter
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._cached: tuple[str, str] | None = None
        self._expires_at = 0.0

    def get(self) -> tuple[str, str]:
        if self._cached is None or self.clock() >= self._expires_at:
            response = self.ssm.get_parameters(
                Names=[self.access_key_parameter, self.secret_key_parameter], WithDecryption=True
            )
            values = {p["Name"]: p["Value"] for p in response.get("Parameters", [])}
            missing = [n for n in (self.access_key_parameter, self.secret_key_parameter) if n not in values]
            if missing:
                raise RuntimeError(f"peer credentials missing in SSM: {', '.join(missing)}")
            self._cached = (values[self.access_key_parameter], values[self.secret_key_parameter])
            self._expires_at = self.clock() + self.ttl_seconds
            log.info("loaded peer access key id ending %s", self._cached[0][-4:])
        return self._cached

    def invalidate(self) -> None:
        self._cached = None


class PeerKinesis:
    def __init__(
        self,
        config: HandlerConfig,
        session_factory: Callable[..., Any],
        credentials: CredentialSource | None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
    ) -> None:
        if not config.peer_stream_name:
            raise ValueError("the sender needs peer_stream_name")
        self.config = config
        self.stream_name = config.peer_stream_name
        self.session_factory = session_factory
        self.credentials = credentials
        self.sleep = sleep
        self.max_attempts = max_attempts
        self._client: Any = None
        self._client_key: tuple[str, ...] | None = None

    def client(self) -> Any:
        key = self.credentials.get() if self.credentials else None
        if self._client is None or key != self._client_key:
            options: dict[str, Any] = {
                "region_name": self.config.peer_region,
                "config": Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=5,
                    read_timeout=20,
                    proxies={"https": self.config.peer_proxy, "http": self.config.peer_proxy}
                    if self.config.peer_proxy
                    else None,
                ),
            }
            if self.config.peer_endpoint_url:
                options["endpoint_url"] = self.config.peer_endpoint_url
            if key is not None:
                options["aws_access_key_id"], options["aws_secret_access_key"] = key[0], key[1]
                if len(key) > 2:
                    options["aws_session_token"] = key[2]
            self._client = self.session_factory("kinesis", **options)
            self._client_key = key
        return self._client

    def put_records(self, records: Sequence[OutgoingRecord]) -> int | None:
        """Deliver in chunks; retry only the entries that failed, with backoff. Returns the batch
        index of the earliest record not delivered (None when all were)."""
        for chunk in split_for_put_records(records):
            pending = list(chunk)
            for attempt in range(self.max_attempts):
                if attempt:
                    self.sleep(min(0.1 * 2 ** (attempt - 1), 2.0))
                pending = self._put_once(pending)
                if not pending:
                    break
            if pending:
                return min(record.index for record in pending)
        return None

    def _put_once(self, records: list[OutgoingRecord]) -> list[OutgoingRecord]:
        try:
            response = self.client().put_records(
                StreamName=self.stream_name,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in records],
            )
        except Exception as error:
            if not is_aws_error(error):
                raise
            if error_code(error) in AUTH_ERRORS and self.credentials is not None:
                self.credentials.invalidate()
            log.warning("PutRecords of %d records failed: %s", len(records), error_code(error))
            return records
        results = response.get("Records", [])
        failed = [r for r, result in zip(records, results, strict=False) if result.get("ErrorCode")]
        if len(results) < len(records):
            failed.extend(records[len(results) :])
        if failed:
            log.warning("PutRecords: %d of %d records failed, retrying those", len(failed), len(records))
        return failed
