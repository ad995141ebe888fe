"""How the operator itself reaches each region: a Secret named in the spec, or the default chain.

`spec.regions[].credentials.secretName` names a Secret in the pair's namespace with the keys
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN optional). Without it the pod's default
AWS credential chain applies (IRSA, instance profile, environment). Values never leave this module
except inside boto3 sessions, and are never logged.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ddbbridge.errors import TerminalError
from ddbbridge.spec import PairManifest

ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN = "AWS_SESSION_TOKEN"

# (namespace, name) -> the Secret's decoded data, or None when it does not exist.
SecretReader = Callable[[str, str], dict[str, str] | None]


def kubernetes_secret_reader() -> SecretReader:
    """Reads Secrets with the `kubernetes` client (configured by kopf's login at startup)."""

    def read(namespace: str, name: str) -> dict[str, str] | None:
        try:
            secret: Any = client.CoreV1Api().read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}

    return read


def region_credentials(manifest: PairManifest, read_secret: SecretReader) -> dict[str, dict[str, str]]:
    """Credentials per side name, for the sides that name a Secret (the others use the default chain)."""
    found: dict[str, dict[str, str]] = {}
    namespace = manifest.metadata.namespace
    for side in manifest.spec.regions:
        secret_name = side.credentials.secret_name if side.credentials else None
        if not secret_name:
            continue
        data = read_secret(namespace, secret_name)
        if data is None:
            raise TerminalError(
                f"Secret {namespace}/{secret_name} named by region {side.name} does not exist",
                reason="CredentialsSecretMissing",
            )
        missing = [key for key in (ACCESS_KEY_ID, SECRET_ACCESS_KEY) if not data.get(key)]
        if missing:
            raise TerminalError(
                f"Secret {namespace}/{secret_name} named by region {side.name} lacks {', '.join(missing)}",
                reason="CredentialsSecretInvalid",
            )
        found[side.name] = {
            "aws_access_key_id": data[ACCESS_KEY_ID],
            "aws_secret_access_key": data[SECRET_ACCESS_KEY],
        }
        if data.get(SESSION_TOKEN):
            found[side.name]["aws_session_token"] = data[SESSION_TOKEN]
    return found
