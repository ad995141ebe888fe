"""Credentials of a function's execution role, handed to its worker the way Lambda does it.

Lambda assumes the function's role and puts the session's keys into the execution environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), with the function's name as the
session name; the environment is retired before they expire. The launcher vends them
(`execution_role.py`), so `sts:GetCallerIdentity` in a function answers `assumed-role/<role>/<function>`
and a token from `sts:GetWebIdentityToken` names the role as its subject.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

ROUTE = "/_ddbbridge/lambda/role-credentials"
DURATION_SECONDS = 12 * 3600
# A worker is retired when its session ends sooner than this: longer than the longest web identity
# token (3600 s), so a function's GetWebIdentityToken never asks beyond its own session.
REFRESH_MARGIN_SECONDS = 65 * 60
TIMEOUT_SECONDS = 10.0
# What a function without a role (never on Lambda; a hand-made runtime) runs with.
DUMMY_CREDENTIALS: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class RoleCredentialsError(OSError):
    """The role's credentials could not be obtained: a pre-invocation failure, retried like an
    unreachable code location."""


@dataclass(frozen=True)
class RoleCredentials:
    environment: Mapping[str, str]
    expires: float | None  # epoch seconds; None never expires

    def current(self, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        return self.expires is None or self.expires - moment > REFRESH_MARGIN_SECONDS


def fetch(endpoint: str, role_arn: str, session_name: str) -> RoleCredentials:
    """Assume `role_arn` through the function's own region (its launcher)."""
    if not role_arn:
        return RoleCredentials(DUMMY_CREDENTIALS, None)
    body = json.dumps(
        {"role_arn": role_arn, "session_name": session_name, "duration_seconds": DURATION_SECONDS}
    ).encode()
    request = urllib.request.Request(
        endpoint.rstrip("/") + ROUTE, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            document = json.loads(response.read())
        environment = {
            "AWS_ACCESS_KEY_ID": str(document["AccessKeyId"]),
            "AWS_SECRET_ACCESS_KEY": str(document["SecretAccessKey"]),
            "AWS_SESSION_TOKEN": str(document["SessionToken"]),
        }
        return RoleCredentials(environment, float(document["Expiration"]))
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        raise RoleCredentialsError(f"role {role_arn}: HTTP {error.code} {detail}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RoleCredentialsError(f"role {role_arn}: {error}") from None
