"""The sender's federated peer credentials: token, exchange at the peer's STS, cache, loud failures, and
the signed-request path for a boto3 that predates GetWebIdentityToken (stubbed botocore, local HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.stub import Stubber

from ddbbridge_lambdas.config import HandlerConfig, KeyAttribute
from ddbbridge_lambdas.federation import FederatedCredentials, PeerCredentialsError
from ddbbridge_lambdas.peer import OutgoingRecord, PeerKinesis

ROLE = "arn:aws:iam::444455556666:role/ddbbridge-users-sg-federated-writer"
PEER_URL = "http://127.0.0.1:1/peer"  # never contacted: the peer STS is stubbed
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def config(**extra: Any) -> HandlerConfig:
    values: dict[str, Any] = {
        "pair": "users",
        "local_region_name": "cn",
        "local_region": "cn-north-1",
        "peer_region_name": "sg",
        "peer_region": "ap-southeast-1",
        "table_name": "user-cn",
        "key_schema": (KeyAttribute("PK", "S", "HASH"),),
        "ledger_table": "l",
        "stats_table": "s",
        "dead_letter_queue_url": "http://sqs/dlq",
        "peer_stream_name": "ddbbridge-users-to-sg",
        "peer_endpoint_url": PEER_URL,
        "peer_credentials_mode": "federation",
        "peer_role_arn": ROLE,
        "token_audience": "ddbbridge.io",
        "token_duration_seconds": 300,
        "peer_session_seconds": 3600,
    }
    values.update(extra)
    return HandlerConfig(**values)


class Clients:
    """A session factory handing out stubbed STS clients: own region first, the peer second."""

    def __init__(self, own_endpoint: str = "https://sts.cn-north-1.amazonaws.com.cn") -> None:
        self.own = boto3.client(
            "sts",
            region_name="cn-north-1",
            endpoint_url=own_endpoint,
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )
        self.peer = boto3.client("sts", region_name="ap-southeast-1", endpoint_url=PEER_URL)
        self.own_stub, self.peer_stub = Stubber(self.own), Stubber(self.peer)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.wrap_own: Any = None

    def __call__(self, service: str, **options: Any) -> Any:
        self.calls.append((service, options))
        if options.get("region_name") == "ap-southeast-1":
            return self.peer
        return self.wrap_own(self.own) if self.wrap_own else self.own

    def expect_token(self, token: str = "header.claims.signature") -> None:
        self.own_stub.add_response(
            "get_web_identity_token",
            {"WebIdentityToken": token, "Expiration": NOW + timedelta(minutes=5)},
            {"Audience": ["ddbbridge.io"], "DurationSeconds": 300, "SigningAlgorithm": "RS256"},
        )

    def expect_exchange(
        self, token: str = "header.claims.signature", key: str = "ASIAPEER000000000001"
    ) -> None:
        self.peer_stub.add_response(
            "assume_role_with_web_identity",
            {
                "Credentials": {
                    "AccessKeyId": key,
                    "SecretAccessKey": "secret",
                    "SessionToken": "session",
                    "Expiration": NOW + timedelta(hours=1),
                }
            },
            {
                "RoleArn": ROLE,
                "RoleSessionName": "ddbbridge-users-cn-sender",
                "WebIdentityToken": token,
                "DurationSeconds": 3600,
            },
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def federated(clients: Clients, clock: Clock, **options: Any) -> FederatedCredentials:
    return FederatedCredentials(config(), clients, clock=clock, wall_clock=NOW.timestamp, **options)


def test_token_exchanged_at_the_peer_and_cached_until_shortly_before_expiry() -> None:
    clients, clock = Clients(), Clock()
    clients.expect_token("tok1")
    clients.expect_exchange("tok1", "ASIAPEER000000000001")
    clients.expect_token("tok2")
    clients.expect_exchange("tok2", "ASIAPEER000000000002")
    credentials = federated(clients, clock)
    with clients.own_stub, clients.peer_stub:
        assert credentials.get() == ("ASIAPEER000000000001", "secret", "session")
        clock.now += 3000  # 50 of the session's 60 minutes: still cached, no STS call
        assert credentials.get()[0] == "ASIAPEER000000000001"
        clock.now += 301  # within 5 minutes of the end: a new token and a new session
        assert credentials.get()[0] == "ASIAPEER000000000002"
        clients.own_stub.assert_no_pending_responses()
        clients.peer_stub.assert_no_pending_responses()
    peer_options = next(
        options for service, options in clients.calls if options["region_name"] == "ap-southeast-1"
    )
    assert peer_options["endpoint_url"] == PEER_URL  # the peer's endpoint, not the own region's


def test_the_peer_hop_uses_the_proxy_and_the_session_signs_put_records() -> None:
    clients, clock = Clients(), Clock()
    proxy = "http://proxy.internal:3128"
    credentials = FederatedCredentials(
        config(peer_proxy=proxy), clients, clock=clock, wall_clock=NOW.timestamp
    )
    credentials.peer_sts()
    peer_options = clients.calls[-1][1]
    assert peer_options["config"].proxies == {"https": proxy, "http": proxy}

    seen: dict[str, Any] = {}

    class Kinesis:
        def put_records(self, **_: Any) -> dict[str, Any]:
            return {"Records": [{}]}

    def kinesis_factory(service: str, **options: Any) -> Any:
        seen.update(options)
        return Kinesis()

    class Fixed:
        def get(self) -> tuple[str, str, str]:
            return ("ASIAPEER000000000001", "secret", "session")

        def invalidate(self) -> None:
            raise AssertionError("not expected")

    peer = PeerKinesis(config(), kinesis_factory, Fixed())
    assert peer.put_records([OutgoingRecord(0, b"x", "k")]) is None
    assert (seen["aws_access_key_id"], seen["aws_session_token"]) == ("ASIAPEER000000000001", "session")


@pytest.mark.parametrize(
    ("failing", "code", "words"),
    [
        ("own", "OutboundWebIdentityFederationDisabledException", "sts:GetWebIdentityToken in cn-north-1"),
        ("own", "AccessDenied", "sts:GetWebIdentityToken in cn-north-1: AccessDenied"),
        ("peer", "InvalidIdentityToken", f"sts:AssumeRoleWithWebIdentity of {ROLE} in ap-southeast-1"),
        ("peer", "AccessDenied", "AccessDenied: not authorized"),
    ],
)
def test_failures_are_loud_with_a_reason_and_nothing_falls_back(failing: str, code: str, words: str) -> None:
    clients, clock = Clients(), Clock()
    if failing == "own":
        clients.own_stub.add_client_error("get_web_identity_token", code, "not authorized")
    else:
        clients.expect_token()
        clients.peer_stub.add_client_error("assume_role_with_web_identity", code, "not authorized")
    credentials = federated(clients, clock)
    with clients.own_stub, clients.peer_stub, pytest.raises(PeerCredentialsError) as raised:
        credentials.get()
    assert words in str(raised.value) and code in str(raised.value)
    # A PutRecords attempt surfaces the same error instead of sending unsigned or with some other key.
    peer = PeerKinesis(
        config(), lambda *_, **__: pytest.fail("no Kinesis client without credentials"), credentials
    )
    clients.own_stub.add_client_error("get_web_identity_token", code, "not authorized")
    with clients.own_stub, pytest.raises(PeerCredentialsError):
        peer.put_records([OutgoingRecord(0, b"x", "k")])


def test_an_older_sdk_on_the_global_endpoint_is_sent_to_the_regional_one() -> None:
    clients = Clients(own_endpoint="https://sts.amazonaws.com")
    regional: list[str] = []

    def factory(service: str, **options: Any) -> Any:
        if "endpoint_url" in options:
            regional.append(options["endpoint_url"])
            return boto3.client("sts", **options)
        return clients.own

    credentials = FederatedCredentials(config(), factory, clock=Clock(), wall_clock=NOW.timestamp)
    assert credentials.own_sts().meta.endpoint_url == "https://sts.cn-north-1.amazonaws.com.cn"
    assert regional == ["https://sts.cn-north-1.amazonaws.com.cn"]


class WithoutTokenCall:
    """A client of an SDK that predates GetWebIdentityToken: same endpoint, no such method."""

    def __init__(self, client: Any) -> None:
        self.meta = client.meta


class FakeSts(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, list[str]], dict[str, str]]] = []
    answer: tuple[int, bytes] = (200, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        FakeSts.received.append((parse_qs(body), dict(self.headers.items())))
        status, document = FakeSts.answer
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(document)))
        self.end_headers()
        self.wfile.write(document)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_sts() -> Iterator[str]:
    FakeSts.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TOKEN_XML = (
    b'<GetWebIdentityTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    b"<GetWebIdentityTokenResult><WebIdentityToken>signed.jwt.token</WebIdentityToken>"
    b"<Expiration>2026-11-28T12:05:00Z</Expiration></GetWebIdentityTokenResult>"
    b"</GetWebIdentityTokenResponse>"
)
ERROR_XML = (
    b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
    b"<Code>OutboundWebIdentityFederationDisabledException</Code><Message>disabled</Message></Error>"
    b"</ErrorResponse>"
)


def test_an_sdk_without_the_token_call_signs_its_own_sts_request(fake_sts: str) -> None:
    clients, clock = Clients(own_endpoint=fake_sts), Clock()
    clients.wrap_own = WithoutTokenCall
    FakeSts.answer = (200, TOKEN_XML)
    clients.expect_exchange("signed.jwt.token")
    credentials = federated(
        clients, clock, signing_credentials=lambda: Credentials("AKIDSENDER", "s3cret", "tok")
    )
    with clients.peer_stub:
        assert credentials.get()[0] == "ASIAPEER000000000001"
    ((params, headers),) = FakeSts.received
    assert params == {
        "Action": ["GetWebIdentityToken"],
        "Version": ["2011-06-15"],
        "Audience.member.1": ["ddbbridge.io"],
        "DurationSeconds": ["300"],
        "SigningAlgorithm": ["RS256"],
    }
    authorization = headers["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDSENDER/")
    assert "/cn-north-1/sts/aws4_request" in authorization
    assert headers["X-Amz-Security-Token"] == "tok"


def test_the_signed_request_reports_sts_errors(fake_sts: str) -> None:
    clients = Clients(own_endpoint=fake_sts)
    clients.wrap_own = WithoutTokenCall
    FakeSts.answer = (403, ERROR_XML)
    credentials = federated(clients, Clock(), signing_credentials=lambda: Credentials("AKID", "s"))
    with pytest.raises(PeerCredentialsError) as raised:
        credentials.get()
    assert "(signed request): OutboundWebIdentityFederationDisabledException: disabled" in str(raised.value)
