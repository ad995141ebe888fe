"""Per (mapping, shard) checkpoints in the dev dir, written atomically (temp file + rename).

A checkpoint says where a restarted runner resumes: after the last record that was fully processed,
or (for a shard started at LATEST that has not delivered anything yet) the time it started, so
records written while the runner was down are not skipped.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    after: str | None = None  # last processed sequence number
    since: float | None = None  # started at LATEST at this epoch time, nothing processed yet
    finished: bool = False  # closed shard fully processed


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


class CheckpointStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _mapping_dir(self, mapping_uuid: str) -> Path:
        return self.root / _safe(mapping_uuid)

    def _path(self, mapping_uuid: str, shard_id: str) -> Path:
        return self._mapping_dir(mapping_uuid) / f"{_safe(shard_id)}.json"

    def load(self, mapping_uuid: str, shard_id: str) -> Checkpoint | None:
        path = self._path(mapping_uuid, shard_id)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return Checkpoint(
            after=document.get("after"),
            since=document.get("since"),
            finished=bool(document.get("finished", False)),
        )

    def save(self, mapping_uuid: str, shard_id: str, checkpoint: Checkpoint) -> None:
        write_json_atomically(self._path(mapping_uuid, shard_id), asdict(checkpoint))

    def mapping_started(self, mapping_uuid: str) -> bool:
        """True once the mapping's initial shards got their starting positions recorded."""
        return (self._mapping_dir(mapping_uuid) / "_started").exists()

    def mark_mapping_started(self, mapping_uuid: str) -> None:
        marker = self._mapping_dir(mapping_uuid) / "_started"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def forget(self, mapping_uuid: str) -> None:
        shutil.rmtree(self._mapping_dir(mapping_uuid), ignore_errors=True)

    def known_mappings(self) -> list[str]:
        if not self.root.exists():
            return []
        return [path.name for path in self.root.iterdir() if path.is_dir()]
