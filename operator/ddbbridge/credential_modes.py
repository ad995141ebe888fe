"""Which credentials each sender uses to reach the peer partition, and why: a pure decision, no I/O.

One decision per direction, made for the SOURCE side (the side whose sender writes to the peer): the
token that federation needs is issued by the source account, so only its account-wide switch
(IAM outbound identity federation) matters. The operator never flips that switch unless the spec
says `enableOutboundFederation: true`; `auto` never flips it at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddbbridge.errors import TerminalError
from ddbbridge.spec import CredentialsMode

ENABLE_COMMAND = "aws iam enable-outbound-web-identity-federation"


@dataclass(frozen=True)
class OutboundFederation:
    """What the source account's IAM says about outbound identity federation."""

    enabled: bool
    issuer_url: str | None = None
    unavailable: str | None = None  # the account (or emulator) does not offer the feature at all


@dataclass(frozen=True)
class ModeDecision:
    side: str  # the source side: its sender uses this mode
    mode: CredentialsMode  # ACCESS_KEY or FEDERATION, never AUTO
    reason: str  # for status, people read it
    enable_switch: bool = False  # the operator turns outbound federation on (the spec asked)


def decide_mode(
    requested: CredentialsMode,
    *,
    side: str,
    account_id: str,
    federation: OutboundFederation | None,
    may_enable: bool,
) -> ModeDecision:
    """The mode of `side`'s sender. Raises TerminalError when federation is asked but cannot work."""
    where = f"account {account_id} (side {side})"
    if requested == CredentialsMode.ACCESS_KEY:
        return ModeDecision(side, CredentialsMode.ACCESS_KEY, "spec.credentials.mode is accessKey")
    assert federation is not None, "the account is read whenever federation may be used"
    if requested == CredentialsMode.AUTO:
        if federation.enabled:
            return ModeDecision(
                side, CredentialsMode.FEDERATION, f"auto: outbound identity federation is enabled in {where}"
            )
        why = federation.unavailable or "disabled"
        return ModeDecision(
            side,
            CredentialsMode.ACCESS_KEY,
            f"auto: outbound identity federation is {why} in {where}; enable it there to drop the stored key",
        )
    if federation.enabled:
        return ModeDecision(
            side,
            CredentialsMode.FEDERATION,
            f"spec.credentials.mode is federation; outbound identity federation is enabled in {where}",
        )
    if federation.unavailable:
        raise TerminalError(
            f"spec.credentials.mode is federation but outbound identity federation is not available in "
            f"{where}: {federation.unavailable}",
            reason="OutboundFederationUnavailable",
        )
    if may_enable:
        return ModeDecision(
            side,
            CredentialsMode.FEDERATION,
            f"spec.credentials.mode is federation; the operator enabled outbound identity federation in "
            f"{where} (spec.credentials.enableOutboundFederation)",
            enable_switch=True,
        )
    raise TerminalError(
        f"spec.credentials.mode is federation but outbound identity federation is disabled in {where}. "
        f"It is an account-wide switch, so the operator does not flip it on its own: run `{ENABLE_COMMAND}` "
        "with that account's credentials, or set spec.credentials.enableOutboundFederation: true, or use "
        "mode accessKey or auto",
        reason="OutboundFederationDisabled",
    )
