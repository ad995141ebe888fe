"""The handler zip is deterministic: same source, same bytes, same CodeSha256."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path

from ddbbridge.package import FIXED_TIMESTAMP, build_zip, package_source_dir


def copy_of_handlers(tmp_path: Path) -> Path:
    target = tmp_path / "src"
    shutil.copytree(package_source_dir(), target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_same_source_gives_the_same_bytes(tmp_path: Path) -> None:
    first = build_zip()
    source = copy_of_handlers(tmp_path)
    # Different mtimes, permissions and a byte-code cache must not change the bytes.
    for path in source.rglob("*.py"):
        os.utime(path, (1_900_000_000, 1_900_000_000))
        path.chmod(0o600)
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"cache")
    (source / ".hidden").write_text("editor state")
    second = build_zip(source)
    assert first.zip_bytes == second.zip_bytes
    assert first.code_sha256 == second.code_sha256


def test_code_sha256_is_what_lambda_reports() -> None:
    bundle = build_zip()
    assert bundle.code_sha256 == base64.b64encode(hashlib.sha256(bundle.zip_bytes).digest()).decode()


def test_different_source_gives_a_different_hash(tmp_path: Path) -> None:
    source = copy_of_handlers(tmp_path)
    before = build_zip(source).code_sha256
    config = source / "config.py"
    config.write_text(config.read_text() + "\n# changed\n")
    assert build_zip(source).code_sha256 != before


def test_zip_holds_the_package_at_its_root_sorted_with_fixed_metadata() -> None:
    archive = zipfile.ZipFile(io.BytesIO(build_zip().zip_bytes))
    names = archive.namelist()
    assert names == sorted(names)
    assert "ddbbridge_lambdas/__init__.py" in names
    assert "ddbbridge_lambdas/config.py" in names
    assert all(name.startswith("ddbbridge_lambdas/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    for info in archive.infolist():
        assert info.date_time == FIXED_TIMESTAMP
        assert info.external_attr >> 16 == 0o100644
    assert archive.read("ddbbridge_lambdas/config.py") == (package_source_dir() / "config.py").read_bytes()
