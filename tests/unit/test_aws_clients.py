"""Shared boto3 clients (ddbbridge.aws.ClientPool): one client per region, endpoint, identity and retry
budget for the whole process, while every RegionSession still counts its own calls."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from ddbbridge.aws import CallCounter, ClientPool, RegionSession

ENDPOINT = "http://127.0.0.1:9"  # never reached: the stubber answers


def session(pool: ClientPool, counter: CallCounter, **kwargs: object) -> RegionSession:
    return RegionSession(
        region="cn-north-1",
        endpoint=ENDPOINT,
        counter=counter,
        pool=pool,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_sessions_share_one_client_and_count_apart(keys: None) -> None:
    pool = ClientPool()
    first, second = CallCounter(), CallCounter()
    a, b = session(pool, first), session(pool, second)
    shared = pool.client(
        "sts", region="cn-north-1", endpoint=ENDPOINT, profile=None, credentials=None, max_attempts=8
    )
    assert a.client("sts")._client is shared and b.client("sts")._client is shared
    with Stubber(shared) as stub:
        for _ in range(3):
            stub.add_response("get_caller_identity", {"Account": "123456789012"})
        assert a.client("sts").get_caller_identity()["Account"] == "123456789012"
        b.client("sts").get_caller_identity()
        b.client("sts").get_caller_identity()
    assert first.counts == {("sts", "GetCallerIdentity"): 1}
    assert second.counts == {("sts", "GetCallerIdentity"): 2}


def test_paginator_pages_are_counted(keys: None) -> None:
    pool, counter = ClientPool(), CallCounter()
    iam = session(pool, counter).client("iam")
    with Stubber(iam._client) as stub:
        stub.add_response("list_roles", {"Roles": [], "IsTruncated": True, "Marker": "m"})
        stub.add_response("list_roles", {"Roles": [], "IsTruncated": False})
        pages = list(iam.get_paginator("list_roles").paginate())
    assert len(pages) == 2
    assert counter.counts == {("iam", "ListRoles"): 2}


def test_identity_retries_and_endpoint_separate_clients(keys: None, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = ClientPool()
    plain = session(pool, CallCounter()).client("sqs")._client
    quick = session(pool, CallCounter(), max_attempts=2).client("sqs")._client
    keyed = (
        session(pool, CallCounter(), credentials={"aws_access_key_id": "AKID", "aws_secret_access_key": "s"})
        .client("sqs")
        ._client
    )
    elsewhere = RegionSession("cn-north-1", "http://127.0.0.1:10", CallCounter(), pool=pool).client("sqs")
    assert len({id(plain), id(quick), id(keyed), id(elsewhere._client)}) == 4
    assert keyed._request_signer._credentials.access_key == "AKID"
    # The default chain changed (another key in the environment): a new client, with that key.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    changed = session(pool, CallCounter()).client("sqs")._client
    assert changed is not plain
    assert changed._request_signer._credentials.access_key == "rotated"


def test_pool_is_bounded(keys: None) -> None:
    pool = ClientPool(limit=2)
    first = session(pool, CallCounter()).client("sqs")._client
    session(pool, CallCounter()).client("sts")
    session(pool, CallCounter()).client("kinesis")
    assert session(pool, CallCounter()).client("sqs")._client is not first  # evicted, made again


def test_one_session_per_identity_and_one_loader_for_all(keys: None) -> None:
    """A second boto3 session would parse every service model again (~25 MiB here)."""
    pool = ClientPool()
    cn = RegionSession("cn-north-1", ENDPOINT, CallCounter(), pool=pool).client("sqs")
    sg = RegionSession("ap-southeast-1", "http://127.0.0.1:10", CallCounter(), pool=pool).client("sqs")
    keyed = RegionSession(
        "cn-north-1",
        ENDPOINT,
        CallCounter(),
        credentials={"aws_access_key_id": "AKID", "aws_secret_access_key": "s"},
        pool=pool,
    ).client("sqs")
    assert cn._client.meta.region_name == "cn-north-1" and sg._client.meta.region_name == "ap-southeast-1"
    sessions = list(pool._sessions.values())
    assert len(sessions) == 2  # the default chain (both regions) and the keyed identity
    loaders = {id(s._session.get_component("data_loader")) for s in sessions}
    assert len(loaders) == 1
    assert keyed._client._request_signer._credentials.access_key == "AKID"
