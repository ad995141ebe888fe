"""Worker processes that run deployed handlers, reused per function version.

One process serves one invocation at a time. Processes are keyed by what defines a function version
(CodeSha256, handler, environment, region...), reused while idle, evicted least-recently-used when the
pool is full, reaped when idle too long or when no mapping needs them, and killed on timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ddbbridge_dev.runner import role_credentials
from ddbbridge_dev.runner.code import CodeCache
from ddbbridge_dev.runner.policy import InvocationResult

workers_log = logging.getLogger("ddbbridge.runner.workers")

_HEADER = 8
WORKER_SCRIPT = Path(__file__).with_name("worker_main.py")
INIT_ALLOWANCE = 10.0  # Lambda's init phase has its own 10 s budget


@dataclass(frozen=True)
class FunctionRuntime:
    """Everything that defines how one function version runs."""

    region: str
    endpoint: str  # the function's own region, as Lambda's environment would reach it
    function_name: str
    function_arn: str
    handler: str
    code_sha256: str
    environment: tuple[tuple[str, str], ...]
    timeout: int
    memory: int
    role: str
    version: str = "$LATEST"

    @property
    def key(self) -> str:
        text = json.dumps(
            [
                self.region,
                self.endpoint,
                self.function_name,
                self.handler,
                self.code_sha256,
                self.environment,
                self.timeout,
                self.memory,
                self.version,
                self.role,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def process_environment(
        self, task_root: Path, runtime_path: Path, credentials: Mapping[str, str]
    ) -> dict[str, str]:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        environment.update(dict(self.environment))
        stream = time.strftime("%Y/%m/%d", time.gmtime()) + f"/[{self.version}]" + uuid.uuid4().hex
        # Reserved variables: the function's configuration cannot override them on Lambda either.
        environment.update(
            {
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
                "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
                "AWS_LAMBDA_FUNCTION_VERSION": self.version,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": stream,
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "LAMBDA_TASK_ROOT": str(task_root),
                "LAMBDA_RUNTIME_DIR": str(runtime_path),
                "_HANDLER": self.handler,
                **credentials,  # the execution role's session, as Lambda provides it
            }
        )
        return environment


class WorkerGoneError(Exception):
    """The worker process exited or its pipe broke mid-invocation."""


class WorkerTimeoutError(Exception):
    pass


@dataclass(eq=False)  # identity semantics: workers live in sets
class Worker:
    key: str
    process: subprocess.Popen[bytes]
    request_fd: int
    response_fd: int
    fresh: bool = True
    last_used: float = field(default_factory=time.monotonic)
    credentials: role_credentials.RoleCredentials | None = None

    def invoke(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        body = json.dumps(request).encode()
        data = memoryview(len(body).to_bytes(_HEADER, "big") + body)
        try:
            while data:
                written = os.write(self.request_fd, data)
                data = data[written:]
        except OSError as error:
            raise WorkerGoneError(str(error)) from error
        deadline = time.monotonic() + timeout
        size = int.from_bytes(self._read(_HEADER, deadline), "big")
        response: dict[str, Any] = json.loads(self._read(size, deadline))
        self.fresh = False
        self.last_used = time.monotonic()
        return response

    def _read(self, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        while size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerTimeoutError
            ready, _, _ = select.select([self.response_fd], [], [], remaining)
            if not ready:
                raise WorkerTimeoutError
            chunk = os.read(self.response_fd, min(size, 1 << 20))
            if not chunk:
                raise WorkerGoneError(f"worker exited with {self.process.poll()}")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        for fd in (self.request_fd, self.response_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


class WorkerPool:
    def __init__(
        self,
        code: CodeCache,
        logs_dir: Path,
        *,
        max_workers: int = 32,
        idle_ttl: float = 300.0,
    ) -> None:
        self._code = code
        self._logs_dir = logs_dir
        self._max_workers = max_workers
        self._idle_ttl = idle_ttl
        self._condition = threading.Condition()
        self._idle: dict[str, list[Worker]] = {}
        self._all: set[Worker] = set()
        self._live = 0
        self._closed = False
        self._log_files: dict[str, IO[bytes]] = {}

    def invoke(
        self,
        runtime: FunctionRuntime,
        event: dict[str, Any],
        *,
        skew: float,
        location: Callable[[], str | None],
    ) -> InvocationResult:
        """Run the handler once. Raises CodeFetchError (pre-invocation) when the code is unavailable."""
        worker = self._acquire(runtime, location)
        request_id = str(uuid.uuid4())
        allowance = INIT_ALLOWANCE if worker.fresh else 0.0
        started = time.monotonic()
        request = {
            "event": event,
            "request_id": request_id,
            "timeout_ms": runtime.timeout * 1000,
            "skew": skew,
        }
        try:
            response = worker.invoke(request, runtime.timeout + allowance)
        except WorkerTimeoutError:
            self._discard(worker)
            return InvocationResult(
                ok=False,
                error_type="Sandbox.Timedout",
                error_message=f"Task timed out after {runtime.timeout:.2f} seconds",
                duration=time.monotonic() - started,
                request_id=request_id,
            )
        except (WorkerGoneError, ValueError) as error:
            self._discard(worker)
            return InvocationResult(
                ok=False,
                error_type="Runtime.ExitError",
                error_message=f"RequestId: {request_id} Error: Runtime exited: {error}",
                duration=time.monotonic() - started,
                request_id=request_id,
            )
        duration = time.monotonic() - started
        if worker.process.poll() is None:
            self._release(worker)
        else:
            self._discard(worker)
        if response.get("ok"):
            return InvocationResult(
                ok=True, payload=response.get("payload"), duration=duration, request_id=request_id
            )
        return InvocationResult(
            ok=False,
            error_type=str(response.get("errorType")),
            error_message=str(response.get("errorMessage")),
            duration=duration,
            request_id=request_id,
        )

    def _acquire(self, runtime: FunctionRuntime, location: Callable[[], str | None]) -> Worker:
        key = runtime.key
        with self._condition:
            while True:
                if self._closed:
                    raise RuntimeError("worker pool closed")
                idle = self._idle.get(key)
                while idle:
                    worker = idle.pop()
                    if worker.credentials is None or worker.credentials.current():
                        return worker
                    self._retire(worker)  # its role session ends soon: Lambda starts a new environment
                if self._live < self._max_workers:
                    self._live += 1
                    break
                if not self._evict_one():
                    self._condition.wait(timeout=1.0)
        try:
            return self._spawn(runtime, location)
        except BaseException:
            with self._condition:
                self._live -= 1
                self._condition.notify_all()
            raise

    def _retire(self, worker: Worker) -> None:
        """Kill an idle worker already taken off its idle list (caller holds the lock)."""
        self._all.discard(worker)
        self._live -= 1
        worker.kill()

    def _evict_one(self) -> bool:
        """Kill the least recently used idle worker (caller holds the lock)."""
        candidates = [worker for workers in self._idle.values() for worker in workers]
        if not candidates:
            return False
        victim = min(candidates, key=lambda worker: worker.last_used)
        self._idle[victim.key].remove(victim)
        self._all.discard(victim)
        self._live -= 1
        victim.kill()
        return True

    def _spawn(self, runtime: FunctionRuntime, location: Callable[[], str | None]) -> Worker:
        task_root = self._code.task_root(
            endpoint=runtime.endpoint,
            function_name=runtime.function_name,
            expected_sha256=runtime.code_sha256,
            location=location,
        )
        runtime_path = self._code.runtime_path()
        credentials = role_credentials.fetch(runtime.endpoint, runtime.role, runtime.function_name)
        request_read, request_write = os.pipe()
        response_read, response_write = os.pipe()
        config = {
            "request_fd": request_read,
            "response_fd": response_write,
            "task_root": str(task_root),
            "runtime_path": str(runtime_path),
            "handler": runtime.handler,
            "function_arn": runtime.function_arn,
        }
        log = self._log_file(runtime)
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WORKER_SCRIPT), json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(request_read, response_write),
                env=runtime.process_environment(task_root, runtime_path, credentials.environment),
                cwd=str(task_root),
            )
        finally:
            os.close(request_read)
            os.close(response_write)
        worker = Worker(runtime.key, process, request_write, response_read, credentials=credentials)
        with self._condition:
            self._all.add(worker)
        # Which process serves which function: fault tests kill a worker mid-batch by this pid.
        workers_log.info(
            json.dumps(
                {
                    "event": "worker-started",
                    "region": runtime.region,
                    "function": runtime.function_name,
                    "pid": process.pid,
                }
            )
        )
        return worker

    def _log_file(self, runtime: FunctionRuntime) -> IO[bytes]:
        with self._condition:
            path = self._logs_dir / runtime.region / f"{runtime.function_name}.log"
            handle = self._log_files.get(str(path))
            if handle is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = path.open("ab")
                self._log_files[str(path)] = handle
            return handle

    def _release(self, worker: Worker) -> None:
        with self._condition:
            if self._closed:
                self._all.discard(worker)
                worker.kill()
                return
            self._idle.setdefault(worker.key, []).append(worker)
            self._condition.notify_all()

    def _discard(self, worker: Worker) -> None:
        worker.kill()
        with self._condition:
            if worker in self._all:  # close() may have released it already
                self._all.discard(worker)
                self._live -= 1
            self._condition.notify_all()

    def reap(self, wanted_keys: set[str]) -> int:
        """Kill idle workers past their TTL or of function versions no mapping uses any more."""
        cutoff = time.monotonic() - self._idle_ttl
        reaped = 0
        with self._condition:
            for key, workers in list(self._idle.items()):
                for worker in list(workers):
                    if key not in wanted_keys or worker.last_used < cutoff:
                        workers.remove(worker)
                        self._all.discard(worker)
                        self._live -= 1
                        worker.kill()
                        reaped += 1
                if not workers:
                    del self._idle[key]
            self._condition.notify_all()
        return reaped

    def live_workers(self) -> int:
        with self._condition:
            return self._live

    def close(self) -> None:
        with self._condition:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            self._live = 0
            self._condition.notify_all()
        for worker in workers:
            worker.kill()
        for handle in self._log_files.values():
            handle.close()
