"""Keyless peer credentials: IAM outbound identity federation across partitions.

The sender asks its OWN partition's STS for a short-lived web identity token (GetWebIdentityToken,
audience fixed by the reconcile) and exchanges it at the PEER partition's STS (AssumeRoleWithWebIdentity,
through the peer endpoint and the proxy when set) for a session of the peer's federated-writer role.
The session is cached until shortly before it ends; nothing is stored anywhere.

Every failure raises `PeerCredentialsError` with the step and AWS's reason: there is no fallback to a
stored key (the batch fails and Lambda retries it). Tokens and secrets are never logged.

The boto3 inside the Lambda runtime may predate GetWebIdentityToken (added to botocore in late 2025):
then the token is requested with a SigV4-signed STS Query request of our own, built with botocore's
signer, which every runtime's botocore has.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any
from xml.etree import ElementTree

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

from .config import HandlerConfig
from .errors import error_code, is_aws_error

log = logging.getLogger(__name__)

STS_VERSION = "2011-06-15"
SIGNING_ALGORITHM = "RS256"
GLOBAL_STS_HOST = "sts.amazonaws.com"  # GetWebIdentityToken is not served there
# Refresh this long before the session ends: a batch started just before must finish with it.
REFRESH_MARGIN_SECONDS = 300.0
QUERY_TIMEOUT_SECONDS = 10.0

Credentials = tuple[str, str, str]  # access key id, secret, session token


class PeerCredentialsError(RuntimeError):
    """The sender could not get credentials for the peer partition; the message says where and why."""


def regional_sts_url(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://sts.{region}.{suffix}"


class FederatedCredentials:
    """Temporary credentials of `config.peer_role_arn`, refreshed before they expire."""

    def __init__(
        self,
        config: HandlerConfig,
        session_factory: Callable[..., Any],
        *,
        signing_credentials: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not config.peer_role_arn or not config.token_audience:
            raise ValueError("federation needs peer_role_arn and token_audience")
        self.config = config
        self.session_factory = session_factory
        self.signing_credentials = signing_credentials or (
            lambda: botocore.session.get_session().get_credentials()
        )
        self.clock = clock
        self.wall_clock = wall_clock
        self._cached: Credentials | None = None
        self._refresh_at = 0.0
        self._own_sts: Any = None
        self._peer_sts: Any = None

    def get(self) -> Credentials:
        if self._cached is None or self.clock() >= self._refresh_at:
            token = self._token()
            self._cached, lifetime = self._exchange(token)
            # Use at least half the session even when it is short, so a tiny session does not turn
            # into one token per batch.
            usable = max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
            self._refresh_at = self.clock() + usable
            log.info(
                "peer session for %s valid %.0f s (key id ending %s)",
                self.config.peer_role_arn,
                lifetime,
                self._cached[0][-4:],
            )
        return self._cached

    def invalidate(self) -> None:
        self._cached = None

    # -- step 1: a token from this partition ------------------------------------------------------

    def own_sts(self) -> Any:
        if self._own_sts is None:
            region = self.config.local_region
            client = self.session_factory("sts", region_name=region, config=_config(None))
            if urllib.parse.urlsplit(client.meta.endpoint_url).hostname == GLOBAL_STS_HOST:
                # An older SDK's "legacy" default sends every region to the global endpoint.
                client = self.session_factory(
                    "sts", region_name=region, endpoint_url=regional_sts_url(region), config=_config(None)
                )
            self._own_sts = client
        return self._own_sts

    def _token(self) -> str:
        client = self.own_sts()
        where = f"sts:GetWebIdentityToken in {self.config.local_region}"
        if not hasattr(client, "get_web_identity_token"):
            return self._token_by_signed_query(client, where)
        try:
            response = client.get_web_identity_token(
                Audience=[self.config.token_audience],
                DurationSeconds=self.config.token_duration_seconds,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except Exception as error:
            raise _failure(where, error) from None
        return str(response["WebIdentityToken"])

    def _token_by_signed_query(self, client: Any, where: str) -> str:
        """GetWebIdentityToken without the SDK knowing it: STS's Query protocol, signed with SigV4."""
        credentials = self.signing_credentials()
        if credentials is None:
            raise PeerCredentialsError(f"{where}: no AWS credentials to sign the request with")
        body = urllib.parse.urlencode(
            {
                "Action": "GetWebIdentityToken",
                "Version": STS_VERSION,
                "Audience.member.1": self.config.token_audience,
                "DurationSeconds": str(self.config.token_duration_seconds),
                "SigningAlgorithm": SIGNING_ALGORITHM,
            }
        )
        url = client.meta.endpoint_url
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        SigV4Auth(credentials.get_frozen_credentials(), "sts", self.config.local_region).add_auth(request)
        prepared = request.prepare()
        raw = urllib.request.Request(
            url, data=body.encode(), headers=dict(prepared.headers.items()), method="POST"
        )
        try:
            with urllib.request.urlopen(raw, timeout=QUERY_TIMEOUT_SECONDS) as response:
                document = response.read()
        except urllib.error.HTTPError as error:
            code, message = _query_error(error.read())
            raise PeerCredentialsError(f"{where} (signed request): {code}: {message}") from None
        except OSError as error:
            raise PeerCredentialsError(f"{where} (signed request): {type(error).__name__}: {error}") from None
        token = _find_text(document, "WebIdentityToken")
        if not token:
            raise PeerCredentialsError(f"{where} (signed request): the response has no WebIdentityToken")
        return token

    # -- step 2: the exchange in the peer partition -----------------------------------------------

    def peer_sts(self) -> Any:
        if self._peer_sts is None:
            region = self.config.peer_region
            endpoint = self.config.peer_endpoint_url or regional_sts_url(region)
            self._peer_sts = self.session_factory(
                "sts", region_name=region, endpoint_url=endpoint, config=_config(self.config.peer_proxy)
            )
        return self._peer_sts

    def _exchange(self, token: str) -> tuple[Credentials, float]:
        where = f"sts:AssumeRoleWithWebIdentity of {self.config.peer_role_arn} in {self.config.peer_region}"
        try:
            response = self.peer_sts().assume_role_with_web_identity(
                RoleArn=self.config.peer_role_arn,
                RoleSessionName=f"ddbbridge-{self.config.pair}-{self.config.local_region_name}-sender"[:64],
                WebIdentityToken=token,
                DurationSeconds=self.config.peer_session_seconds,
            )
        except Exception as error:
            raise _failure(where, error) from None
        issued = response["Credentials"]
        expiration = issued["Expiration"]
        ends = expiration.timestamp() if isinstance(expiration, datetime) else float(expiration)
        lifetime = max(0.0, ends - self.wall_clock())
        credentials = (issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"])
        return credentials, lifetime


def _config(proxy: str | None) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=20,
        proxies={"https": proxy, "http": proxy} if proxy else None,
    )


def _failure(where: str, error: BaseException) -> PeerCredentialsError:
    if is_aws_error(error):
        message = ""
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            message = str(response.get("Error", {}).get("Message", ""))
        return PeerCredentialsError(f"{where}: {error_code(error)}: {message or error}")
    return PeerCredentialsError(f"{where}: {type(error).__name__}: {error}")


def _find_text(document: bytes, name: str) -> str | None:
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag == name or element.tag.endswith("}" + name):
            return (element.text or "").strip()
    return None


def _query_error(document: bytes) -> tuple[str, str]:
    return (_find_text(document, "Code") or "UnknownError", _find_text(document, "Message") or "")
