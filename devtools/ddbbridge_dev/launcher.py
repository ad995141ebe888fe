"""One emulated AWS region: a moto server with our patches and a few routes of our own.

    python -m ddbbridge_dev.launcher --region cn-north-1 --port 0 --ready-file F [--log F]

With `--port 0` the OS picks a free port (no race with other processes); the bound port is written to
`--ready-file` once the server listens. Extra routes (the contract between helpers):
  GET    /_ddbbridge/health                          {"region", "pid", "moto", "patches"}
  GET    /_ddbbridge/lambda/functions/<name>/code    the deployed zip ($LATEST or ?qualifier=)
  GET    /_ddbbridge/requests[?since=SEQ]            [{"seq", "service", "operation", "fault", "table"}]
  DELETE /_ddbbridge/requests                        clear the request log
  POST   /_ddbbridge/faults                          {"service","operation","error","status","count",
                                                      "delay_ms","after","contains"} (see faults.py)
  GET    /_ddbbridge/faults, DELETE /_ddbbridge/faults[?service=S[&operation=O]]
  GET    /_ddbbridge/oidc/<account>/.well-known/openid-configuration | jwks.json
                                                     the account's token issuer (federation.py)
  POST   /_ddbbridge/lambda/role-credentials         a function role's credentials (execution_role.py)
moto's own `POST /moto-api/reset` resets every backend.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from moto.awslambda.models import lambda_backends
from moto.backends import get_backend
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.utilities.utils import get_partition
from werkzeug.serving import make_server

from ddbbridge_dev import execution_role, federation, moto_patches, state
from ddbbridge_dev.faults import Fault, FaultBook, FaultSpecError, render, request_protocol
from ddbbridge_dev.request_log import DEFAULT_LIMIT, RequestLog, identify, names_table, table_of

LOG = logging.getLogger("ddbbridge_dev.launcher")
# Services the product and tests use: their backends are built at start so the first call is not slow.
WARM_SERVICES = ("dynamodb", "dynamodbstreams", "kinesis", "lambda", "sqs", "ssm", "cloudwatch")
WARM_PARTITION_SERVICES = ("iam", "sts")  # moto keys these by partition, not region
_CODE_ROUTE = re.compile(r"^/_ddbbridge/lambda/functions/(?P<name>[^/]+)/code$")

Json = Any


class BridgeApp:
    """WSGI middleware around moto's dispatcher: logs, injects faults, serves our own routes."""

    def __init__(self, moto_app: Any, region: str, patches: Sequence[str], log_limit: int) -> None:
        self.moto_app = moto_app
        self.region = region
        self.patches = list(patches)
        self.requests = RequestLog(log_limit)
        self.faults = FaultBook()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_ddbbridge/"):
            status, headers, body = self._own_route(environ, path)
            start_response(status, headers)
            return [body]
        if path.startswith("/moto-api") or path == "/favicon.ico":
            return self.moto_app(environ, start_response)  # type: ignore[no-any-return]
        body = _buffer_form_body(environ)
        service, operation = identify(environ, body)
        if not body and (self.faults.needs_body(service, operation) or names_table(service, operation)):
            body = _buffer_body(environ)
        fault = self.faults.take(service, operation, body)
        table = table_of(body) if names_table(service, operation) else None
        # Logged before any hold: a held request is visible in the log while it is in flight.
        self.requests.record(service, operation, fault.mark if fault else None, table)
        if fault is not None and fault.delay_ms > 0:
            time.sleep(fault.delay_ms / 1000)
        if fault is not None and fault.error is not None:
            is_query = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
            code, headers, payload = render(fault, request_protocol(service, environ, is_query))
            start_response(f"{code} Fault", [*headers, ("Content-Length", str(len(payload)))])
            return [payload]
        return self.moto_app(environ, start_response)  # type: ignore[no-any-return]

    def _own_route(self, environ: dict[str, Any], path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        query = _query(environ)
        document = federation.serve_document(path) if method == "GET" else None
        document = document or execution_role.serve(method, path, lambda: _read_body(environ), self.region)
        if document is not None:
            return _json(*document)
        if path == "/_ddbbridge/health" and method == "GET":
            return _json(
                200,
                {
                    "region": self.region,
                    "pid": os.getpid(),
                    "moto": moto_patches.MOTO_VERSION,
                    "patches": self.patches,
                },
            )
        if path == "/_ddbbridge/requests":
            if method == "GET":
                return _json(200, self.requests.since(int(query.get("since", "0") or 0)))
            if method == "DELETE":
                self.requests.clear()
                return _json(200, {"cleared": True})
        if path == "/_ddbbridge/faults":
            if method == "POST":
                try:
                    fault = Fault.from_json(json.loads(_read_body(environ) or b"null"))
                except (FaultSpecError, ValueError) as error:
                    return _json(400, {"error": str(error)})
                self.faults.add(fault)
                return _json(200, {"pending": self.faults.pending()})
            if method == "GET":
                return _json(200, {"pending": self.faults.pending()})
            if method == "DELETE":  # ?service=&operation= narrows what is dropped
                self.faults.clear(query.get("service") or None, query.get("operation") or None)
                return _json(200, {"pending": self.faults.pending()})
        match = _CODE_ROUTE.match(path)
        if match and method == "GET":
            return self._function_code(match["name"], query)
        return _json(404, {"error": f"no route {method} {path}"})

    def _function_code(self, name: str, query: dict[str, str]) -> tuple[str, list[tuple[str, str]], bytes]:
        account = query.get("account", DEFAULT_ACCOUNT_ID)
        qualifier = query.get("qualifier") or None
        try:
            function = lambda_backends[account][self.region].get_function(name, qualifier)
        except Exception as error:  # moto raises its own not-found types
            return _json(404, {"error": f"function {name} not found: {error}"})
        code: bytes = getattr(function, "code_bytes", b"") or b""
        if not code:
            return _json(404, {"error": f"function {name} has no zip code in the emulator"})
        headers = [("Content-Type", "application/zip"), ("Content-Length", str(len(code)))]
        headers.append(("x-ddbbridge-code-sha256", str(function.code_sha_256)))
        return "200 OK", headers, code


def _json(status: int, document: Json) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps(document).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    return (
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        body,
    )


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", "")))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _buffer_body(environ: dict[str, Any]) -> bytes:
    """Read the body (to match a fault against it) and put it back for moto."""
    body = _read_body(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _buffer_form_body(environ: dict[str, Any]) -> bytes:
    """Read a query-protocol body (to find its Action) and put it back for moto, as moto itself does."""
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return b""
    body = _read_body(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _warm_up(region: str) -> None:
    for service in WARM_SERVICES:
        get_backend(service)[DEFAULT_ACCOUNT_ID][region]  # type: ignore[call-overload]
    for service in WARM_PARTITION_SERVICES:  # IAM loads the managed policies here, once
        get_backend(service)[DEFAULT_ACCOUNT_ID][get_partition(region)]  # type: ignore[call-overload]


def build_app(region: str, log_limit: int = DEFAULT_LIMIT) -> BridgeApp:
    patches = moto_patches.apply_all()  # before any moto backend exists
    return BridgeApp(
        DomainDispatcherApplication(create_backend_app), region, [p.name for p in patches], log_limit
    )


def _write_ready(path: Path, port: int) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"port": port, "pid": os.getpid()}), encoding="utf-8")
    temporary.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddbbridge_dev.launcher", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port (see --ready-file)")
    parser.add_argument("--ready-file", type=Path, help="written with the bound port once listening")
    parser.add_argument("--log", type=Path, help="append log lines to this file")
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request (slower)")
    parser.add_argument("--request-log-limit", type=int, default=DEFAULT_LIMIT)
    parser.add_argument("--no-warm-up", action="store_true")
    parser.add_argument("--key-dir", type=Path, help="token signing keys (default: <dev dir>/oidc/<region>)")
    args = parser.parse_args(argv)

    handlers: list[logging.Handler] = [logging.FileHandler(args.log) if args.log else logging.StreamHandler()]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", handlers=handlers)
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.access_log else logging.WARNING)

    app = build_app(args.region, args.request_log_limit)
    if not args.no_warm_up:
        _warm_up(args.region)

    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    # Stopping must not wait for requests still queued on the emulator's locks (a long Scan under
    # load): server_close() would otherwise join every request thread.
    server.daemon_threads = True  # type: ignore[attr-defined]
    server.block_on_close = False  # type: ignore[attr-defined]

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = server.socket.getsockname()[1]
    # Token issuers are URLs of this very server, so they are known only once the port is bound.
    federation.configure(
        f"http://{args.host}:{port}", args.key_dir or state.dev_dir() / "oidc" / args.region, args.region
    )
    LOG.info(
        "region %s listening on %s:%d (pid %d), patches: %s",
        args.region,
        args.host,
        port,
        os.getpid(),
        app.patches,
    )
    if args.ready_file:
        _write_ready(args.ready_file, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        LOG.info("region %s stopped", args.region)
    return 0


if __name__ == "__main__":
    sys.exit(main())
