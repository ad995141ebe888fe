"""The control-plane binary is rebuilt exactly when its Go sources change, and is found where cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddbbridge_dev import kube


@pytest.fixture
def root(tmp_path: Path) -> Path:
    source = tmp_path / "tools" / "kube"
    (source / "sub").mkdir(parents=True)
    (source / "go.mod").write_text("module example\n\nrequire k8s.io/kubernetes v1.32.13\n")
    (source / "go.sum").write_text("k8s.io/kubernetes v1.32.13 h1:abc=\n")
    (source / "main.go").write_text("package main\n")
    (source / "sub" / "helper.go").write_text("package sub\n")
    (source / "README.md").write_text("notes\n")
    return tmp_path


@pytest.mark.parametrize("changed", ["go.mod", "go.sum", "main.go", "sub/helper.go"])
def test_a_change_to_a_go_source_changes_the_cache_key(root: Path, changed: str) -> None:
    before = kube.binary_path(root)
    path = root / "tools" / "kube" / changed
    path.write_text(path.read_text() + "// changed\n")
    after = kube.binary_path(root)
    assert after != before
    assert after.parent.parent == root / ".cache" / "kube"


def test_a_new_go_file_changes_the_cache_key(root: Path) -> None:
    before = kube.source_hash(root)
    (root / "tools" / "kube" / "extra.go").write_text("package main\n")
    assert kube.source_hash(root) != before


def test_other_files_do_not_change_the_cache_key(root: Path) -> None:
    before = kube.source_hash(root)
    (root / "tools" / "kube" / "README.md").write_text("other notes\n")
    (root / "tools" / "kube" / "notes.txt").write_text("scratch\n")
    (root / "operator").mkdir()
    (root / "operator" / "anything.py").write_text("x = 1\n")
    assert kube.source_hash(root) == before


def test_a_cached_binary_is_used_without_building(root: Path) -> None:
    cached = kube.binary_path(root)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"binary")
    messages: list[str] = []
    assert kube.ensure_binary(messages.append, root) == cached
    assert messages == []  # the build reports progress; nothing was built


def test_the_release_version_comes_from_go_mod_and_is_stamped(root: Path) -> None:
    version = kube.kubernetes_version(root)
    assert version == "v1.32.13"
    flags = kube._version_ldflags(version)
    assert "-X k8s.io/component-base/version.gitVersion=v1.32.13" in flags
    assert "-X k8s.io/component-base/version.gitMinor=32" in flags


def test_the_project_pins_a_kubernetes_1_32_release() -> None:
    # kubectl on these machines is 1.32; the apiserver must stay within one minor of it.
    assert kube.kubernetes_version().startswith("v1.32.")
