"""The statistics benchmarks/learning.py reports: window means and a group bootstrap of their difference."""

import importlib.util

import numpy as np
import pytest


@pytest.fixture(scope="module")
def learning(root):
    spec = importlib.util.spec_from_file_location("learning", root / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(rewards_per_step: list[list[float]], g: int) -> np.ndarray:
    """Rows (step, group, format, correct, total) with one rollout batch per step, g completions per group."""
    rows, group = [], 0
    for step, rewards in enumerate(rewards_per_step):
        for i, r in enumerate(rewards):
            rows.append((step, group + i // g, 0.0, r, r))
        group += len(rewards) // g
    return np.array(rows)


def test_rising_reward_has_an_interval_above_zero(learning):
    rng = np.random.default_rng(0)
    steps = [list(rng.uniform(0, 0.2, 10)) for _ in range(4)] + [list(rng.uniform(0.3, 0.5, 10)) for _ in range(4)]
    s = learning.summarise(table(steps, 5), 4, steps=8, k=4, n_boot=500, seed=0)
    assert s["first"] == pytest.approx(np.mean(steps[:4])) and s["last"] == pytest.approx(np.mean(steps[4:]))
    assert s["delta"] == pytest.approx(s["last"] - s["first"]) and s["ci95"][0] > 0
    assert (s["groups_first"], s["groups_last"]) == (8, 8)


def test_flat_reward_has_an_interval_around_zero(learning):
    rng = np.random.default_rng(1)
    steps = [list(rng.uniform(0, 1, 10)) for _ in range(8)]
    s = learning.summarise(table(steps, 5), 4, steps=8, k=4, n_boot=500, seed=0)
    assert s["ci95"][0] < 0 < s["ci95"][1]


def test_the_bootstrap_resamples_whole_groups(learning):
    # each group is internally identical: resampling groups (not completions) keeps per-group totals intact,
    # so with one group per window the interval collapses to the single difference
    first, last = [np.array([0.1] * 5)], [np.array([0.4] * 5)]
    assert learning.bootstrap_delta(first, last, 200, 0) == pytest.approx((0.3, 0.3))
