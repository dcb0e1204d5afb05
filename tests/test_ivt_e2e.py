"""IVT with real DVC (acceptance of the IVT issue): `dvc repro ivt/dvc.yaml` on a copy of the session's one
build (a plain `dvc repro` builds ViPER only, so the copy has the `models` stage IVT reuses and nothing of IVT).

The report holds four methods x three step choices with the oracle apart; the SFT model answers differently
from the base; a second repro runs nothing; a param reruns only what reads it; a paper-scale source whose files
are missing stops with a message, not a traceback."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from viper.ivt.report import CHOICES, METHODS
from viper.ivt.run import read_trajectories
from viper.sandbox import copy_repo, env, ran_stages, run, set_params

pytestmark = pytest.mark.e2e


IVT_STAGES = {"ivt_data", "ivt_traces", "ivt_sft", "ivt_grpo", "ivt_eval@base", "ivt_eval@sft", "ivt_eval@grpo",
              "ivt_report"}


@pytest.fixture(scope="module")
def built(built_repo, tmp_path_factory) -> dict:
    r = copy_repo(built_repo["path"], tmp_path_factory.mktemp("ivt") / "repo")
    # smaller than the default (timed on its own: README "IVT"), to keep the suite's time: half the scenes,
    # fewer sampled step-0 predictions and GRPO updates; steps, the methods and every stage stay the same
    set_params(r, {"ivt.n": 48, "ivt.traces.samples": 2, "ivt.grpo.steps": 6})
    run(["git", "commit", "-qam", "smaller IVT"], r)
    out = run(["dvc", "repro", "ivt/dvc.yaml"], r)
    run(["git", "add", "-A"], r)
    run(["git", "commit", "-qm", "ivt build"], r)
    return {"path": r, "first": out}


@pytest.fixture()
def repo(built):
    return built["path"]


def test_ivt_builds_on_the_shared_models_stage(built):
    assert ran_stages(built["first"]) == IVT_STAGES  # `models` was built by the ViPER build: reused


def test_report_has_every_method_at_every_step_choice_and_the_oracle_apart(repo):
    md = (repo / "reports" / "ivt.md").read_text()
    for _, label, _ in METHODS:
        for _, choice in CHOICES:
            assert re.search(rf"^\| {re.escape(label)} \| {choice} \|( [\d.]+ \|){{5}}$", md, re.M), (label, choice)
    assert "Diagnostic only: the oracle-best step (needs the label)" in md
    assert "| SFT + IVT | 82.0 | 74.1 | – | 48.3 | 0.743 |" in md  # the paper's figures beside ours
    result = json.loads((repo / "reports" / "ivt.json").read_text())
    assert result["op"] == ">=" and result["steps"] == 2
    assert set(result["methods"]) == {"base", "naive", "sft", "grpo"}
    for scores in result["methods"].values():
        assert {"step0", "last", "stop", "oracle"} <= set(scores)
        assert set(scores["step0"]) == {"acc@0.5", "acc@0.7", "acc@0.75", "acc@0.9", "miou"}
    page = (repo / "reports" / "ivt.html").read_text()
    examples = sorted((repo / "reports" / "ivt" / "examples").glob("*.png"))
    assert len(examples) == 4 and page.count("<figure>") == 4 and page.count("data:image/png") == 4
    assert all(f"]({'ivt/examples/' + e.name})" in md for e in examples)
    assert '<svg class="plot"' in page and "Diagnostic only" in page


def test_failures_are_counted_with_their_reason_never_raised(repo):
    base = read_trajectories(repo / "data" / "ivt" / "eval" / "base")
    result = json.loads((repo / "reports" / "ivt.json").read_text())["methods"]["naive"]
    failed = [t for t in base if t["failure"]]
    assert sum(result["failures"].values()) == len(failed)
    for t in failed:
        assert f"{t['failure']}@{t['failed_at']}" in result["failures"]


def test_sft_checkpoint_answers_differently_from_the_base(repo):
    base = {t["id"]: t["replies"] for t in read_trajectories(repo / "data" / "ivt" / "eval" / "base")}
    sft = {t["id"]: t["replies"] for t in read_trajectories(repo / "data" / "ivt" / "eval" / "sft")}
    assert base.keys() == sft.keys()
    assert sum(base[k][0] != sft[k][0] for k in base) >= len(base) // 2
    traces = json.loads((repo / "reports" / "ivt" / "metrics" / "traces.json").read_text())
    sft_metrics = json.loads((repo / "reports" / "ivt" / "metrics" / "sft.json").read_text())
    assert traces["examples"] > 0 and sft_metrics["examples"] == traces["examples"]


def test_second_repro_runs_nothing(repo):
    assert ran_stages(run(["dvc", "repro", "ivt/dvc.yaml"], repo)) == set()


def test_steps_change_what_reads_them_and_nothing_upstream(repo):
    set_params(repo, {"ivt.steps": 3})
    try:
        changed = set(re.findall(r"^(?:ivt/dvc\.yaml:)?([\w@]+):", run(["dvc", "status", "ivt/dvc.yaml"], repo), re.M))
    finally:
        run(["git", "checkout", "params.yaml"], repo)
    # ivt_sft reads no step count itself: it reruns only if the traces it trains on change
    assert changed == {"ivt_traces", "ivt_grpo", "ivt_eval@base", "ivt_eval@sft", "ivt_eval@grpo", "ivt_report"}


def test_a_scoring_param_reruns_only_the_report(repo):
    # an experiment of the IVT pipeline names it (without a target `dvc exp run` reproduces dvc.yaml: ViPER)
    out = run(["dvc", "exp", "run", "ivt/dvc.yaml", "-S", "ivt.stop_iou=0.5", "-S", "ivt.acc_op='>'"], repo)
    assert ran_stages(out) == {"ivt_report"}
    result = json.loads((repo / "reports" / "ivt.json").read_text())
    assert result["op"] == ">" and result["stop_iou"] == 0.5
    assert "Acc@tau counts IoU > tau" in (repo / "reports" / "ivt.md").read_text()


def test_paper_source_without_its_files_stops_with_where_to_put_them(repo):
    set_params(repo, {"ivt.source": "paper", "ivt.sources": [
        {"name": "refcocog", "file": "data/ivt_sources/refcocog.tsv", "count": None, "box_format": "xywh"}]})
    try:
        proc = subprocess.run(["dvc", "repro", "ivt/dvc.yaml:ivt_data"], cwd=repo, env=env(), capture_output=True,
                              text=True)
    finally:
        run(["git", "checkout", "params.yaml"], repo)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "error: refcocog: data/ivt_sources/refcocog.tsv is missing" in out
