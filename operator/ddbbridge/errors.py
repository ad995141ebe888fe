"""Errors of the control plane, classified as the operator needs them: terminal or transient.

Terminal: retrying with the same spec and the same AWS state cannot help (table missing, stream of the
wrong view type, no permission, invalid request). Transient: throttling, timeouts, resources in
transition, network trouble; retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import botocore.exceptions

TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",  # Kinesis control-plane rate limit
        "ResourceInUseException",  # a resource still creating/updating
        "ResourceConflictException",  # Lambda: an update is in progress
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "ServiceException",
        "RequestTimeout",
        "RequestTimeoutException",
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "QueueDeletedRecently",
        "ConcurrentModification",
        "ConcurrentModificationException",
    }
)


class ReconcileError(Exception):
    """Base of the errors our own checks raise; `reason` is a CamelCase word for status conditions."""

    terminal: bool = True
    reason: str = "ReconcileError"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TerminalError(ReconcileError):
    """The spec or the AWS account must change before a retry can succeed."""

    terminal = True
    reason = "TerminalError"


class TransientError(ReconcileError):
    """Retry later: something is in transition or temporarily unavailable."""

    terminal = False
    reason = "TransientError"


@dataclass(frozen=True)
class ErrorReport:
    region: str  # side name, or "pair" for checks spanning both
    step: str
    message: str
    terminal: bool
    reason: str | None = None  # CamelCase cause for conditions (TableMissing, AccessDenied, ...)
    code: str | None = None  # the AWS error code, when AWS answered with one

    def __str__(self) -> str:
        kind = "terminal" if self.terminal else "transient"
        return f"[{self.region}] {self.step}: {self.message} ({kind})"


def error_code(error: BaseException) -> str | None:
    if isinstance(error, botocore.exceptions.ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or None
    return None


def is_terminal(error: BaseException) -> bool:
    if isinstance(error, ReconcileError):
        return error.terminal
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(error) not in TRANSIENT_CODES and not (isinstance(status, int) and status >= 500)
    # Connection problems, timeouts and anything unexpected: worth another try.
    return False


def describe(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        details = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "?")
        return f"{operation}: {details.get('Code')}: {details.get('Message')}"
    return str(error) or type(error).__name__


ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AuthorizationError",
    }
)


def reason_of(error: BaseException) -> str:
    """A CamelCase word for the Stalled/Ready conditions."""
    if isinstance(error, ReconcileError):
        return error.reason
    code = error_code(error)
    if code in ACCESS_DENIED_CODES:
        return "AccessDenied"
    if code is not None:
        return "".join(part[:1].upper() + part[1:] for part in code.replace(".", " ").split()) or "AWSError"
    return "AWSUnreachable" if isinstance(error, botocore.exceptions.BotoCoreError) else type(error).__name__


def report(region: str, step: str, error: BaseException) -> ErrorReport:
    return ErrorReport(
        region=region,
        step=step,
        message=describe(error),
        terminal=is_terminal(error),
        reason=reason_of(error),
        code=error_code(error),
    )
