"""Workers run with their function's execution-role session and are retired before it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ddbbridge_dev.runner import role_credentials, workers
from ddbbridge_dev.runner.role_credentials import REFRESH_MARGIN_SECONDS, RoleCredentials

RUNTIME = workers.FunctionRuntime(
    region="cn-north-1",
    endpoint="http://127.0.0.1:9",
    function_name="fn",
    function_arn="arn:aws-cn:lambda:cn-north-1:123456789012:function:fn",
    handler="index.handler",
    code_sha256="sha",
    environment=(("AWS_ACCESS_KEY_ID", "from-configuration"),),
    timeout=3,
    memory=128,
    role="arn:aws-cn:iam::123456789012:role/fn-role",
)
SESSION = {"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}


def test_session_credentials_are_reserved_variables(tmp_path: Path) -> None:
    environment = RUNTIME.process_environment(tmp_path, tmp_path, SESSION)
    assert {name: environment[name] for name in SESSION} == SESSION  # configuration cannot override them


def test_credentials_are_current_until_the_refresh_margin() -> None:
    now = 1_000_000.0
    assert RoleCredentials(SESSION, now + REFRESH_MARGIN_SECONDS + 1).current(now)
    assert not RoleCredentials(SESSION, now + REFRESH_MARGIN_SECONDS - 1).current(now)
    assert RoleCredentials(role_credentials.DUMMY_CREDENTIALS, None).current(now)


def test_a_function_without_role_keeps_the_static_keys() -> None:
    assert (
        role_credentials.fetch("http://127.0.0.1:9", "", "fn").environment
        == role_credentials.DUMMY_CREDENTIALS
    )


def test_unreachable_vendor_is_a_pre_invocation_error() -> None:
    with pytest.raises(OSError, match="fn-role"):  # shard processing retries OSError before invoking
        role_credentials.fetch("http://127.0.0.1:9", RUNTIME.role, "fn")


def _idle_worker(expires: float) -> workers.Worker:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    request_read, request_write = os.pipe()
    response_read, response_write = os.pipe()
    os.close(request_read)
    os.close(response_write)
    return workers.Worker(
        RUNTIME.key, process, request_write, response_read, credentials=RoleCredentials(SESSION, expires)
    )


def test_idle_worker_whose_session_ends_soon_is_replaced(tmp_path: Path, monkeypatch: Any) -> None:
    pool = workers.WorkerPool(code=None, logs_dir=tmp_path)  # type: ignore[arg-type]  # _spawn is replaced
    ending, lasting = _idle_worker(time.time() + 60), _idle_worker(time.time() + 6 * 3600)
    spawned: list[workers.FunctionRuntime] = []

    def spawn(runtime: workers.FunctionRuntime, _location: Any) -> workers.Worker:
        spawned.append(runtime)
        return lasting

    monkeypatch.setattr(pool, "_spawn", spawn)
    pool._idle[RUNTIME.key] = [ending]
    pool._all.add(ending)
    pool._live = 1
    try:
        assert pool._acquire(RUNTIME, lambda: None) is lasting
        assert spawned == [RUNTIME]
        assert ending.process.poll() is not None  # killed, not handed out
        assert pool.live_workers() == 1
        pool._release(lasting)
        assert pool._acquire(RUNTIME, lambda: None) is lasting  # a current session is reused
        assert spawned == [RUNTIME]
    finally:
        lasting.kill()
        ending.kill()
