"""The deployed code of each function, fetched from the emulator and unpacked once per CodeSha256.

Primary source: the launcher route `GET <endpoint>/_ddbbridge/lambda/functions/<name>/code` (moto
keeps the uploaded zip but its GetFunction `Code.Location` is a made-up address). Fallback:
`Code.Location` when it is downloadable (e.g. a function created from an S3 object).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import os
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

# What Lambda's Python runtime ships besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


class CodeFetchError(Exception):
    """The deployed zip could not be fetched (a pre-invocation error: retried, never counted)."""


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 digest of the zip."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _download(url: str, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data: bytes = response.read()
        return data


class CodeCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._runtime: Path | None = None

    def runtime_path(self) -> Path:
        """A folder with only the runtime's packages, linked from the runner's own environment."""
        with self._lock:
            if self._runtime is not None:
                return self._runtime
            folder = self.root / "runtime-python"
            staging = self.root / f".runtime-python.{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for name in RUNTIME_PACKAGES:
                spec = importlib.util.find_spec(name)
                if spec is None or spec.origin is None:
                    continue
                origin = Path(spec.origin)
                source = origin.parent if origin.name == "__init__.py" else origin
                (staging / source.name).symlink_to(source)
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            self._runtime = folder
            return folder

    def task_root(
        self,
        *,
        endpoint: str,
        function_name: str,
        expected_sha256: str,
        location: Callable[[], str | None],
    ) -> Path:
        """The unpacked zip whose CodeSha256 is `expected_sha256`, fetching it if needed."""
        folder = self.root / "code" / base64.b64decode(expected_sha256).hex()
        if folder.exists():
            return folder
        with self._lock:
            lock = self._locks.setdefault(expected_sha256, threading.Lock())
        with lock:
            if folder.exists():
                return folder
            data = self._fetch(endpoint, function_name, location)
            actual = code_sha256(data)
            if actual != expected_sha256:
                raise CodeFetchError(
                    f"{function_name}: fetched code has CodeSha256 {actual}, expected {expected_sha256} "
                    "(updated since the mapping was listed)"
                )
            staging = folder.with_name(f".{folder.name}.{os.getpid()}.{threading.get_ident()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    archive.extractall(staging)
            except zipfile.BadZipFile as error:
                shutil.rmtree(staging, ignore_errors=True)
                raise CodeFetchError(f"{function_name}: deployed code is not a zip: {error}") from error
            staging.rename(folder)
            return folder

    @staticmethod
    def _fetch(endpoint: str, function_name: str, location: Callable[[], str | None]) -> bytes:
        route = f"{endpoint.rstrip('/')}/_ddbbridge/lambda/functions/{urllib.parse.quote(function_name)}/code"
        try:
            return _download(route)
        except urllib.error.HTTPError as error:
            if error.code != 404:
                raise CodeFetchError(f"{function_name}: {route} answered HTTP {error.code}") from error
            first_error: Exception = error
        except OSError as error:
            first_error = error
        url = location()
        if not url:
            raise CodeFetchError(f"{function_name}: code not available ({first_error})")
        try:
            return _download(url)
        except OSError as error:
            raise CodeFetchError(
                f"{function_name}: code not available from {route} ({first_error}) "
                f"nor from Code.Location ({error})"
            ) from error
