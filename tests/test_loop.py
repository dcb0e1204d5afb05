"""Closed-loop rounds without DVC runs: the tables `viper loop` writes, the guard that keeps them in step with
loop.rounds, which seeds a round keeps, and the measurements and flags of the report."""

import shutil

import numpy as np
import pytest
import yaml

from viper.cli import main as viper
from viper.config import ParamsError, load_params, parse_params, stage_declared_params
from viper.loop import (distinct_n, judge_acceptance, kept_seed_ids, mean_pairwise_similarity, round_flags,
                        unroll)


def test_round_k_reads_its_previous_round_and_keeps_its_names_as_n_grows():
    assert unroll(0, "data/viper10k") == {"rounds": {}, "measured": {}}
    two, three = unroll(2, "data/viper10k"), unroll(3, "data/viper10k")
    assert two["rounds"]["1"] == {"prev": "data", "prev_own": "data/viper10k", "prev_train": "data/viper10k"}
    assert two["rounds"]["2"] == {"prev": "data/rounds/1", "prev_own": "data/rounds/1/viper10k",
                                "prev_train": "data/rounds/1/train"}
    assert {k: three["rounds"][k] for k in ("1", "2")} == two["rounds"]  # rounds 1-2 unchanged: stay cached
    assert list(three["measured"]) == ["0", "1", "2", "3"]  # strings: DVC drops integer keys
    assert three["measured"]["0"] == {"own": "data/viper10k", "data": "data", "reports": "reports"}
    # a pulled dataset is round 0's data
    assert unroll(1, "data/pulled/v")["rounds"]["1"]["prev_own"] == "data/pulled/v"


def test_rounds_without_their_tables_fail_every_stage_naming_the_fix(root):
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["loop"]["rounds"] = 2  # what `dvc exp run -S loop.rounds=2` alone does
    with pytest.raises(ParamsError, match=r"loop.rounds is 2 but loop.unrolled describes 0 round\(s\).*viper loop 2"):
        parse_params(data)
    data["loop"]["unrolled"] = unroll(2, data["dataset"]["dir"])
    assert parse_params(data).loop.rounds == 2
    data["dataset"]["dir"] = "data/pulled/viper10k"  # the tables name round 0's data: stale now
    with pytest.raises(ParamsError, match="viper loop 2"):
        parse_params(data)


def test_viper_loop_rewrites_only_the_loop_keys_and_zero_restores_the_file(root, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    shutil.copy(root / "params.yaml", params)
    original = params.read_text()
    assert viper(["loop", "2", "--params", str(params)]) == 0
    assert "round_*@1, round_*@2" in capsys.readouterr().out
    changed = params.read_text()
    assert "# closed-loop rounds after round 0" in changed and "# shared by every VLM call" in changed  # comments kept
    p = load_params(params)
    assert p.loop.rounds == 2 and p.loop.unrolled == unroll(2, "data/viper10k")
    assert viper(["loop", "0", "--params", str(params)]) == 0
    assert params.read_text() == original
    assert viper(["loop", "-1", "--params", str(params)]) == 2


def test_round_stages_declare_what_their_scripts_read(root):
    """Round stages run round 0's scripts; the extra knobs they read are declared by their groups only."""
    assert "loop.init" in stage_declared_params("round_rl_stage1@3", root)
    assert "loop.init" not in stage_declared_params("rl_stage1", root)
    assert "loop.data" in stage_declared_params("round_train_set@1", root)
    assert stage_declared_params("round_captions@2", root) == stage_declared_params("captions", root)


def test_each_round_keeps_its_own_subset_of_round_zero_seeds():
    ids = [f"{i:016x}" for i in range(16)]
    assert kept_seed_ids(ids, 0.0, 0, 1) == ids
    one, two = kept_seed_ids(ids, 0.25, 0, 1), kept_seed_ids(ids, 0.25, 0, 2)
    assert len(one) == len(two) == 12 and one == sorted(one) and set(one) <= set(ids)
    assert one != two and one == kept_seed_ids(ids, 0.25, 0, 1)
    assert kept_seed_ids(ids, 1.0, 0, 1) == []


def test_diversity_measures():
    assert distinct_n(["a red ball", "a red ball"], 1) == 0.5
    assert distinct_n(["a red ball", "a blue cube"], 2) == 1.0
    assert distinct_n([], 2) == 0.0
    rng = np.random.default_rng(0)
    v = rng.normal(size=(7, 5))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    brute = (sims.sum() - np.trace(sims)) / (7 * 6)
    assert mean_pairwise_similarity(v) == pytest.approx(brute, abs=1e-4)
    assert mean_pairwise_similarity(np.ones((3, 1))) == 1.0  # identical captions: collapsed
    assert judge_acceptance([{"kept": True, "reason": ""}, {"kept": False, "reason": "judge_rejected"},
                             {"kept": False, "reason": "drifted"}]) == 0.5  # CLIP drops never reached the judge
    assert judge_acceptance([{"kept": False, "reason": "unchanged"}]) is None


def test_flags_name_a_falling_round_and_lost_diversity():
    def rnd(k, overall, spread):
        div = {"caption_distinct_1": 0.5, "caption_distinct_2": 0.8, "instruction_distinct_1": 0.5,
               "instruction_distinct_2": 0.8, "caption_spread": spread}
        return {"round": k, "overall": overall, "diversity": div}

    assert round_flags([rnd(0, 10.0, 0.5), rnd(1, 12.0, 0.47)], 0.1) == []  # 6 % less spread: within margin
    flags = round_flags([rnd(0, 10.0, 0.5), rnd(1, 12.0, 0.47), rnd(2, 11.0, 0.3)], 0.1)
    assert len(flags) == 2
    assert flags[0].startswith("round 2: Overall 11.00 < round 1's 12.00")
    assert flags[1].startswith("round 2: caption_spread fell 36%")
