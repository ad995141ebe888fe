"""A cold start builds each handler's clients from ONE boto3 session: a second session parses the
service models again (+0.14 s CPU and +7 MiB per sender cold start, docs/bench/profiling.md)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ddbbridge_dev.bench.cold_start import HANDLER_CONFIG
from ddbbridge_lambdas import applier, sender
from ddbbridge_lambdas.config import ENV_VAR


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    created: list[Any] = []

    class CountedSession(boto3.session.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

    monkeypatch.setattr(boto3.session, "Session", CountedSession)
    monkeypatch.setenv(ENV_VAR, json.dumps(HANDLER_CONFIG))
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
