"""Entry point of a worker process: imports the deployed handler and serves invocations.

Runs as `python -I -S worker_main.py '<json config>'` so that neither the runner's sys.path nor any
site-packages `.pth` hook (our editable install) leaks in: sys.path is the unpacked zip, the standard
library, and a folder holding only the packages Lambda's Python runtime ships (boto3 and its
dependencies). Standard library only; it must not import anything from the runner.

Protocol on two pipes: frames of an 8-byte big-endian length followed by JSON.
Request: {"event", "request_id", "timeout_ms", "skew"}; response: {"ok", "payload"} or
{"ok": false, "errorType", "errorMessage", "stackTrace"}.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

_HEADER = 8
_clock = {"skew": 0.0}  # mutable holder: the patched time.time reads it on every call


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int) -> Any:
    size = int.from_bytes(_read_exactly(fd, _HEADER), "big")
    return json.loads(_read_exactly(fd, size))


def _send(fd: int, document: Any) -> None:
    _send_bytes(fd, json.dumps(document).encode())


def _send_bytes(fd: int, body: bytes) -> None:
    data = memoryview(len(body).to_bytes(_HEADER, "big") + body)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the runner dies, so no worker outlives it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _install_clock_skew() -> None:
    """Fault hook of the dev infrastructure: shift time.time() by the region's configured skew."""
    real_time = time.time
    real_time_ns = time.time_ns

    def skewed_time() -> float:
        return real_time() + _clock["skew"]

    def skewed_time_ns() -> int:
        return real_time_ns() + int(_clock["skew"] * 1e9)

    time.time = skewed_time
    time.time_ns = skewed_time_ns


class LambdaContext:
    """The context object of Lambda's Python runtime (same attribute names and types)."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        # Monotonic, so the clock-skew hook does not distort the timeout.
        return max(0, self._deadline_ms - int(time.monotonic() * 1000))

    def log(self, message: str) -> None:
        sys.stdout.write(message)


def _load_handler(handler: str) -> tuple[Any, dict[str, Any] | None]:
    module_name, _, function_name = handler.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as error:
        return None, {
            "errorType": "Runtime.UserCodeSyntaxError",
            "errorMessage": f"Syntax error in module '{module_name}': {error}",
        }
    except ImportError as error:
        return None, {
            "errorType": "Runtime.ImportModuleError",
            "errorMessage": f"Unable to import module '{module_name}': {error}",
        }
    except Exception as error:
        return None, {"errorType": type(error).__name__, "errorMessage": str(error)}
    function = getattr(module, function_name, None)
    if function is None:
        return None, {
            "errorType": "Runtime.HandlerNotFound",
            "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
        }
    return function, None


def main() -> int:
    config = json.loads(sys.argv[1])
    _die_with_parent()
    request_fd, response_fd = int(config["request_fd"]), int(config["response_fd"])
    os.dup2(2, 1)  # the handler's prints go to the function log, never into the protocol
    stdlib = [entry for entry in sys.path if entry]
    sys.path[:] = [config["task_root"], *stdlib, config["runtime_path"]]
    os.chdir(config["task_root"])
    _install_clock_skew()
    _clock["skew"] = float(config.get("skew", 0.0))
    function, init_error = _load_handler(config["handler"])
    if init_error:
        sys.stderr.write(json.dumps({"init_error": init_error}) + "\n")
    while True:
        try:
            request = _receive(request_fd)
        except EOFError:
            return 0
        request_id = request["request_id"]
        _clock["skew"] = float(request.get("skew", 0.0))
        sys.stderr.write(f"START RequestId: {request_id} Version: $LATEST\n")
        if init_error:
            _send(response_fd, {"ok": False, "stackTrace": [], **init_error})
            return 1  # Lambda re-runs init on the next invocation: a fresh process does that
        deadline_ms = int(time.monotonic() * 1000) + int(request["timeout_ms"])
        context = LambdaContext(request_id, deadline_ms, config["function_arn"])
        started = time.monotonic()
        try:
            payload = function(request["event"], context)
            try:
                body = json.dumps({"ok": True, "payload": payload}).encode()
            except (TypeError, ValueError) as error:
                body = json.dumps(
                    {
                        "ok": False,
                        "errorType": "Runtime.MarshalError",
                        "errorMessage": f"Unable to marshal response: {error}",
                        "stackTrace": [],
                    }
                ).encode()
        except Exception as error:
            sys.stderr.write("".join(traceback.format_exception(error)))
            body = json.dumps(
                {
                    "ok": False,
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "stackTrace": traceback.format_tb(error.__traceback__),
                }
            ).encode()
        _send_bytes(response_fd, body)
        elapsed = (time.monotonic() - started) * 1000
        sys.stderr.write(
            f"END RequestId: {request_id}\nREPORT RequestId: {request_id} Duration: {elapsed:.2f} ms\n"
        )
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
