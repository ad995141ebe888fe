"""Replaying changes into one region through the applier's OWN write path, in this process.

Backfill, `verify --repair` and `dlq redrive` never write user items themselves: they hand wire
records to `ddbbridge_lambdas.applier.Applier` (the code the applier Lambda runs) configured with the
DDBBRIDGE_CONFIG the reconcile deployed to that region's applier function. So every write they make
obeys the same version order, ledger, tombstones and conditions as replication: an older version
never overwrites a newer one and a tombstoned key is never resurrected.

Two things differ from the Lambda, on purpose:
- dead letters are collected and returned, never sent to SQS: a replay that still fails must leave
  the original message where it is (redrive) or be reported (backfill), not create a new one;
- the per-batch stats item is not updated: replicated counts describe the pipeline, not tools.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ddbbridge.aws import RegionSession
from ddbbridge.names import SideNames
from ddbbridge_lambdas.applier import Applier
from ddbbridge_lambdas.codec import WireRecord, canonical_key, encode_record, partition_key
from ddbbridge_lambdas.config import ENV_VAR, HandlerConfig
from ddbbridge_lambdas.dead_letters import DeadLetter
from ddbbridge_lambdas.ledger import Ledger, LedgerState

DEFAULT_ATTEMPTS = 10


class ReplayError(RuntimeError):
    """The region cannot take replayed changes (not reconciled, or failures kept coming)."""


@dataclass
class _LetterCollector:
    """Stands in for the applier's DeadLetterQueue: keeps the letters instead of sending them."""

    letters: list[DeadLetter] = field(default_factory=list)

    def send(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


class _ToolApplier(Applier):
    """The Lambda's applier with the two tool-specific differences of the module docstring."""

    def __init__(
        self, config: HandlerConfig, dynamodb: Any, sqs: Any, *, pending_local_wins: bool = True
    ) -> None:
        super().__init__(config, dynamodb, sqs)
        self.pending_local_wins = pending_local_wins
        self.collector = _LetterCollector()
        self.dead_letters = self.collector  # type: ignore[assignment]
        self.last_outcomes: Counter[str] = Counter()

    def record_stats(
        self,
        records: list[dict[str, Any]],
        decoded: dict[int, tuple[str, WireRecord]],
        outcome: dict[int, str],
        failure: int | None,
    ) -> None:
        limit = len(records) if failure is None else failure
        self.last_outcomes = Counter(outcome.get(index, "unaccounted") for index in range(limit))


@dataclass
class ReplayOutcome:
    """What the applier did with the replayed records: outcome name -> count, plus rejected ones."""

    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[DeadLetter] = field(default_factory=list)  # poison: reason + payload

    def merge(self, other: ReplayOutcome) -> None:
        self.counts.update(other.counts)
        self.rejected.extend(other.rejected)


def deployed_config(session: RegionSession, pair: str, side: str) -> HandlerConfig:
    """The DDBBRIDGE_CONFIG of the side's deployed applier function (what the reconcile wrote)."""
    function = SideNames(pair, side).applier_function
    try:
        configuration = session.client("lambda").get_function_configuration(FunctionName=function)
    except Exception as error:
        raise ReplayError(
            f"cannot read function {function} in {session.region} ({error}); run `ddbbridge reconcile` first"
        ) from None
    text = (configuration.get("Environment") or {}).get("Variables", {}).get(ENV_VAR)
    if not text:
        raise ReplayError(f"function {function} has no {ENV_VAR}; run `ddbbridge reconcile` first")
    return HandlerConfig.from_json(text)


def kinesis_record(data: bytes, sequence: int, partition: str, now: float) -> dict[str, Any]:
    """A record shaped like the ones Lambda hands the applier from Kinesis."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition,
            "sequenceNumber": str(sequence),
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": now,
        },
        "eventSource": "aws:kinesis",
        "eventName": "aws:kinesis:record",
    }


class RegionApplier:
    """Applies wire records (or raw Kinesis event records) to one region, retrying transient
    failures with backoff from the first record not yet durable, as Lambda would."""

    def __init__(
        self,
        session: RegionSession,
        config: HandlerConfig,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        authoritative: bool = False,
    ) -> None:
        self.session = session
        self.config = config
        # Authoritative (verify --repair): the caller compared both sides right before writing, so
        # the write does not yield to a local change the sender has not processed yet.
        self.authoritative = authoritative
        self.attempts = attempts
        self.sleep = sleep
        self.ledger = Ledger(
            session.client("dynamodb"), config.ledger_table, config.tombstone_retention_seconds
        )

    @classmethod
    def deployed(cls, session: RegionSession, pair: str, side: str, **options: Any) -> RegionApplier:
        return cls(session, deployed_config(session, pair, side), **options)

    def _applier(self) -> _ToolApplier:
        # One per call: the Applier keeps per-invocation state on the instance.
        return _ToolApplier(
            self.config,
            self.session.client("dynamodb"),
            self.session.client("sqs"),
            pending_local_wins=not self.authoritative,
        )

    def canonical(self, key: dict[str, Any]) -> str:
        return canonical_key(key, self.config.key_schema)

    def ledger_state(self, key: dict[str, Any]) -> LedgerState:
        """This region's ledger entry for a key (wire or boto3 form key)."""
        return self.ledger.read(self.canonical(key))

    def apply_wire(self, records: list[WireRecord]) -> ReplayOutcome:
        now = time.time()
        events = [
            kinesis_record(encode_record(record), index, partition_key(self.canonical(record.key)), now)
            for index, record in enumerate(records)
        ]
        return self.apply_events(events)

    def apply_events(self, events: list[dict[str, Any]]) -> ReplayOutcome:
        """Kinesis event records -> the applier; returns when every record is durable (applied,
        discarded as older, coalesced) or rejected as poison; raises ReplayError when transient
        failures outlast the attempts."""
        outcome = ReplayOutcome()
        offset = 0  # events[offset:] are not durable yet
        delay = 0.1
        for _attempt in range(self.attempts):
            pending = events[offset:]
            if not pending:
                return outcome
            applier = self._applier()
            result = applier.handle({"Records": pending})
            outcome.counts.update(applier.last_outcomes)
            failures = result.get("batchItemFailures") or []
            done = len(pending)
            if failures:
                failed = failures[0]["itemIdentifier"]
                done = next(i for i, e in enumerate(pending) if e["kinesis"]["sequenceNumber"] == failed)
            # Letter indexes are positions in `pending`; report them as positions in `events`.
            outcome.rejected.extend(
                DeadLetter(offset + letter.index, letter.reason, letter.error, letter.payload)
                for letter in applier.collector.letters
                if letter.index < done
            )
            offset += done
            if offset < len(events):
                self.sleep(delay)
                delay = min(delay * 2, 5.0)
        pending = events[offset:]
        if pending:
            raise ReplayError(
                f"{len(pending)} record(s) could not be applied in {self.session.region} after "
                f"{self.attempts} attempts (throttling or an unreachable region)"
            )
        return outcome
