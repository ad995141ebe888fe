"""A cold start builds each handler's clients from ONE boto3 session: a second session parses the
service models again (+0.14 s CPU and +7 MiB per sender cold start, docs/bench/profiling.md)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ddbbridge_lambdas import applier, sender
from ddbbridge_lambdas.config import ENV_VAR

CONFIG = {
    "pair": "users",
    "local_region_name": "cn",
    "local_region": "cn-north-1",
    "peer_region_name": "sg",
    "peer_region": "ap-southeast-1",
    "table_name": "users-cn",
    "ledger_table": "ledger",
    "stats_table": "stats",
    "dead_letter_queue_url": "http://127.0.0.1:9/queue/dlq",
    "peer_stream_name": "to-sg",
    "peer_access_key_parameter": "/users/access-key-id",
    "peer_secret_key_parameter": "/users/secret-access-key",
    "key_schema": [{"name": "PK", "type": "S"}],
}


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    created: list[Any] = []

    class CountedSession(boto3.session.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(boto3.session, "Session", CountedSession)
    monkeypatch.setenv(ENV_VAR, json.dumps(CONFIG))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    return created


def test_the_sender_builds_its_peer_kinesis_client_from_its_own_session(sessions: list[Any]) -> None:
    built = sender._build()
    assert built.peer.credentials is not None
    built.peer.credentials.get = lambda: ("AKIAPEER", "peer-secret")  # type: ignore[method-assign]

    peer_client = built.peer.client()

    assert len(sessions) == 1
    assert peer_client.meta.region_name == "ap-southeast-1"
    # Signed with the peer key, not the local identity the session holds.
    assert peer_client._request_signer._credentials.access_key == "AKIAPEER"


def test_the_applier_builds_from_one_session(sessions: list[Any]) -> None:
    applier._build()
    assert len(sessions) == 1
