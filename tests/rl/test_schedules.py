"""Which examples and how many optimizer steps each RL schedule gives each stage (the paper's ablations).

The end-to-end experiment (tests/test_pipeline_e2e.py) runs one schedule through DVC; this covers all four
on a real Viper10K directory read through the real reader."""

from __future__ import annotations

import pytest

from tests.store.viper10k_data import make_dataset
from viper.config import load_params
from viper.rl.stages import plan
from viper.store.viper10k import Viper10K


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Viper10K:
    return Viper10K(make_dataset(tmp_path_factory.mktemp("v") / "viper10k", n_caption=5, n_operation=3))


def rl_params(root, order: str):
    return load_params(root / "params.yaml").rl.model_copy(
        update={"stage_order": order, "stage1_steps": 7, "stage2_steps": 3})


def keys(examples: list[dict]) -> list[tuple[str, str]]:
    return [(e["task"], e["key"]) for e in examples]


CAPTIONS = [("caption_refining", f"img{i}") for i in range(5)]
OPERATIONS = [("visual_operation", f"edit{i}") for i in range(3)]


def test_two_stage_trains_captions_then_operations_each_with_its_own_budget(root, dataset):
    rl = rl_params(root, "two_stage")
    (one, steps1), (two, steps2) = plan(1, rl, dataset, seed=0), plan(2, rl, dataset, seed=0)
    assert (keys(one), steps1) == (CAPTIONS, 7)
    assert (keys(two), steps2) == (OPERATIONS, 3)


@pytest.mark.parametrize("order, expected", [("caption_only", CAPTIONS), ("operation_only", OPERATIONS)])
def test_single_task_ablations_spend_the_whole_budget_in_stage1(root, dataset, order, expected):
    rl = rl_params(root, order)
    examples, steps = plan(1, rl, dataset, seed=0)
    assert (keys(examples), steps) == (expected, 10)
    assert plan(2, rl, dataset, seed=0) == ([], 0)  # stage 2 passes stage 1's checkpoint through


def test_mixed_interleaves_both_tasks_in_a_seeded_order(root, dataset):
    rl = rl_params(root, "mixed")
    examples, steps = plan(1, rl, dataset, seed=0)
    assert steps == 10 and plan(2, rl, dataset, seed=0) == ([], 0)
    assert sorted(keys(examples)) == sorted(CAPTIONS + OPERATIONS)
    assert keys(examples) != CAPTIONS + OPERATIONS  # shuffled, not concatenated
    assert keys(plan(1, rl, dataset, seed=0)[0]) == keys(examples)
    assert keys(plan(1, rl, dataset, seed=1)[0]) != keys(examples)


def test_an_unknown_schedule_is_refused(root, dataset):
    rl = rl_params(root, "two_stage").model_copy(update={"stage_order": "three_stage"})
    with pytest.raises(ValueError, match="unknown rl.stage_order 'three_stage'"):
        plan(1, rl, dataset, seed=0)
