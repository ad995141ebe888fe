"""JSON Web Tokens as an OIDC issuer signs them: keys, JWS compact signing and verification, JWKS.

The emulated STS signs GetWebIdentityToken results with keys made once per launcher and kept in the dev
dir (never logged); verifiers only ever see the public halves through the issuer's JWKS document.
RS256 (RSA PKCS#1 v1.5 + SHA-256) and ES384 (ECDSA P-384 + SHA-384), the two algorithms STS offers.
Built on `cryptography` (already a moto dependency) and the standard library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALGORITHMS = ("RS256", "ES384")
_ES384_PART = 48  # bytes of r and of s in a JWS ES384 signature (RFC 7518 section 3.4)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class TokenError(ValueError):
    """The text is not a well-formed JWS/JWT, or its signature does not verify."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise TokenError(f"not base64url: {error}") from None


def _int_b64(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(length, "big"))


def _b64_int(text: str) -> int:
    return int.from_bytes(b64url_decode(text), "big")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The JWK members that define the key (RFC 7517/7518), in thumbprint order."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    point = key.public_numbers()
    return {"crv": "P-384", "kty": "EC", "x": _int_b64(point.x, 48), "y": _int_b64(point.y, 48)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint: a stable key id derived from the public key alone."""
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    try:
        if jwk.get("kty") == "RSA":
            return rsa.RSAPublicNumbers(_b64_int(jwk["e"]), _b64_int(jwk["n"])).public_key()
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-384":
            numbers = ec.EllipticCurvePublicNumbers(_b64_int(jwk["x"]), _b64_int(jwk["y"]), ec.SECP384R1())
            return numbers.public_key()
    except (KeyError, ValueError) as error:
        raise TokenError(f"unusable JWK: {error}") from None
    raise TokenError(f"unsupported JWK kty={jwk.get('kty')!r} crv={jwk.get('crv')!r}")


@dataclass(frozen=True)
class SigningKey:
    algorithm: str
    private: PrivateKey

    @property
    def jwk(self) -> dict[str, str]:
        jwk = public_jwk(self.private.public_key())
        return {**jwk, "kid": thumbprint(jwk), "alg": self.algorithm, "use": "sig"}

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, rsa.RSAPrivateKey):
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA384())))
        return r.to_bytes(_ES384_PART, "big") + s.to_bytes(_ES384_PART, "big")


def _generate(algorithm: str) -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1())


def load_or_create_keys(folder: Path) -> dict[str, SigningKey]:
    """One key per algorithm, made on first use and kept (mode 0600) so a restarted launcher signs
    with the same keys."""
    folder.mkdir(parents=True, exist_ok=True)
    keys: dict[str, SigningKey] = {}
    for algorithm in ALGORITHMS:
        path = folder / f"signing-{algorithm.lower()}.pem"
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise TokenError(f"{path} holds an unexpected key type")
            private: PrivateKey = loaded
        else:
            private = _generate(algorithm)
            pem = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            temporary = path.with_suffix(".tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
            temporary.replace(path)
        keys[algorithm] = SigningKey(algorithm, private)
    return keys


def encode(claims: dict[str, Any], key: SigningKey) -> str:
    header = {"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


@dataclass(frozen=True)
class UnverifiedToken:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse(token: str) -> UnverifiedToken:
    """Split and decode a compact JWS without trusting it yet."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("a JWT has three dot-separated parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError as error:
        raise TokenError(f"header or payload is not JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("header and payload must be JSON objects")
    return UnverifiedToken(header, claims, f"{parts[0]}.{parts[1]}".encode(), b64url_decode(parts[2]))


def verify(token: UnverifiedToken, jwks: dict[str, Any]) -> None:
    """Check the signature against the key of the JWKS the header names (kid and alg must agree)."""
    algorithm = token.header.get("alg")
    if algorithm not in ALGORITHMS:
        raise TokenError(f"unsupported signing algorithm {algorithm!r}")
    kid = token.header.get("kid")
    candidates = [jwk for jwk in jwks.get("keys", []) if isinstance(jwk, dict) and jwk.get("kid") == kid]
    if not candidates:
        raise TokenError(f"the issuer's JWKS has no key with kid {kid!r}")
    public = key_from_jwk(candidates[0])
    try:
        if algorithm == "RS256":
            if not isinstance(public, rsa.RSAPublicKey):
                raise TokenError("RS256 token, but the JWKS key is not RSA")
            public.verify(token.signature, token.signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            if not isinstance(public, ec.EllipticCurvePublicKey) or len(token.signature) != 2 * _ES384_PART:
                raise TokenError("ES384 token, but the key or the signature has the wrong shape")
            r = int.from_bytes(token.signature[:_ES384_PART], "big")
            s = int.from_bytes(token.signature[_ES384_PART:], "big")
            public.verify(encode_dss_signature(r, s), token.signing_input, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise TokenError("the token's signature does not verify with the issuer's key") from None


def jwks(keys: dict[str, SigningKey]) -> dict[str, Any]:
    return {"keys": [key.jwk for key in keys.values()]}


def discovery(issuer: str, jwks_uri: str) -> dict[str, Any]:
    """The OpenID Provider metadata verifiers read first (OpenID Connect Discovery 1.0)."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ALGORITHMS),
        "claims_supported": ["iss", "aud", "sub", "iat", "exp", "jti", "https://sts.amazonaws.com/"],
    }
