"""Lambda's side of execution roles: temporary credentials of a function's role, for the local runner.

    POST /_ddbbridge/lambda/role-credentials  {"role_arn", "session_name", "duration_seconds"?}
      -> {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration" (epoch seconds)}

The Lambda service assumes the role itself; that is not an API call of the account, so this route
stays out of the request log (tests count the product's calls there). The session is moto's own
assumed-role session, so calls signed with these keys act as `assumed-role/<role>/<function>`, the
identity a function has on Lambda. Unlike Lambda, the role's trust policy is not checked here
(moto's CreateFunction does not check it either).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from moto.iam.models import iam_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

ROUTE = "/_ddbbridge/lambda/role-credentials"
DEFAULT_DURATION_SECONDS = 12 * 3600


def serve(
    method: str, path: str, read_body: Callable[[], bytes], region: str
) -> tuple[int, dict[str, Any]] | None:
    """The launcher's answer for the route, or None when `path` is not it."""
    if path != ROUTE:
        return None
    if method != "POST":
        return 400, {"error": f"{ROUTE} takes POST"}
    try:
        document = json.loads(read_body() or b"null")
        role_arn = str(document["role_arn"])
        session_name = str(document.get("session_name") or "lambda")
        duration = int(document.get("duration_seconds") or DEFAULT_DURATION_SECONDS)
    except (ValueError, TypeError, KeyError) as error:
        return 400, {"error": f"expected {{role_arn, session_name, duration_seconds}}: {error}"}
    parts = role_arn.split(":")
    partition = get_partition(region)
    if len(parts) < 6 or parts[1] != partition or not parts[5].startswith("role/"):
        return 400, {"error": f"{role_arn} is not a role ARN of partition {partition}"}
    try:
        iam_backends[parts[4]][partition].get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException: Lambda cannot assume a role that does not exist
        return 404, {"error": f"role {role_arn} does not exist"}
    assumed = sts_backends[parts[4]][partition].assume_role(
        region_name=region,
        role_session_name=session_name[:64],
        role_arn=role_arn,
        policy="",
        duration=duration,
        external_id="",
    )
    expiration: datetime.datetime = assumed.expiration
    return 200, {
        "AccessKeyId": assumed.access_key_id,
        "SecretAccessKey": assumed.secret_access_key,
        "SessionToken": assumed.session_token,
        "Expiration": expiration.replace(tzinfo=datetime.UTC).timestamp(),
    }
