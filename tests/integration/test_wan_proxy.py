"""The WAN delay proxy: at least the configured round trip per call, and cut / restore."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.fixtures.regions import Regions, WanLink
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _timed_call(client: object) -> float:
    began = time.monotonic()
    client.list_tables()  # type: ignore[attr-defined]
    return time.monotonic() - began


def test_every_call_through_the_proxy_takes_at_least_the_round_trip(regions: Regions, wan: WanLink) -> None:
    delayed = regions.cn.client("dynamodb", via=wan)
    delayed.list_tables()  # first call pays for botocore's lazy set-up, not measured
    # Lower bound only: request and response each wait rtt/2 in the proxy, whatever else is slow.
    assert min(_timed_call(delayed) for _ in range(5)) >= wan.rtt_ms / 1000.0

    # Concurrent calls each still see the delay and all of them complete (connections run side by side).
    clients = [regions.sg.client("dynamodb", via=wan) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        durations = list(pool.map(_timed_call, clients))
    assert min(durations) >= wan.rtt_ms / 1000.0


def test_wan_cut_makes_calls_fail_until_restored(regions: Regions, wan: WanLink) -> None:
    delayed = regions.sg.client("dynamodb", via=wan, retries=1, connect_timeout=2, read_timeout=5)
    direct = regions.sg.client("dynamodb", retries=1)
    delayed.list_tables()
    try:
        assert wan.cut()["cut"] is True
        for _ in range(2):
            with pytest.raises((BotoCoreError, ClientError)):
                delayed.list_tables()
        direct.list_tables()  # only the cross-region path is cut
    finally:
        wan.restore()
    wait_for(lambda: delayed.list_tables() is not None, 10, "calls through the restored WAN link")
