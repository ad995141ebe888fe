"""The runner-wide idle poll budget: few shards keep their own ceiling, many share a bounded rate."""

from __future__ import annotations

import pytest

from ddbbridge_dev.runner.poll_budget import IdlePollBudget


def test_few_shards_keep_their_own_ceiling() -> None:
    budget = IdlePollBudget(40.0)
    for _ in range(10):
        budget.join()
    assert budget.ceiling(1.0) == 1.0


def test_many_shards_share_the_budget() -> None:
    budget = IdlePollBudget(40.0)
    for _ in range(400):
        budget.join()
    assert budget.ceiling(1.0) == pytest.approx(10.0)  # 400 shards / 40 polls/s
    for _ in range(300):
        budget.leave()
    assert budget.shards == 100
    assert budget.ceiling(1.0) == pytest.approx(2.5)


def test_leaving_more_than_joined_never_goes_negative() -> None:
    budget = IdlePollBudget(10.0)
    budget.leave()
    assert budget.shards == 0
    assert budget.ceiling(0.2) == 0.2


def test_the_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        IdlePollBudget(0)
