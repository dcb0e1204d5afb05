"""The whole DAG with real DVC in a temporary git repository (acceptance of the pipeline issue).

The session's one build (`built_repo` in conftest.py: the first `dvc repro`) is copied and shared by the
checks: no-op status and repro on the copy, then experiments that must rerun only the stages downstream
of the param they change.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from viper.rl.curves import read_curves
from viper.sandbox import copy_repo, env, metrics, ran_stages, run, set_params

pytestmark = pytest.mark.e2e

SYNTHESIS = {"models", "seeds", "captions", "reconstructions", "refinements", "edit_plans", "edited_pairs",
             "viper10k"}
ALL_STAGES = SYNTHESIS | {"cold_start", "rl_stage1", "rl_stage2", "bench_data", "predictions", "benchmark"}


@pytest.fixture(scope="module")
def repo(built_repo, tmp_path_factory) -> dict:
    repo = copy_repo(built_repo["path"], tmp_path_factory.mktemp("pipeline") / "repo")
    first = built_repo["output"]
    # a copy in another directory is as up to date as its source. The target, as `dvc repro` has it: without
    # one, `dvc status` would also list ivt/dvc.yaml, a pipeline of its own that this build does not run
    status = run(["dvc", "status", "--with-deps", "dvc.yaml"], repo)
    second = run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first build"], repo)
    return {"path": repo, "first": first, "status": status, "second": second}


def test_first_repro_runs_every_stage(repo):
    assert ran_stages(repo["first"]) == ALL_STAGES


def test_outputs_exist_in_documented_formats(repo):
    r = repo["path"]
    assert json.loads((r / "data/models/manifest.json").read_text()).keys() == {"vlm", "t2i", "edit", "embed", "clip"}
    for shard_dir in ("data/seeds", "data/reconstructions", "data/edited_pairs", "data/viper10k/caption_refining",
                      "data/viper10k/visual_operation"):
        shards = sorted((r / shard_dir).glob("*.tar"))
        assert shards and all(s.stat().st_size > 0 for s in shards), shard_dir
    for table in ("data/captions/captions.parquet", "data/refinements/refinements.parquet",
                  "data/edit_plans/edit_plans.parquet"):
        assert len(pd.read_parquet(r / table)) > 0, table
    manifest = json.loads((r / "data/viper10k/manifest.json").read_text())
    assert manifest["subsets"]["caption_refining"]["count"] > 0
    assert manifest["subsets"]["visual_operation"]["count"] > 0
    from viper.store.io import sha256_file
    for name, sub in manifest["subsets"].items():
        for shard in sub["shards"]:
            assert sha256_file(r / "data/viper10k" / name / shard["file"]) == shard["sha256"]
    report = (r / "reports/benchmark.md").read_text()
    bench = json.loads((r / "reports/benchmark.json").read_text())
    assert {"base", "stage1", "stage2"} <= bench.keys()
    seven = {"MMStar", "RealWorldQA", "MME-RealWorld", "BLINK", "Mantis-Eval", "HallusionBench", "CRPE_RELATION"}
    assert all(seven <= bench[m].keys() for m in ("base", "stage1", "stage2"))  # every scoring path ran
    assert {"HallusionBench/aAcc", "MMStar/math"} <= bench["stage2"].keys()
    assert f"{bench['stage2']['Overall']:.1f}" in report
    assert "<svg" in (r / "reports/benchmark.html").read_text()
    assert len(list((r / "data/predictions").glob("*.parquet"))) == 3 * 7


def test_second_repro_is_a_no_op(repo):
    assert "Data and pipelines are up to date" in repo["status"]
    assert ran_stages(repo["second"]) == set()


def test_stage2_checkpoint_loads_and_differs(repo):
    import torch
    from transformers import AutoModelForImageTextToText

    r = repo["path"]
    models = {name: AutoModelForImageTextToText.from_pretrained(r / path, use_safetensors=True)
              for name, path in (("base", "data/models/vlm"), ("stage1", "data/checkpoints/stage1"),
                                 ("stage2", "data/checkpoints/stage2"))}
    sd = {k: m.state_dict() for k, m in models.items()}

    def differs(a: str, b: str) -> bool:
        return any(not torch.equal(sd[a][k], sd[b][k]) for k in sd[a])

    params = yaml.safe_load((r / "params.yaml").read_text())["rl"]
    plots = {}
    for stage, steps in (("rl_stage1", params["stage1_steps"]), ("rl_stage2", params["stage2_steps"])):
        plot = plots[stage] = pd.DataFrame(read_curves(r / f"reports/curves/{stage}"))
        assert list(plot["step"]) == list(range(1, steps + 1))
        assert plot[["reward", "format", "correct"]].notna().all().all()
    # GRPO moves the weights exactly when some group's rewards differ (group-normalised advantages are
    # otherwise all zero and so is the loss): a stage that saw no reward variance must not have moved.
    # Whether the tiny random policy ever scores depends on its data; stage 2 does here.
    for stage, (after, before) in (("rl_stage1", ("stage1", "base")), ("rl_stage2", ("stage2", "stage1"))):
        assert differs(after, before) == bool((plots[stage]["reward_std"] > 0).any()), stage
    assert (plots["rl_stage2"]["reward_std"] > 0).any() and differs("stage2", "base")


def test_training_changes_answers_on_every_benchmark(repo):
    """The default RL settings move the tiny policy enough that its greedy replies change somewhere in every
    benchmark (at the paper's lr 1e-6 they did not)."""
    r = repo["path"]
    names = yaml.safe_load((r / "params.yaml").read_text())["benchmark"]["names"]
    for name in names:
        base = pd.read_parquet(r / f"data/predictions/base__{name}.parquet").set_index("index")["prediction"]
        final = pd.read_parquet(r / f"data/predictions/stage2__{name}.parquet").set_index("index")["prediction"]
        assert list(base.index) == list(final.index), name
        assert (base != final).any(), f"{name}: every stage-2 reply equals the base model's"


# Experiments train 2 + 2 steps: what they check is which stages rerun, not learning, which the first repro
# (the default 60 + 20 steps) and benchmarks/learning.py show.
SHORT_RL = ["-S", "rl.stage1_steps=2", "-S", "rl.stage2_steps=2"]


def test_experiments_rerun_only_downstream_stages(repo):
    """A synthesis param reruns the synthesis step it reaches and everything downstream. The RL schedule and the
    cold start are checked the same way on `viper paper`'s experiments (tests/test_paper_e2e.py: which stages
    each reran, schedule and step counts); which examples each schedule trains on is checked without DVC in
    tests/rl/test_schedules.py."""
    r = repo["path"]
    guided = run(["dvc", "exp", "run", "-n", "guidance", "-S", "edited_pairs.guidance_scale=7.5", *SHORT_RL], r)
    assert ran_stages(guided) == {"edited_pairs", "viper10k", "cold_start", "rl_stage1", "rl_stage2",
                                  "predictions", "benchmark"}

    shown = json.loads(run(["dvc", "exp", "show", "--json"], r))
    found = {}
    for baseline in shown:
        rows = [baseline] + [e for exp in baseline.get("experiments") or [] for e in exp.get("revs", [])]
        for row in rows:
            data = row.get("data") or {}
            name = row.get("name") or data.get("name") or row.get("rev")
            bench = (data.get("metrics") or {}).get("reports/benchmark.json", {}).get("data")
            if bench:
                found[name] = bench
    assert "guidance" in found
    assert all({"base", "stage1", "stage2"} <= m.keys() for m in found.values())
    table = run(["dvc", "exp", "show", "--no-pager", "--md"], r)
    assert "guidance" in table and "stage2.Overall" in table


def test_killed_rl_stage_resumes_from_its_last_checkpoint(repo):
    import os
    import signal
    import subprocess
    import time

    r = repo["path"]
    set_params(r, {"rl.stage_order": "two_stage", "rl.stage1_steps": 6})
    proc = subprocess.Popen(["dvc", "repro", "rl_stage1"], cwd=r, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((r / ".viper_cache" / "rl").glob("*/checkpoint-[2-9]")) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # A kill can land mid-save: only checkpoints whose trainer_state.json was written are complete.
    def readable(p) -> bool:
        try:
            return bool(json.loads(p.read_text()))
        except ValueError:
            return False

    complete = sorted(int(p.parent.name.split("-")[1])
                      for p in (r / ".viper_cache" / "rl").glob("*/checkpoint-*/trainer_state.json") if readable(p))
    assert complete and complete[-1] < 6, f"the kill came too late or too early: complete checkpoints {complete}"

    run(["dvc", "repro", "rl_stage1"], r)
    m = metrics(r, "rl_stage1")
    assert m["resumed_from_step"] == complete[-1] and m["steps"] == 6
    # the curves replay the steps before the kill from the restored trainer state: each step once
    assert [row["step"] for row in read_curves(r / "reports/curves/rl_stage1")] == [1, 2, 3, 4, 5, 6]
    tsv = (r / "reports/curves/rl_stage1/plots/metrics/reward.tsv").read_text().split()
    assert tsv[:2] == ["step", "reward"] and len(tsv) == 2 + 2 * 6
    assert not list((r / ".viper_cache" / "rl").glob("*/checkpoint-*"))  # cleaned up after success
