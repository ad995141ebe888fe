"""The emulated outbound identity federation (devtools/ddbbridge_dev/federation.py) over real HTTP.

cn-north-1 (aws-cn) issues tokens, ap-southeast-1 (aws) exchanges them, as cross-partition federation
works on AWS. Signatures are checked here with `cryptography` directly against the JWKS the issuer
serves, not with the emulator's own verifier. Refusals must fail for the reason the test names.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.fixtures.regions import Region, Regions
from tests.fixtures.runner import RunnerProcess, endpoints_of
from tests.integration.runner_support import Inbox
from tests.integration.runner_support import Region as RunnerRegion

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("fresh_regions")]

ACCOUNT = "123456789012"
AUDIENCE = "ddbbridge-federation-test"
STS_NAMESPACE = "https://sts.amazonaws.com/"
TRUST_LAMBDA = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(_b64(header)), json.loads(_b64(payload))


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _error(call: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return error["Error"]["Code"], error["Error"]["Message"], error["ResponseMetadata"]["HTTPStatusCode"]


def _client(region: Region, service: str, credentials: dict[str, Any]) -> Any:
    return boto3.client(
        service,
        region_name=region.name,
        endpoint_url=region.local,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def _enable(region: Region) -> str:
    iam = region.client("iam")
    try:
        return str(iam.enable_outbound_web_identity_federation()["IssuerIdentifier"])
    except ClientError as error:
        if error.response["Error"]["Code"] != "FeatureEnabled":
            raise
        return str(iam.get_outbound_web_identity_federation_info()["IssuerIdentifier"])


def _role_session(region: Region, name: str) -> tuple[str, Any]:
    """A role in `region` and an STS client signed with one of its sessions."""
    iam = region.client("iam")
    arn = str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_LAMBDA)["Role"]["Arn"])
    credentials = region.client("sts").assume_role(RoleArn=arn, RoleSessionName="worker")["Credentials"]
    return arn, _client(region, "sts", credentials)


def _verify_signature(token: str, jwks: dict[str, Any]) -> None:
    """Raises cryptography's InvalidSignature unless the issuer's key named by `kid` signed `token`."""
    header_text, payload_text, signature_text = token.split(".")
    header = json.loads(_b64(header_text))
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    signed = f"{header_text}.{payload_text}".encode()
    signature = _b64(signature_text)
    number = lambda name: int.from_bytes(_b64(jwk[name]), "big")  # noqa: E731
    if header["alg"] == "RS256":
        assert jwk["kty"] == "RSA"
        public = rsa.RSAPublicNumbers(number("e"), number("n")).public_key()
        public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert (header["alg"], jwk["kty"], jwk["crv"]) == ("ES384", "EC", "P-384")
        ec_key = ec.EllipticCurvePublicNumbers(number("x"), number("y"), ec.SECP384R1()).public_key()
        der = encode_dss_signature(
            int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
        )
        ec_key.verify(der, signed, ec.ECDSA(hashes.SHA384()))


# --------------------------------------------------------------------------------- the switch, the token


def test_account_switch_and_issuer(regions: Regions) -> None:
    cn = regions.cn
    cn.reset()  # an account that never enabled the feature
    iam, sts = cn.client("iam"), cn.client("sts")
    code, _, status = _error(iam.get_outbound_web_identity_federation_info)
    assert (code, status) == ("FeatureDisabled", 404)
    code, message, status = _error(
        lambda: sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")
    )
    assert (code, status) == ("OutboundWebIdentityFederationDisabledException", 403), message

    issuer = iam.enable_outbound_web_identity_federation()["IssuerIdentifier"]
    assert issuer == f"{cn.local}/_ddbbridge/oidc/{ACCOUNT}"
    assert _error(iam.enable_outbound_web_identity_federation)[::2] == ("FeatureEnabled", 409)
    info = iam.get_outbound_web_identity_federation_info()
    assert (info["IssuerIdentifier"], info["JwtVendingEnabled"]) == (issuer, True)
    assert sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")["WebIdentityToken"]

    iam.disable_outbound_web_identity_federation()
    info = iam.get_outbound_web_identity_federation_info()
    assert (info["IssuerIdentifier"], info["JwtVendingEnabled"]) == (issuer, False)
    code, _, _ = _error(lambda: sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256"))
    assert code == "OutboundWebIdentityFederationDisabledException"
    assert _error(iam.disable_outbound_web_identity_federation)[::2] == ("FeatureDisabled", 404)
    # Tokens issued before the switch went off stay verifiable: the issuer still serves its keys.
    assert _get_json(f"{issuer}/.well-known/jwks.json")["keys"]
    assert iam.enable_outbound_web_identity_federation()["IssuerIdentifier"] == issuer  # the same URL
    # The other launcher is another partition's account: its switch is its own.
    assert _error(regions.sg.client("iam").get_outbound_web_identity_federation_info)[0] == "FeatureDisabled"


def test_token_is_a_signed_jwt_with_documented_claims(regions: Regions) -> None:
    cn = regions.cn
    issuer = _enable(cn)
    role_name = f"sender-{uuid.uuid4().hex[:6]}"
    role_arn, sts = _role_session(cn, role_name)
    before = int(time.time())
    answer = sts.get_web_identity_token(
        Audience=[AUDIENCE],
        SigningAlgorithm="RS256",
        DurationSeconds=900,
        Tags=[{"Key": "pair", "Value": "users"}],
    )
    token = answer["WebIdentityToken"]
    header, claims = _segments(token)
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]

    discovery = _get_json(f"{issuer}/.well-known/openid-configuration")
    assert discovery["issuer"] == issuer
    assert discovery["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    jwks = _get_json(discovery["jwks_uri"])
    _verify_signature(token, jwks)
    assert all("d" not in key and "p" not in key for key in jwks["keys"])  # public halves only

    assert claims["iss"] == issuer
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == role_arn == f"arn:aws-cn:iam::{ACCOUNT}:role/{role_name}"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] - claims["iat"] == 900
    assert int(answer["Expiration"].timestamp()) == claims["exp"]
    assert claims[STS_NAMESPACE] == {
        "aws_account": ACCOUNT,
        "source_region": "cn-north-1",
        "principal_id": role_arn,
        "request_tags": {"pair": "users"},
    }
    again = sts.get_web_identity_token(Audience=[AUDIENCE, "second"], SigningAlgorithm="ES384")[
        "WebIdentityToken"
    ]
    _verify_signature(again, jwks)
    header, second = _segments(again)
    assert header["alg"] == "ES384"
    assert second["aud"] == [AUDIENCE, "second"]
    assert second["jti"] != claims["jti"]
    assert second["exp"] - second["iat"] == 300  # AWS's default duration

    # An IAM user is its own subject.
    iam = cn.client("iam")
    user = iam.create_user(UserName=f"user-{uuid.uuid4().hex[:6]}")["User"]
    key = iam.create_access_key(UserName=user["UserName"])["AccessKey"]
    user_sts = _client(cn, "sts", {**key, "SessionToken": None})
    user_token = user_sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="RS256")[
        "WebIdentityToken"
    ]
    assert _segments(user_token)[1]["sub"] == user["Arn"]

    code, message, _ = _error(
        lambda: sts.get_web_identity_token(Audience=[AUDIENCE], SigningAlgorithm="HS256")
    )
    assert code == "ValidationError" and "SigningAlgorithm" in message


# ------------------------------------------------------------------------------------ the exchange


@dataclass
class Federation:
    """cn's sender role may assume sg's writer role; everything else is a variation of that."""

    cn: Region
    sg: Region
    issuer: str
    provider_arn: str
    provider_key: str
    sender_arn: str
    sender: Any  # STS client of a sender role session (cn)
    writer_arn: str

    def token(self, sts: Any = None, audience: str = AUDIENCE) -> str:
        client = sts or self.sender
        return str(
            client.get_web_identity_token(Audience=[audience], SigningAlgorithm="RS256")["WebIdentityToken"]
        )

    def exchange(self, token: str, role_arn: str | None = None) -> dict[str, Any]:
        answer: dict[str, Any] = self.sg.client("sts").assume_role_with_web_identity(
            RoleArn=role_arn or self.writer_arn, RoleSessionName="sender-session", WebIdentityToken=token
        )
        return answer

    def refused(self, token: str, role_arn: str | None = None) -> tuple[str, str, int]:
        return _error(lambda: self.exchange(token, role_arn))


def _trust(provider_arn: str, conditions: dict[str, Any]) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider_arn},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": conditions,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture(scope="module")
def federation(regions: Regions) -> Iterator[Federation]:
    cn, sg = regions.cn, regions.sg
    issuer = _enable(cn)
    sender_arn, sender = _role_session(cn, "fed-sender")
    iam = sg.client("iam")
    provider_arn = iam.create_open_id_connect_provider(
        Url=issuer, ClientIDList=[AUDIENCE, "another-app"], ThumbprintList=[]
    )["OpenIDConnectProviderArn"]
    key = provider_arn.split(":oidc-provider/", 1)[1]
    assert provider_arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}"
    trust = _trust(provider_arn, {"StringEquals": {f"{key}:aud": AUDIENCE, f"{key}:sub": sender_arn}})
    writer_arn = iam.create_role(RoleName="fed-writer", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    yield Federation(cn, sg, issuer, provider_arn, key, sender_arn, sender, writer_arn)


def test_exchange_gives_the_role_temporary_credentials(federation: Federation) -> None:
    answer = federation.exchange(federation.token())
    assert answer["SubjectFromWebIdentityToken"] == federation.sender_arn
    assert answer["Audience"] == AUDIENCE
    assert answer["Provider"] == federation.issuer
    assert (
        answer["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/fed-writer/sender-session"
    )
    identity = _client(federation.sg, "sts", answer["Credentials"]).get_caller_identity()
    assert identity["Arn"] == answer["AssumedRoleUser"]["Arn"]


def test_trust_policy_with_wildcard_subject_is_honoured(federation: Federation) -> None:
    key = federation.provider_key
    trust = _trust(
        federation.provider_arn,
        {
            "StringEquals": {f"{key}:aud": AUDIENCE},
            "StringLike": {f"{key}:sub": "arn:aws-cn:iam::*:role/fed-*"},
        },
    )
    role = federation.sg.client("iam").create_role(RoleName="fed-wildcard", AssumeRolePolicyDocument=trust)
    assert federation.exchange(federation.token(), role["Role"]["Arn"])["Credentials"]["AccessKeyId"]


def test_audience_not_registered_with_the_provider_is_refused(federation: Federation) -> None:
    code, message, status = federation.refused(federation.token(audience="unknown-app"))
    assert (code, status) == ("InvalidIdentityToken", 400)
    assert "audience" in message


def test_audience_the_trust_policy_does_not_name_is_refused(federation: Federation) -> None:
    # "another-app" is a client ID of the provider, but the writer's trust policy wants AUDIENCE.
    code, message, status = federation.refused(federation.token(audience="another-app"))
    assert (code, status) == ("AccessDenied", 403)
    assert f"{federation.provider_key}:aud" in message


def test_other_subject_is_refused(federation: Federation) -> None:
    _, intruder = _role_session(federation.cn, "fed-intruder")
    code, message, status = federation.refused(federation.token(intruder))
    assert (code, status) == ("AccessDenied", 403)
    assert f"{federation.provider_key}:sub" in message and "fed-intruder" in message


def test_missing_provider_is_refused(federation: Federation) -> None:
    iam = federation.sg.client("iam")
    token = federation.token()
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=federation.provider_arn)
    try:
        code, message, _ = federation.refused(token)
        assert code == "InvalidIdentityToken"
        assert "No OpenIDConnect provider" in message and federation.issuer in message
    finally:
        iam.create_open_id_connect_provider(
            Url=federation.issuer, ClientIDList=[AUDIENCE, "another-app"], ThumbprintList=[]
        )
    assert federation.exchange(token)["Credentials"]


def test_role_trusting_another_provider_is_refused(federation: Federation) -> None:
    iam = federation.sg.client("iam")
    other = iam.create_open_id_connect_provider(
        Url="https://token.actions.githubusercontent.com", ClientIDList=[AUDIENCE], ThumbprintList=[]
    )["OpenIDConnectProviderArn"]
    trust = _trust(other, {"StringEquals": {"token.actions.githubusercontent.com:aud": AUDIENCE}})
    role = iam.create_role(RoleName="fed-other-provider", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    code, message, status = federation.refused(federation.token(), role)
    assert (code, status) == ("AccessDenied", 403)
    assert "no trust policy statement allows" in message and federation.provider_arn in message


def _sign_with_issuer_key(regions: Regions, claims: dict[str, Any], kid: str) -> str:
    """A token signed with the cn launcher's own key (kept in the dev dir), with claims of our choice."""
    pem = (regions.dev_dir / "oidc" / "cn-north-1" / "signing-rs256.pem").read_bytes()
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
    signing_input = f"{encode({'alg': 'RS256', 'kid': kid, 'typ': 'JWT'})}.{encode(claims)}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def test_expired_token_is_refused(federation: Federation, regions: Regions) -> None:
    fresh = federation.token()
    header, claims = _segments(fresh)
    now = int(time.time())
    # The same token as the issuer would have made it ten minutes ago, valid for five.
    expired = _sign_with_issuer_key(regions, {**claims, "iat": now - 600, "exp": now - 300}, header["kid"])
    code, message, status = federation.refused(expired)
    assert (code, status) == ("ExpiredTokenException", 400)
    assert "expired" in message.lower()
    # Control: the same forging path with a live exp is accepted, so only the expiry was at fault.
    live = _sign_with_issuer_key(regions, {**claims, "iat": now, "exp": now + 300}, header["kid"])
    assert federation.exchange(live)["Credentials"]


def test_tampered_token_is_refused(federation: Federation) -> None:
    _, intruder = _role_session(federation.cn, "fed-tamper")
    header_text, payload_text, signature_text = federation.token(intruder).split(".")
    claims = json.loads(_b64(payload_text))
    claims["sub"] = federation.sender_arn  # claim to be the trusted sender, keep the intruder's signature
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    code, message, _ = federation.refused(f"{header_text}.{forged}.{signature_text}")
    assert code == "InvalidIdentityToken"
    assert "signature" in message


def test_token_with_several_audiences_or_from_the_same_partition_is_refused(federation: Federation) -> None:
    several = federation.sender.get_web_identity_token(
        Audience=[AUDIENCE, "another-app"], SigningAlgorithm="RS256"
    )
    code, message, _ = federation.refused(several["WebIdentityToken"])
    assert code == "InvalidIdentityToken" and "audience" in message
    # cn's own STS: a GetWebIdentityToken token is for another partition only.
    cn_iam = federation.cn.client("iam")
    provider = cn_iam.create_open_id_connect_provider(
        Url=federation.issuer, ClientIDList=[AUDIENCE], ThumbprintList=[]
    )
    key = federation.provider_key
    trust = _trust(provider["OpenIDConnectProviderArn"], {"StringEquals": {f"{key}:aud": AUDIENCE}})
    role = cn_iam.create_role(RoleName="fed-same-partition", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    code, message, _ = _error(
        lambda: federation.cn.client("sts").assume_role_with_web_identity(
            RoleArn=role, RoleSessionName="same-partition", WebIdentityToken=federation.token()
        )
    )
    assert code == "InvalidIdentityToken" and "partition" in message


# ------------------------------------------------------------------------ a function's own identity

IDENTITY_FUNCTION = """
import json, os
import boto3

def handler(event, context):
    sts = boto3.client("sts")
    identity = sts.get_caller_identity()
    token = sts.get_web_identity_token(Audience=[os.environ["AUDIENCE"]], SigningAlgorithm="RS256")
    boto3.client("sqs").send_message(
        QueueUrl=os.environ["RECORD_QUEUE_URL"],
        MessageBody=json.dumps({"arn": identity["Arn"], "token": token["WebIdentityToken"]}),
    )
"""


def test_function_under_the_runner_acts_as_its_execution_role(
    regions: Regions, runner: RunnerProcess
) -> None:
    _enable(regions.cn)
    region = RunnerRegion(regions.cn.name, endpoints_of(regions)[regions.cn.name])
    name = f"identity-{uuid.uuid4().hex[:6]}"
    queue_url, _ = region.queue(f"{name}-reports")
    config = region.deploy(
        name,
        {"identity.py": IDENTITY_FUNCTION},
        "identity.handler",
        {"RECORD_QUEUE_URL": queue_url, "AUDIENCE": AUDIENCE},
    )
    stream_arn = region.kinesis_stream(f"{name}-source")
    lam = region.client("lambda")
    mapping = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=1
    )
    try:
        region.client("kinesis").put_record(StreamName=f"{name}-source", Data=b"who am i", PartitionKey="k")
        (report,) = Inbox(region, queue_url).wait(
            lambda messages: len(messages) >= 1, "the function's report"
        )
    finally:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
    role_name = config["Role"].rsplit("/", 1)[1]
    assert report["arn"] == f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/{role_name}/{name}"
    assert _segments(report["token"])[1]["sub"] == config["Role"]
