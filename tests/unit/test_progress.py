"""The progress bar: plain periodic lines off a terminal, in-place redraws on one."""

from __future__ import annotations

import io
import threading

from ddbbridge.progress import ProgressBar, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_tty_prints_a_line_per_interval_and_a_final_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = ProgressBar("load cn", 1000, unit="writes", stream=out, interval=5.0, clock=clock)
    for _ in range(10):  # 100 writes in the first second: no line yet
        clock.now += 0.1
        bar.advance(10)
    assert out.getvalue() == ""
    clock.now += 4.0  # 5 s in
    bar.advance(150)  # 250 done at 50 writes/s: 750 left -> ETA 15 s
    clock.now += 1.0
    bar.advance(10)  # within the interval: no line
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert lines == [
        "load cn 250/1000 writes (25%) 50.0/s ETA 0:15",
        "load cn 260/1000 writes (26%) 43.3/s ETA 0:17",
    ]
    assert "\r" not in out.getvalue()


def test_no_duplicate_final_line_when_the_last_line_is_current() -> None:
    clock, out = FakeClock(), io.StringIO()
    bar = ProgressBar("verify", 10, stream=out, interval=1.0, clock=clock)
    clock.now += 2.0
    bar.advance(10)
    bar.close()
    assert out.getvalue().splitlines() == ["verify 10/10 items (100%) 5.0/s elapsed 0:02"]


def test_unknown_total_shows_count_rate_and_elapsed() -> None:
    clock, out = FakeClock(), io.StringIO()
    with ProgressBar("verify", None, stream=out, clock=clock) as bar:
        clock.now += 2.0
        bar.advance(40)
    assert out.getvalue().splitlines() == ["verify 40 items 20.0/s elapsed 0:02"]


def test_terminal_redraws_in_place_with_a_bar() -> None:
    clock, out = FakeClock(), FakeTerminal()
    bar = ProgressBar("load", 100, stream=out, clock=clock)
    clock.now += 1.0
    bar.advance(50)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\rload [" + "#" * 12 + "." * 12 + "] 50/100 items (50%) 50.0/s ETA 0:01")
    assert text.endswith("\n") and text.count("\n") == 1


def test_disabled_bar_writes_nothing() -> None:
    out = io.StringIO()
    with ProgressBar("x", 10, stream=out, enabled=False, interval=0.0) as bar:
        bar.advance(10)
    assert out.getvalue() == ""


def test_threads_advance_without_losing_counts() -> None:
    bar = ProgressBar("x", None, stream=io.StringIO(), interval=0.0)

    def work() -> None:
        for _ in range(1000):
            bar.advance()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bar.count == 4000


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(-3) == "0:00"
