"""Closed-loop rounds with real DVC (acceptance of the rounds issue), on a copy of the session's one build.

One round, then a second: round 2's synthesis runs on round 1's stage-2 checkpoint, growing the loop reruns
only the new round's stages and the report, and changing loop.data reruns only the stages that read it and
what their outputs feed. RL is shortened (2 + 2 steps) to keep the module at a few minutes.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from viper.sandbox import copy_repo, env, ran_stages, run

pytestmark = pytest.mark.e2e

SHORT_RL = ["-S", "rl.stage1_steps=2", "-S", "rl.stage2_steps=2"]
PER_ROUND = ["round_seeds", "round_captions", "round_reconstructions", "round_refinements", "round_edit_plans",
             "round_edited_pairs", "round_viper10k", "round_train_set", "round_rl_stage1", "round_rl_stage2",
             "round_predictions"]


def stages_of(k: int) -> set[str]:
    return {f"{g}@{k}" for g in PER_ROUND} | {f"round_metrics@{k}"}


@pytest.fixture(scope="module")
def loop(built_repo, tmp_path_factory) -> dict:
    r = copy_repo(built_repo["path"], tmp_path_factory.mktemp("rounds") / "repo")
    run(["git", "add", "-A"], r)
    run(["git", "commit", "-qm", "first build"], r)
    original = (r / "params.yaml").read_text()
    # The number alone: DVC cannot unroll it, and every stage says what to run instead.
    alone = subprocess.run(["dvc", "exp", "run", "-S", "loop.rounds=1"], cwd=r, env=env(), capture_output=True,
                           text=True)
    run(["git", "checkout", "params.yaml"], r)
    run(["viper", "loop", "1"], r)
    one = run(["dvc", "exp", "run", "-n", "round1", *SHORT_RL], r)
    run(["viper", "loop", "2"], r)
    two = run(["dvc", "exp", "run", "-n", "round2"], r)
    return {"path": r, "original": original, "alone": alone, "one": one, "two": two}


def test_a_number_alone_fails_naming_the_command(loop):
    assert loop["alone"].returncode != 0
    assert "viper loop 1" in loop["alone"].stdout + loop["alone"].stderr


def test_first_round_runs_its_stages_and_measures_round_zero(loop):
    ran = ran_stages(loop["one"])
    assert stages_of(1) | {"round_metrics@0", "benchmark"} <= ran
    assert not any("@2" in s for s in ran)


def test_second_round_runs_only_its_stages_and_the_report(loop):
    assert ran_stages(loop["two"]) == stages_of(2) | {"benchmark"}


def test_round_two_synthesises_with_round_one_model(loop):
    r = loop["path"]
    prev = "data/rounds/1/checkpoints/stage2"
    for step in ("captions", "refinements", "edit_plans"):
        m = json.loads((r / f"reports/rounds/2/metrics/{step}.json").read_text())
        assert m["vlm"]["path"] == prev and m["vlm"]["id"] == "checkpoint", step
        assert m["cache_misses"] > 0, step  # a new model: nothing of round 1 is reused
    judge = json.loads((r / "reports/rounds/2/metrics/viper10k.json").read_text())["judge"]
    assert judge["vlm"]["path"] == prev
    manifest = json.loads((r / "data/rounds/2/viper10k/manifest.json").read_text())
    assert manifest["models"]["vlm"]["path"] == prev
    assert manifest["models"]["vlm"]["revision"] == judge["vlm"]["revision"]
    one = json.loads((r / "data/rounds/1/viper10k/manifest.json").read_text())["models"]["vlm"]
    assert one["path"] == "data/checkpoints/stage2" and one["revision"] != judge["vlm"]["revision"]


def test_rounds_train_on_accumulated_data_with_fresh_seeds(loop):
    r = loop["path"]
    seeds = [json.loads((r / f"reports/rounds/{k}/metrics/seeds.json").read_text()) for k in (1, 2)]
    assert all(s["fresh"] == 4 and s["kept_from_round0"] == 12 for s in seeds)  # 25 % of 16
    train = [json.loads((r / f"reports/rounds/{k}/metrics/train_set.json").read_text()) for k in (1, 2)]
    own = [json.loads((r / f"data/rounds/{k}/viper10k/manifest.json").read_text())["subsets"] for k in (1, 2)]
    base = json.loads((r / "data/viper10k/manifest.json").read_text())["subsets"]
    for subset in ("caption_refining", "visual_operation"):
        assert train[0][subset] == base[subset]["count"] + own[0][subset]["count"]
        assert train[1][subset] == train[0][subset] + own[1][subset]["count"]
    assert train[1]["sources"] == ["data/rounds/1/train", "data/rounds/2/viper10k"]


def test_report_lays_rounds_side_by_side(loop):
    r = loop["path"]
    rounds = [json.loads((r / f"reports/rounds/{k}/round.json").read_text()) for k in range(3)]
    for k, m in enumerate(rounds):
        assert m["round"] == k and 0 <= m["overall"] <= 100
        assert {"caption_distinct_1", "caption_distinct_2", "instruction_distinct_2", "caption_spread",
                "caption_length"} <= m["diversity"].keys()
        assert 0 <= m["diversity"]["caption_spread"] <= 2 and m["rl"]["rl_stage2"]["reward_mean"] is not None
        assert sum(m["edit_categories"].values()) == m["edits"]
    bench = json.loads((r / "reports/benchmark.json").read_text())
    assert bench["rounds"]["overall"] == [m["overall"] for m in rounds]
    assert bench["stage2"]["Overall"] == pytest.approx(rounds[0]["overall"], abs=1e-3)  # one scorer
    md = (r / "reports/benchmark.md").read_text()
    assert "## Closed-loop rounds" in md and "| 2 |" in md
    html = (r / "reports/benchmark.html").read_text()
    assert "Closed-loop rounds" in html and "per round (x: round 0..N)" in html
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], r)
    assert "reports/rounds/2/round.json" in shown or "caption_spread" in shown


def test_viper_status_lists_round_stages(loop):
    rows = json.loads(run(["viper", "status", "--json"], loop["path"]))
    state = {row["stage"]: row["state"] for row in rows}
    assert all(state[s] == "done" for s in stages_of(1) | stages_of(2))
    assert next(row for row in rows if row["stage"] == "round_captions@2")["in"] == 16


def test_changing_loop_data_reruns_its_readers_and_what_they_feed(loop):
    r = loop["path"]
    ran = ran_stages(run(["dvc", "exp", "run", "-n", "window", "-S", "loop.data=window"], r))
    assert {"round_train_set@1", "round_train_set@2"} <= ran
    # Round 1 trains on rounds 0 + 1 under window and accumulate alike: same content, nothing after it reruns;
    # round 2 trained on rounds 0-2 and now on 1-2: its RL, predictions and measurements rerun, and the report.
    assert ran == {"round_train_set@1", "round_train_set@2", "round_rl_stage1@2", "round_rl_stage2@2",
                   "round_predictions@2", "round_metrics@2", "benchmark"}


def test_zero_rounds_gives_back_the_single_cycle(loop):
    r = loop["path"]
    run(["viper", "loop", "0"], r)
    assert yaml.safe_load((r / "params.yaml").read_text())["loop"]["rounds"] == 0
    out = run(["dvc", "repro"], r)
    assert ran_stages(out) == {"benchmark"}
    assert "Closed-loop rounds" not in (r / "reports/benchmark.md").read_text()
    assert "rounds" not in json.loads((r / "reports/benchmark.json").read_text())
