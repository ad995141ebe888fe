"""The runner's main loop: per region, list mappings, keep one supervisor per enabled mapping, and
one shard processor per readable shard."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
from botocore.credentials import Credentials

from ddbbridge_dev.runner.checkpoints import Checkpoint, CheckpointStore
from ddbbridge_dev.runner.code import CodeCache
from ddbbridge_dev.runner.destinations import send_to_queue
from ddbbridge_dev.runner.mappings import MappingSpec, discover
from ddbbridge_dev.runner.options import RunnerOptions, endpoints_from_state, read_faults
from ddbbridge_dev.runner.policy import InvocationResult
from ddbbridge_dev.runner.poll_budget import IdlePollBudget
from ddbbridge_dev.runner.role_credentials import DUMMY_CREDENTIALS
from ddbbridge_dev.runner.shard import ShardProcessor
from ddbbridge_dev.runner.sources import DynamoStreamSource, KinesisSource, Position, ShardInfo, StreamSource
from ddbbridge_dev.runner.wire import WireError
from ddbbridge_dev.runner.workers import WorkerPool

log = logging.getLogger("ddbbridge.runner")

_CREDENTIALS = Credentials(DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"], DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def start_position(checkpoint: Checkpoint | None, kind: str) -> tuple[Position, float | None]:
    """Where a shard resumes, and (DynamoDB only) the time before which records are skipped."""
    if checkpoint is not None and checkpoint.after is not None:
        return Position("AFTER_SEQUENCE_NUMBER", checkpoint.after), None
    if checkpoint is not None and checkpoint.since is not None:
        if kind == "kinesis":
            return Position("AT_TIMESTAMP", timestamp=checkpoint.since), None
        return Position("TRIM_HORIZON"), checkpoint.since
    return Position("TRIM_HORIZON"), None


def initial_checkpoint(spec: MappingSpec, now: float) -> Checkpoint | None:
    """A new mapping's starting position, recorded before the first read so a restart keeps it."""
    if spec.starting_position == "LATEST":
        created = spec.created
        # LATEST means "records written after the mapping was created", not after we noticed it.
        since = created if created is not None and now - 86400 < created <= now + 5 else now
        return Checkpoint(since=since)
    if spec.starting_position == "AT_TIMESTAMP" and spec.starting_timestamp is not None:
        return Checkpoint(since=spec.starting_timestamp)
    return None


@dataclass
class RegionClients:
    endpoint: str
    lambda_: Any
    sqs: Any


@dataclass
class MappingSupervisor:
    spec: MappingSpec
    source: StreamSource
    runner: Runner
    processors: dict[str, ShardProcessor] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    next_refresh: float = 0.0

    def refresh(self) -> None:
        now = time.monotonic()
        for shard_id, processor in list(self.processors.items()):
            if not processor.alive:
                processor.join()
                del self.processors[shard_id]
                if processor.finished:
                    self.finished.add(shard_id)
                    self.next_refresh = 0.0  # pick up child shards at once
        if now < self.next_refresh:
            return
        self.next_refresh = now + self.runner.options.shard_refresh
        try:
            shards = self.source.list_shards()
        except WireError as error:
            log.warning(
                json.dumps({"event": "list-shards-error", "mapping": self.spec.uuid, "error": str(error)})
            )
            self.next_refresh = now + self.runner.options.retry_ceiling
            return
        store = self.runner.store
        if not store.mapping_started(self.spec.uuid):
            initial = initial_checkpoint(self.spec, time.time())
            for shard in shards:
                if initial is not None and store.load(self.spec.uuid, shard.shard_id) is None:
                    store.save(self.spec.uuid, shard.shard_id, initial)
            store.mark_mapping_started(self.spec.uuid)
        present = {shard.shard_id for shard in shards}
        for shard in shards:
            self._ensure(shard, present)

    def _ensure(self, shard: ShardInfo, present: set[str]) -> None:
        if shard.shard_id in self.processors or shard.shard_id in self.finished:
            return
        checkpoint = self.runner.store.load(self.spec.uuid, shard.shard_id)
        if checkpoint is not None and checkpoint.finished:
            self.finished.add(shard.shard_id)
            return
        if shard.parent_id and shard.parent_id in present and shard.parent_id not in self.finished:
            return  # a child shard waits until its parent is fully processed, as Lambda does
        position, skip_before = start_position(checkpoint, self.spec.kind)
        processor = ShardProcessor(
            self.spec,
            shard,
            self.source,
            start=position,
            skip_before=skip_before,
            store=self.runner.store,
            options=self.runner.options,
            invoke=self._invoke,
            deliver_failure=self.runner.deliver_failure,
            idle_budget=self.runner.idle_budget,
        )
        self.processors[shard.shard_id] = processor
        processor.start()
        log.info(
            json.dumps(
                {
                    "event": "shard-started",
                    "region": self.spec.region,
                    "function": self.spec.runtime.function_name,
                    "mapping": self.spec.uuid,
                    "shard": shard.shard_id,
                    "position": position.kind,
                    "sequence": position.sequence,
                }
            )
        )

    def _invoke(self, event: dict[str, object]) -> InvocationResult:
        runtime = self.spec.runtime
        return self.runner.pool.invoke(
            runtime,
            event,
            skew=self.runner.skew(runtime.region),
            location=lambda: self.runner.code_location(runtime.region, runtime.function_name),
        )

    def stop(self) -> None:
        for processor in self.processors.values():
            processor.stop()

    def join(self) -> None:
        for processor in self.processors.values():
            processor.join()
        self.processors.clear()


class Runner:
    def __init__(self, options: RunnerOptions) -> None:
        self.options = options
        home = options.runner_home
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.store = CheckpointStore(home / "checkpoints")
        self.pool = WorkerPool(
            CodeCache(home), home / "logs", max_workers=options.max_workers, idle_ttl=options.idle_worker_ttl
        )
        self._supervisors: dict[str, MappingSupervisor] = {}
        self._clients: dict[str, RegionClients] = {}
        self._skew: dict[str, float] = dict(options.clock_skew)
        self._stop = threading.Event()
        self.idle_budget = IdlePollBudget(options.idle_polls_per_second)

    # -- services for supervisors and processors -----------------------------------------------
    def skew(self, region: str) -> float:
        return self._skew.get(region, 0.0)

    def _region_clients(self, region: str, endpoint: str) -> RegionClients:
        clients = self._clients.get(region)
        if clients is None or clients.endpoint != endpoint:
            session = boto3.session.Session(
                aws_access_key_id=_CREDENTIALS.access_key,
                aws_secret_access_key=_CREDENTIALS.secret_key,
                region_name=region,
            )
            config = botocore.config.Config(
                retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5
            )
            clients = RegionClients(
                endpoint,
                session.client("lambda", endpoint_url=endpoint, config=config),
                session.client("sqs", endpoint_url=endpoint, config=config),
            )
            self._clients[region] = clients
        return clients

    def code_location(self, region: str, function_name: str) -> str | None:
        clients = self._clients.get(region)
        if clients is None:
            return None
        location = clients.lambda_.get_function(FunctionName=function_name).get("Code", {}).get("Location")
        return str(location) if location else None

    def deliver_failure(self, destination: str, message: dict[str, object]) -> None:
        region = destination.split(":")[3]
        clients = self._clients.get(region)
        if clients is None:
            raise RuntimeError(f"no endpoint known for the on-failure destination's region {region}")
        send_to_queue(clients.sqs, destination, message)

    def _make_source(self, spec: MappingSpec, endpoint: str) -> StreamSource:
        if spec.kind == "dynamodb":
            return DynamoStreamSource(spec.source_arn, spec.region, endpoint, _CREDENTIALS)
        return KinesisSource(spec.source_arn, spec.region, endpoint, _CREDENTIALS, spec.runtime.role)

    # -- the loop ------------------------------------------------------------------------------
    def tick(self) -> None:
        endpoints = self.options.endpoints if self.options.endpoints is not None else endpoints_from_state()
        faults = read_faults(self.home).get("clock_skew", {})
        self._skew = {**self.options.clock_skew, **{k: float(v) for k, v in faults.items()}}
        for region in {spec.region for spec in (s.spec for s in self._supervisors.values())} - set(endpoints):
            self._retire(
                [uuid for uuid, s in self._supervisors.items() if s.spec.region == region], forget=False
            )
        for region, endpoint in sorted(endpoints.items()):
            clients = self._region_clients(region, endpoint)
            try:
                specs = discover(clients.lambda_, region=region, endpoint=endpoint)
            except Exception as error:  # region down or restarting: keep what runs, retry next tick
                log.warning(json.dumps({"event": "discover-error", "region": region, "error": str(error)}))
                continue
            listed = {spec.uuid: spec for spec in specs}
            current = [uuid for uuid, s in self._supervisors.items() if s.spec.region == region]
            self._retire([uuid for uuid in current if uuid not in listed], forget=True)
            changed = [
                uuid
                for uuid in current
                if uuid in listed
                and (listed[uuid] != self._supervisors[uuid].spec or not listed[uuid].enabled)
            ]
            self._retire(changed, forget=False)
            for spec in specs:
                if spec.enabled and spec.uuid not in self._supervisors:
                    self._supervisors[spec.uuid] = MappingSupervisor(
                        spec, self._make_source(spec, endpoint), self
                    )
                    log.info(
                        json.dumps(
                            {
                                "event": "mapping-started",
                                "region": region,
                                "mapping": spec.uuid,
                                "function": spec.runtime.function_name,
                                "code_sha256": spec.runtime.code_sha256,
                                "source": spec.source_arn,
                            }
                        )
                    )
        for supervisor in list(self._supervisors.values()):
            supervisor.refresh()
        self.pool.reap({supervisor.spec.runtime.key for supervisor in self._supervisors.values()})

    def _retire(self, uuids: list[str], *, forget: bool) -> None:
        supervisors = [self._supervisors.pop(uuid) for uuid in uuids if uuid in self._supervisors]
        for supervisor in supervisors:
            supervisor.stop()
        for supervisor in supervisors:
            supervisor.join()
            if forget:
                self.store.forget(supervisor.spec.uuid)
            log.info(
                json.dumps({"event": "mapping-stopped", "mapping": supervisor.spec.uuid, "forget": forget})
            )

    def run(self) -> None:
        log.info(json.dumps({"event": "runner-started", "fast": self.options.fast, "home": str(self.home)}))
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:
                    log.exception("runner tick failed")
                self._stop.wait(max(0.0, self.options.relist_interval - (time.monotonic() - started)))
        finally:
            self.close()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._retire(list(self._supervisors), forget=False)
        self.pool.close()
        log.info(json.dumps({"event": "runner-stopped"}))
