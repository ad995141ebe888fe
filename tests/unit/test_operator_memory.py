"""The operator caps glibc's malloc arenas before its threads start, unless the environment decides."""

from __future__ import annotations

import platform

import pytest

from ddbbridge.kopf_app.memory import M_ARENA_MAX, limit_malloc_arenas


class FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return self.answer


def test_arenas_are_capped_through_mallopt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    libc = FakeLibc()
    assert limit_malloc_arenas(2, libc=libc) is True
    assert libc.calls == [(M_ARENA_MAX, 2)]
    assert limit_malloc_arenas(2, libc=FakeLibc(answer=0)) is False  # refused by the C library


def test_a_value_in_the_environment_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    libc = FakeLibc()
    assert limit_malloc_arenas(2, libc=libc) is False
    assert libc.calls == []


def test_a_c_library_without_mallopt_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2, libc=object()) is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
