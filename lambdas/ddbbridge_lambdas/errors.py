"""Which AWS errors are poison (fail the same way on every try) and which are transient."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

POISON_CODES = frozenset({"ValidationException", "SerializationException"})


def error_code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return type(error).__name__


def is_condition_failure(error: BaseException) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"


def is_poison(error: BaseException) -> bool:
    """Only validation errors are poison. Everything else (throttling, 5xx, network, even errors we
    do not know) is retried: dead-lettering a record that would have succeeded later loses nothing
    only if someone redrives it, retrying loses nothing at all."""
    return isinstance(error, ClientError) and error_code(error) in POISON_CODES


def is_aws_error(error: BaseException) -> bool:
    return isinstance(error, ClientError | BotoCoreError)


def cancellation_codes(error: BaseException) -> list[str]:
    """Per-item reason codes of a cancelled TransactWriteItems ('None' where the item was fine)."""
    if not isinstance(error, ClientError):
        return []
    reasons = error.response.get("CancellationReasons") or []
    codes = [str(reason.get("Code", "None")) for reason in reasons]
    if not codes:
        # Some SDK/emulator versions only put the codes into the message: "[None, ConditionalCheckFailed]".
        message = str(error.response.get("Error", {}).get("Message", ""))
        start, end = message.rfind("["), message.rfind("]")
        if 0 <= start < end:
            codes = [part.strip() for part in message[start + 1 : end].split(",")]
    return codes
