"""boto3 clients per region: endpoint overrides, credentials, retries and a count of the calls made.

Product code knows only "an endpoint per region", from `DDBBRIDGE_ENDPOINTS`
(`cn-north-1=http://127.0.0.1:5001,ap-southeast-1=http://...`); without it boto3's defaults apply.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config

from ddbbridge.spec import RegionSpec

ENDPOINTS_VARIABLE = "DDBBRIDGE_ENDPOINTS"
PEER_ENDPOINTS_VARIABLE = "DDBBRIDGE_PEER_ENDPOINTS"

READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Scan", "Query", "BatchGet", "Receive")


def parse_endpoints(text: str | None) -> dict[str, str]:
    """Parse `region=url,region=url` into a mapping; blank entries are ignored."""
    endpoints: dict[str, str] = {}
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        region, sep, url = entry.partition("=")
        if not sep or not region.strip() or not url.strip():
            raise ValueError(f"{ENDPOINTS_VARIABLE}: malformed entry {entry!r}, expected region=url")
        endpoints[region.strip()] = url.strip()
    return endpoints


def is_mutating(operation: str) -> bool:
    return not operation.startswith(READ_ONLY_PREFIXES)


@dataclass
class CallCounter:
    """Counts AWS calls by (service, operation); thread-safe."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, service: str, operation: str) -> None:
        with self._lock:
            self.counts[(service, operation)] += 1

    def mutating(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter({key: n for key, n in self.counts.items() if is_mutating(key[1])})

    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def by_service(self, *, mutating_only: bool = False) -> dict[str, int]:
        source = self.mutating() if mutating_only else self.counts
        summary: Counter[str] = Counter()
        for (service, _operation), n in source.items():
            summary[service] += n
        return dict(sorted(summary.items()))


@dataclass
class RegionSession:
    """Clients for one AWS region, all created from one boto3 session and counted in one counter."""

    region: str
    endpoint: str | None
    session: boto3.session.Session
    counter: CallCounter
    # botocore attempts per call; the operator's deletion path uses fewer so an unreachable region
    # fails a pass quickly and the pass is retried with backoff instead.
    max_attempts: int = 8
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                # A plain `str` service name matches none of boto3-stubs' Literal overloads.
                client = self.session.client(  # type: ignore[call-overload]
                    service,
                    region_name=self.region,
                    endpoint_url=self.endpoint,
                    config=botocore.config.Config(
                        retries={"mode": "standard", "max_attempts": self.max_attempts},
                        max_pool_connections=64,
                        connect_timeout=5,
                        read_timeout=60,
                    ),
                )
                client.meta.events.register("before-call", self._count)
                self._clients[service] = client
            return self._clients[service]

    def _count(self, model: Any, **_: Any) -> None:
        self.counter.record(model.service_model.service_name, model.name)


def region_session(
    side: RegionSpec,
    *,
    counter: CallCounter | None = None,
    credentials: dict[str, str] | None = None,
    endpoints: dict[str, str] | None = None,
) -> RegionSession:
    """Clients for one side of a pair.

    `credentials` (access key id, secret, optional session token) wins; then the side's CLI profile;
    then the default chain.
    """
    known = endpoints if endpoints is not None else parse_endpoints(os.environ.get(ENDPOINTS_VARIABLE))
    if credentials:
        session = boto3.session.Session(
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials["aws_secret_access_key"],
            aws_session_token=credentials.get("aws_session_token"),
            region_name=side.region,
        )
    elif side.credentials and side.credentials.profile:
        session = boto3.session.Session(profile_name=side.credentials.profile, region_name=side.region)
    else:
        session = boto3.session.Session(region_name=side.region)
    return RegionSession(
        region=side.region,
        endpoint=known.get(side.region),
        session=session,
        counter=counter if counter is not None else CallCounter(),
    )
