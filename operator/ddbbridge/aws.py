"""boto3 clients per region: endpoint overrides, credentials, retries and a count of the calls made.

Product code knows only "an endpoint per region", from `DDBBRIDGE_ENDPOINTS`
(`cn-north-1=http://127.0.0.1:5001,ap-southeast-1=http://...`); without it boto3's defaults apply.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.session

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


class CountedClient:
    """A shared boto3 client seen through one RegionSession: its calls count in that session's counter.

    Method calls and paginator pages are counted (waiters and `build_full_result` are not: nothing of
    ours uses them); everything else (`exceptions`, `meta`, ...) passes through.
    """

    __slots__ = ("_client", "_counter", "_service")

    def __init__(self, client: Any, counter: CallCounter) -> None:
        self._client = client
        self._counter = counter
        self._service: str = client.meta.service_model.service_name

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        operation = self._client.meta.method_to_api_mapping.get(name)
        counter, service = self._counter, self._service
        if operation is not None:

            def call(*args: Any, **kwargs: Any) -> Any:
                counter.record(service, operation)
                return attribute(*args, **kwargs)

            return call
        if name == "get_paginator":

            def paginator(method: str) -> Any:
                api = self._client.meta.method_to_api_mapping[method]
                return _CountedPaginator(attribute(method), counter, service, api)

            return paginator
        return attribute


class _CountedPaginator:
    def __init__(self, paginator: Any, counter: CallCounter, service: str, operation: str) -> None:
        self._paginator, self._counter = paginator, counter
        self._service, self._operation = service, operation

    def paginate(self, **kwargs: Any) -> Any:
        for page in self._paginator.paginate(**kwargs):
            self._counter.record(self._service, self._operation)
            yield page


class ClientPool:
    """boto3 clients shared by the whole process, per (service, region, endpoint, credentials, retries).

    A fresh boto3 session parses every service model again: about 0.4 s of CPU for the seven
    services of a reconcile (measured here), and the operator used to make one per pass and pair,
    which dominated its health checks' CPU and its memory at 100 pairs (docs/bench/profiling.md).
    Clients are thread-safe; sessions are not, so creation runs under the pool's lock. One session
    per identity serves every region, and all sessions share one botocore loader (the parsed models:
    about 25 MiB per session otherwise). Bounded (LRU) so rotated credentials do not pile up clients.
    """

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._clients: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._sessions: OrderedDict[tuple[Any, ...], boto3.session.Session] = OrderedDict()
        self._loader: Any = None  # botocore's data loader, shared by every session of the pool
        self._lock = threading.Lock()

    def client(
        self,
        service: str,
        *,
        region: str,
        endpoint: str | None,
        profile: str | None,
        credentials: dict[str, str] | None,
        max_attempts: int,
    ) -> Any:
        # Without explicit credentials the default chain reads the environment: a changed
        # environment (another key, profile or endpoint) must not reuse a client made before.
        identity = (profile, _fingerprint(credentials) if credentials else _fingerprint(_chain_inputs()))
        key = (service, region, endpoint, identity, max_attempts)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
            session = self._session(identity, region, profile, credentials)
            # A plain `str` service name matches none of boto3-stubs' Literal overloads.
            client = session.client(  # type: ignore[call-overload]
                service,
                region_name=region,
                endpoint_url=endpoint,
                config=botocore.config.Config(
                    retries={"mode": "standard", "max_attempts": max_attempts},
                    max_pool_connections=64,
                    connect_timeout=5,
                    read_timeout=60,
                ),
            )
            self._clients[key] = client
            _evict(self._clients, self.limit)
            return client

    def _session(
        self,
        identity: tuple[Any, ...],
        region: str,
        profile: str | None,
        credentials: dict[str, str] | None,
    ) -> boto3.session.Session:
        session = self._sessions.get(identity)
        if session is None:
            core = botocore.session.get_session()
            if self._loader is None:
                self._loader = core.get_component("data_loader")
            else:
                core.register_component("data_loader", self._loader)
            if credentials:
                session = boto3.session.Session(
                    aws_access_key_id=credentials["aws_access_key_id"],
                    aws_secret_access_key=credentials["aws_secret_access_key"],
                    aws_session_token=credentials.get("aws_session_token"),
                    region_name=region,
                    botocore_session=core,
                )
            elif profile:
                session = boto3.session.Session(
                    profile_name=profile, region_name=region, botocore_session=core
                )
            else:
                session = boto3.session.Session(region_name=region, botocore_session=core)
            self._sessions[identity] = session
            _evict(self._sessions, self.limit)
        self._sessions.move_to_end(identity)
        return session

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
            self._sessions.clear()


def _fingerprint(credentials: dict[str, str] | None) -> str | None:
    """Identifies a credential set without keeping the secret in a key."""
    if not credentials:
        return None
    text = "\0".join(credentials.get(k) or "" for k in sorted(credentials))
    return hashlib.sha256(text.encode()).hexdigest()


CHAIN_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ENDPOINT_URL",
)


def _chain_inputs() -> dict[str, str]:
    return {name: os.environ.get(name, "") for name in CHAIN_VARIABLES}


def _evict(entries: OrderedDict[tuple[Any, ...], Any], limit: int) -> None:
    while len(entries) > limit:
        entries.popitem(last=False)


SHARED_CLIENTS = ClientPool()


@dataclass
class RegionSession:
    """Clients for one AWS region (shared through `SHARED_CLIENTS`), counted in one counter."""

    region: str
    endpoint: str | None
    counter: CallCounter
    profile: str | None = None
    credentials: dict[str, str] | None = field(default=None, repr=False)
    # botocore attempts per call; the operator's deletion path uses fewer so an unreachable region
    # fails a pass quickly and the pass is retried with backoff instead.
    max_attempts: int = 8
    pool: ClientPool = field(default=SHARED_CLIENTS, repr=False)

    def client(self, service: str) -> Any:
        shared = self.pool.client(
            service,
            region=self.region,
            endpoint=self.endpoint,
            profile=self.profile,
            credentials=self.credentials,
            max_attempts=self.max_attempts,
        )
        return CountedClient(shared, self.counter)


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
    return RegionSession(
        region=side.region,
        endpoint=known.get(side.region),
        counter=counter if counter is not None else CallCounter(),
        profile=None if credentials else (side.credentials.profile if side.credentials else None),
        credentials=credentials or None,
    )
