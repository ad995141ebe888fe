"""The deployment zip of the handlers: same source -> same bytes -> same CodeSha256 -> no update.

Entries are sorted, timestamps and permissions fixed, caches and hidden files left out, and entries
are STORED (not deflated) so the bytes do not depend on the zlib version of the machine that builds
them: an operator upgrade with unchanged handlers must not redeploy the functions.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ddbbridge_lambdas"
FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can record
FILE_MODE = 0o100644  # regular file, rw-r--r--


@dataclass(frozen=True)
class CodeBundle:
    zip_bytes: bytes

    @property
    def code_sha256(self) -> str:
        """What Lambda reports as CodeSha256: base64 of the zip's SHA-256."""
        return base64.b64encode(hashlib.sha256(self.zip_bytes).digest()).decode("ascii")


def package_source_dir() -> Path:
    """The installed `ddbbridge_lambdas` folder (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {PACKAGE} is not importable; is ddbbridge installed?")
    return Path(spec.origin).parent


def _included(path: Path, root: Path) -> bool:
    relative = path.relative_to(root)
    if any(part == "__pycache__" or part.startswith(".") for part in relative.parts):
        return False
    return path.is_file() and not path.is_symlink() and path.suffix not in (".pyc", ".pyo")


def build_zip(source_dir: Path | None = None) -> CodeBundle:
    """Zip `source_dir` (default: the installed handlers) under `ddbbridge_lambdas/` at the root."""
    root = source_dir or package_source_dir()
    files = sorted(
        (path.relative_to(root).as_posix(), path) for path in root.rglob("*") if _included(path, root)
    )
    if not files:
        raise RuntimeError(f"no files to package under {root}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for relative, path in files:
            info = zipfile.ZipInfo(f"{PACKAGE}/{relative}", date_time=FIXED_TIMESTAMP)
            info.external_attr = FILE_MODE << 16
            info.create_system = 3  # unix, so the mode bits above are honoured everywhere
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, path.read_bytes())
    return CodeBundle(buffer.getvalue())
