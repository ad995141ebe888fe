"""Outbound identity federation for the emulated regions (moto 5.2.5 has none of it).

Each launcher is one account set in one partition and acts as its own token issuer:
- IAM Enable/Disable/GetOutboundWebIdentityFederation(Info): an account-wide switch. The issuer is
  `http://127.0.0.1:<launcher port>/_ddbbridge/oidc/<account>` (AWS: `https://<id>.tokens.sts.global.api.aws`).
- STS GetWebIdentityToken: a JWT signed (RS256 or ES384) with this launcher's keys, claims as AWS
  documents them (`sub` = the caller's principal ARN, the role's ARN for a role session).
- `<issuer>/.well-known/openid-configuration` and `<issuer>/.well-known/jwks.json`, served by the launcher.
- STS AssumeRoleWithWebIdentity, replacing moto's (which checks nothing): the token's issuer must be an
  IAM OIDC provider of the role's account whose client IDs hold the token's `aud`; the signature is
  checked against the issuer's JWKS fetched over HTTP (the peer launcher); `exp`; a GetWebIdentityToken
  token must come from another partition and carry exactly one audience; and the role's trust policy must
  allow it for that provider with its conditions on `<provider>:aud` / `<provider>:sub` (trust_policy.py).
Switch state lives on moto's IAM backend object, so `POST /moto-api/reset` forgets it like any other.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from moto.core.exceptions import ServiceException, _RESTError
from moto.core.responses import ActionResult, EmptyResult
from moto.iam.models import IAMBackend, iam_backends
from moto.iam.responses import IamResponse
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import get_partition

from ddbbridge_dev import oidc, trust_policy

STS_NAMESPACE = "https://sts.amazonaws.com/"
DEFAULT_TOKEN_SECONDS = 300
TOKEN_SECONDS = (60, 3600)  # GetWebIdentityToken DurationSeconds bounds
MAX_AUDIENCES = 10
MAX_TAGS = 50
JWKS_TIMEOUT_SECONDS = 5.0
_DOCUMENT_ROUTE = re.compile(
    r"^/_ddbbridge/oidc/(?P<account>[0-9]{12})/\.well-known/(?P<name>openid-configuration|jwks\.json)$"
)
_STATE = "_ddbbridge_outbound_federation"


class FederationError(ServiceException):
    """An error of the service model. Defined here, not in moto: moto looks an exception's shape up in
    the service its module belongs to, and the request's own service is the right one."""


class AccessDeniedError(_RESTError):
    """STS answers a refused role assumption with HTTP 403 AccessDenied (not in the service model)."""

    code = 403

    def __init__(self, message: str) -> None:
        super().__init__("AccessDenied", message)


@dataclass
class _Issuer:
    base_url: str | None = None
    key_dir: Path | None = None
    region: str | None = None
    keys: dict[str, oidc.SigningKey] | None = None


_issuer = _Issuer()
_lock = threading.Lock()


def configure(base_url: str, key_dir: Path, region: str) -> None:
    """Called by the launcher once it knows its bound port: issuers are URLs of this server."""
    with _lock:
        _issuer.base_url = base_url.rstrip("/")
        _issuer.key_dir = key_dir
        _issuer.region = region


def _keys() -> dict[str, oidc.SigningKey]:
    with _lock:
        if _issuer.keys is None:
            if _issuer.key_dir is None:
                raise RuntimeError("federation.configure() was not called: no key folder")
            _issuer.keys = oidc.load_or_create_keys(_issuer.key_dir)
        return _issuer.keys


def issuer_for(account: str) -> str:
    if _issuer.base_url is None:
        raise RuntimeError("federation.configure() was not called: no issuer URL")
    return f"{_issuer.base_url}/_ddbbridge/oidc/{account}"


@dataclass
class _AccountSwitch:
    enabled: bool = False
    issuer: str | None = None  # made on first enable and kept, as AWS keeps an account's issuer URL


def _switch(backend: IAMBackend) -> _AccountSwitch:
    switch: _AccountSwitch = backend.__dict__.setdefault(_STATE, _AccountSwitch())
    return switch


# --- IAM ---------------------------------------------------------------------------------------------


def enable_outbound_web_identity_federation(self: IamResponse) -> ActionResult:
    switch = _switch(self.backend)
    if switch.enabled:
        raise FederationError(
            "FeatureEnabled", "Outbound identity federation is already enabled for this account."
        )
    switch.issuer = switch.issuer or issuer_for(self.current_account)
    switch.enabled = True
    return ActionResult({"IssuerIdentifier": switch.issuer})


def disable_outbound_web_identity_federation(self: IamResponse) -> ActionResult:
    switch = _switch(self.backend)
    if not switch.enabled:
        raise FederationError(
            "FeatureDisabled", "Outbound identity federation is already disabled for this account."
        )
    switch.enabled = False  # the issuer keeps serving its keys: tokens issued before stay verifiable
    return EmptyResult()


def get_outbound_web_identity_federation_info(self: IamResponse) -> ActionResult:
    switch = _switch(self.backend)
    if switch.issuer is None:
        raise FederationError(
            "FeatureDisabled", "Outbound identity federation has never been enabled for this account."
        )
    return ActionResult({"IssuerIdentifier": switch.issuer, "JwtVendingEnabled": switch.enabled})


# --- the issuer's documents -------------------------------------------------------------------------


def serve_document(path: str) -> tuple[int, dict[str, Any]] | None:
    """The launcher's answer for an OIDC discovery path, or None when `path` is not one."""
    match = _DOCUMENT_ROUTE.match(path)
    if match is None:
        return None
    account = match["account"]
    if _issuer.region is None or account not in iam_backends:
        return 404, {"error": f"no issuer for account {account}"}
    switch = _switch(iam_backends[account][get_partition(_issuer.region)])
    if switch.issuer is None:
        return 404, {"error": f"outbound identity federation was never enabled for account {account}"}
    if match["name"] == "jwks.json":
        return 200, oidc.jwks(_keys())
    return 200, oidc.discovery(switch.issuer, f"{switch.issuer}/.well-known/jwks.json")


# --- STS GetWebIdentityToken ------------------------------------------------------------------------


def _validation(message: str) -> FederationError:
    return FederationError("ValidationError", message)


def _caller(self: TokenResponse) -> tuple[str, datetime.datetime | None]:
    """The calling principal's ARN (a role session: its role's ARN) and its session's expiry."""
    access_key = self.get_access_key()
    assumed = self.backend.get_assumed_role_from_access_key(access_key)
    if assumed is not None:
        return str(assumed.role_arn), assumed.expiration
    _, arn, _ = self.backend.get_caller_identity(access_key, self.region)
    return str(arn), None


def _principal_tags(account: str, partition: str, arn: str) -> dict[str, str]:
    backend = iam_backends[account][partition]
    kind, _, name = arn.partition(":iam::")[2].partition(":")[2].partition("/")
    try:
        if kind == "role":
            principal: Any = backend.get_role_by_arn(arn)
        elif kind == "user":
            principal = backend.get_user(name.rsplit("/", 1)[-1])
        else:
            return {}
    except Exception:  # moto's not-found types differ per entity
        return {}
    tags = getattr(principal, "tags", None) or []  # moto: a list on roles, a dict of tags on users
    listed = tags.values() if isinstance(tags, dict) else tags
    return {str(tag["Key"]): str(tag["Value"]) for tag in listed}


def get_web_identity_token(self: TokenResponse) -> ActionResult:
    account, partition = self.current_account, self.partition
    if not _switch(iam_backends[account][partition]).enabled:
        raise FederationError(
            "OutboundWebIdentityFederationDisabledException",
            "Outbound identity federation is not enabled for this account. "
            "Enable it with iam:EnableOutboundWebIdentityFederation.",
        )
    audiences = [str(a) for a in (self._get_param("Audience") or [])]
    if not 1 <= len(audiences) <= MAX_AUDIENCES or any(not a for a in audiences):
        raise _validation(f"Audience must hold 1 to {MAX_AUDIENCES} non-empty values")
    algorithm = self._get_param("SigningAlgorithm")
    if algorithm not in oidc.ALGORITHMS:
        raise _validation(f"SigningAlgorithm must be one of {list(oidc.ALGORITHMS)}, not {algorithm!r}")
    duration = int(self._get_param("DurationSeconds") or DEFAULT_TOKEN_SECONDS)
    if not TOKEN_SECONDS[0] <= duration <= TOKEN_SECONDS[1]:
        raise _validation(f"DurationSeconds must be between {TOKEN_SECONDS[0]} and {TOKEN_SECONDS[1]}")
    if (self._get_param("SubjectMode") or "AWSIdentity") != "AWSIdentity" or self._get_param("Scope"):
        # OriginIdentity needs a trusted identity propagation context; no emulated session has one.
        raise _validation(
            "SubjectMode OriginIdentity (and Scope) need a trusted identity propagation context"
        )
    tags = self._get_param("Tags") or []
    if len(tags) > MAX_TAGS:
        raise _validation(f"at most {MAX_TAGS} Tags")
    principal, session_expiry = _caller(self)
    now = int(time.time())
    if (
        session_expiry is not None
        and now + duration > session_expiry.replace(tzinfo=datetime.UTC).timestamp()
    ):
        raise FederationError(
            "SessionDurationEscalationException",
            "The requested token duration would extend the session beyond its expiration time.",
        )
    namespace: dict[str, Any] = {
        "aws_account": account,
        "source_region": self.region,
        "principal_id": principal,
    }
    principal_tags = _principal_tags(account, partition, principal)
    if principal_tags:
        namespace["principal_tags"] = principal_tags
    if tags:
        namespace["request_tags"] = {str(tag["Key"]): str(tag["Value"]) for tag in tags}
    claims = {
        "iss": issuer_for(account),
        "aud": audiences[0] if len(audiences) == 1 else audiences,
        "sub": principal,
        "iat": now,
        "exp": now + duration,
        "jti": str(uuid.uuid4()),
        STS_NAMESPACE: namespace,
    }
    token = oidc.encode(claims, _keys()[algorithm])
    expiration = datetime.datetime.fromtimestamp(now + duration, tz=datetime.UTC)
    return ActionResult({"WebIdentityToken": token, "Expiration": expiration})


# --- STS AssumeRoleWithWebIdentity ------------------------------------------------------------------


def _invalid(message: str) -> FederationError:
    return FederationError("InvalidIdentityToken", message)


def fetch_jwks(issuer: str) -> dict[str, Any]:
    """OIDC discovery as IAM does it: the issuer's metadata names the JWKS; both over HTTP(S)."""

    def get(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=JWKS_TIMEOUT_SECONDS) as response:
            document = json.loads(response.read())
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document

    try:
        metadata = get(issuer.rstrip("/") + "/.well-known/openid-configuration")
        if metadata.get("issuer") != issuer:
            raise ValueError(f"the discovery document names issuer {metadata.get('issuer')!r}")
        return get(str(metadata["jwks_uri"]))
    except (OSError, ValueError, KeyError) as error:
        raise FederationError(
            "IDPCommunicationError",
            f"Could not fetch the OIDC discovery document or JWKS of {issuer}: {error}",
        ) from None


def provider_key(issuer: str) -> str:
    """IAM names an OIDC provider (and its condition keys) by its URL without the scheme."""
    parsed = urlparse(issuer)
    return (parsed.netloc + parsed.path).rstrip("/")


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [str(a) for a in aud] if isinstance(aud, list) else [str(aud)] if aud is not None else []


def assume_role_with_web_identity(self: TokenResponse) -> ActionResult:
    role_arn = str(self._get_param("RoleArn"))
    session_name = str(self._get_param("RoleSessionName"))
    duration = int(self._get_param("DurationSeconds") or 3600)
    try:
        token = oidc.parse(str(self._get_param("WebIdentityToken") or ""))
    except oidc.TokenError as error:
        raise _invalid(f"The web identity token is not a valid JWT: {error}") from None
    claims = token.claims
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _invalid("The web identity token has no iss claim")
    role_account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else self.current_account
    # AssumeRoleWithWebIdentity is an unsigned call: moto cannot tell the region from a signature and
    # falls back to us-east-1, but this launcher serves exactly one region.
    region = _issuer.region or self.region
    partition = get_partition(region)
    iam = iam_backends[role_account][partition]
    key = provider_key(issuer)
    provider_arn = f"arn:{partition}:iam::{role_account}:oidc-provider/{key}"
    provider = iam.open_id_providers.get(provider_arn)
    if provider is None:
        raise _invalid(f"No OpenIDConnect provider found in your account for {issuer}")
    try:
        oidc.verify(token, fetch_jwks(issuer))
    except oidc.TokenError as error:
        raise _invalid(f"Couldn't verify the web identity token: {error}") from None
    now = time.time()
    expires = claims.get("exp")
    if not isinstance(expires, int | float):
        raise _invalid("The web identity token has no numeric exp claim")
    if now >= expires:
        raise FederationError(
            "ExpiredTokenException",
            f"Token expired: current date/time {int(now)} must be before the expiration date/time {expires}",
        )
    not_before = claims.get("nbf")
    if isinstance(not_before, int | float) and now < not_before:
        raise _invalid("The web identity token is not valid yet (nbf)")
    audiences = _audiences(claims)
    namespace = claims.get(STS_NAMESPACE)
    if isinstance(namespace, dict):
        # Rules AWS documents for tokens of GetWebIdentityToken (cross-partition federation only).
        if len(audiences) != 1:
            raise _invalid(
                "AssumeRoleWithWebIdentity rejects GetWebIdentityToken tokens with more than one audience"
            )
        source = str(namespace.get("source_region", ""))
        if source and get_partition(source) == partition:
            raise _invalid(
                f"A GetWebIdentityToken token from {source} cannot be used in its own partition {partition}"
            )
    if not any(audience in provider.client_id_list for audience in audiences):
        raise _invalid(f"Incorrect token audience {audiences}: not a client ID of {provider_arn}")
    try:
        role = iam.get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException; AWS says only "not authorized"
        raise AccessDeniedError(
            f"Not authorized to perform sts:AssumeRoleWithWebIdentity: no role {role_arn}"
        ) from None
    subject = str(claims.get("sub", ""))
    decision = trust_policy.evaluate(
        role.assume_role_policy_document,
        provider_arn,
        {f"{key}:aud": audiences, f"{key}:sub": [subject]} if subject else {f"{key}:aud": audiences},
    )
    if not decision.allowed:
        raise AccessDeniedError(f"Not authorized to perform sts:AssumeRoleWithWebIdentity: {decision.reason}")
    maximum = int(role.max_session_duration or 3600)
    if not 900 <= duration <= maximum:
        raise _validation(f"DurationSeconds must be between 900 and the role's MaxSessionDuration {maximum}")
    assumed = sts_backends[role_account][partition].assume_role(
        region_name=region,
        role_session_name=session_name,
        role_arn=role_arn,
        policy=self._get_param("Policy"),
        duration=duration,
        external_id="",
    )
    return ActionResult(
        {
            "Credentials": assumed,
            "SubjectFromWebIdentityToken": subject,
            "AssumedRoleUser": {"AssumedRoleId": assumed.user_id, "Arn": assumed.arn},
            "Provider": issuer,
            "Audience": audiences[0],
        }
    )


def install() -> None:
    """Give moto's IAM and STS response classes the operations (moto dispatches by method name)."""
    for name, function in (
        ("enable_outbound_web_identity_federation", enable_outbound_web_identity_federation),
        ("disable_outbound_web_identity_federation", disable_outbound_web_identity_federation),
        ("get_outbound_web_identity_federation_info", get_outbound_web_identity_federation_info),
    ):
        setattr(IamResponse, name, function)
    setattr(TokenResponse, "get_web_identity_token", get_web_identity_token)  # noqa: B010
    setattr(TokenResponse, "assume_role_with_web_identity", assume_role_with_web_identity)  # noqa: B010
