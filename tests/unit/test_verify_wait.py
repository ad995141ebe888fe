"""`verify --wait`: a network error or throttled scan is retried until the deadline; a terminal
error (no permission, no table) ends the wait at once."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from ddbbridge import verify
from ddbbridge.spec import load_manifest

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "pair.yaml"
SIDES: Any = (object(), object())  # never touched: verify_pair is replaced


def scripted(outcomes: list[Any]) -> Any:
    calls: list[int] = []

    def fake_verify_pair(manifest: Any, **options: Any) -> Any:
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    fake_verify_pair.calls = calls  # type: ignore[attr-defined]
    return fake_verify_pair


def converged() -> Any:
    return SimpleNamespace(converged=True, elapsed=0.0, summary_line=lambda: "equal")


def test_a_read_timeout_is_retried_until_the_tables_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = scripted([ReadTimeoutError(endpoint_url="http://127.0.0.1:1/"), converged()])
    monkeypatch.setattr(verify, "verify_pair", fake)
    report = verify.wait_until_converged(load_manifest(SAMPLE), 30, interval=0, echo=False, sides=SIDES)
    assert report.converged
    assert len(fake.calls) == 2


def test_a_terminal_error_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Scan")
    fake = scripted([denied, converged()])
    monkeypatch.setattr(verify, "verify_pair", fake)
    with pytest.raises(ClientError):
        verify.wait_until_converged(load_manifest(SAMPLE), 30, interval=0, echo=False, sides=SIDES)
    assert len(fake.calls) == 1


def test_a_transient_error_at_the_deadline_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    throttled = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "Scan"
    )
    fake = scripted([throttled])
    monkeypatch.setattr(verify, "verify_pair", fake)
    with pytest.raises(ClientError):
        verify.wait_until_converged(load_manifest(SAMPLE), 0, interval=1, echo=False, sides=SIDES)
