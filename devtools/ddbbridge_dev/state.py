"""The dev environment's state file, `.ddbbridge/dev/state.json`: one section per component.

Components (regions, proxy, runner, kube) each own one top-level section and update it under a file
lock, so concurrent `dev` commands never lose each other's writes.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def project_root() -> Path:
    """The checkout the dev environment belongs to (overridable for tests)."""
    override = os.environ.get("DDBBRIDGE_PROJECT_ROOT")
    if override:
        return Path(override)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists():
            return parent
    return Path.cwd()


def dev_dir() -> Path:
    """Folder holding state, logs and generated files; `DDBBRIDGE_DEV_DIR` overrides it."""
    override = os.environ.get("DDBBRIDGE_DEV_DIR")
    path = Path(override) if override else project_root() / ".ddbbridge" / "dev"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_path() -> Path:
    return dev_dir() / "state.json"


@contextmanager
def _locked() -> Iterator[None]:
    lock_path = dev_dir() / "state.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read() -> dict[str, Any]:
    path = state_path()
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    return json.loads(text) if text.strip() else {}


def _write(state: dict[str, Any]) -> None:
    path = state_path()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def load_state() -> dict[str, Any]:
    with _locked():
        return _read()


def read_section(name: str) -> dict[str, Any] | None:
    section = load_state().get(name)
    return dict(section) if isinstance(section, dict) else None


def write_section(name: str, section: dict[str, Any] | None) -> None:
    """Replace one component's section (None removes it)."""
    with _locked():
        state = _read()
        if section is None:
            state.pop(name, None)
        else:
            state[name] = section
        _write(state)
