"""Item cache behaviour through real DVC runs: resume after SIGKILL, incremental seeds."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from viper.sandbox import copy_repo, env, make_repo, metrics, run, set_params

pytestmark = pytest.mark.e2e

SYNTH = ["captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]


def cached(repo: Path, step: str) -> int:
    db = repo / ".viper_cache" / "items.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM items WHERE step = ?", (step,)).fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def test_killed_stage_resumes_and_matches_an_uninterrupted_run(tmp_path):
    params = {"seeds.n_synthetic": 48, "vlm.batch_size": 4, "captions.max_new_tokens": 64}
    killed = make_repo(tmp_path / "killed", params)
    clean = make_repo(tmp_path / "clean", params)
    for repo in (killed, clean):
        run(["dvc", "repro", "synthesis/dvc.yaml:seeds", "models"], repo)

    proc = subprocess.Popen(["dvc", "repro", "synthesis/dvc.yaml:captions"], cwd=killed, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while cached(killed, "captions") < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = cached(killed, "captions")
    assert 8 <= done_before < 48, f"the kill came too late ({done_before} of 48 cached)"
    assert not (killed / "data" / "captions").exists()  # outputs appear atomically or not at all

    run(["dvc", "repro", "synthesis/dvc.yaml:captions"], killed)
    resumed = metrics(killed, "captions")
    assert resumed["cache_hits"] == done_before
    assert resumed["cache_misses"] == resumed["attempts"] - done_before

    run(["dvc", "repro", "synthesis/dvc.yaml:captions"], clean)
    assert metrics(clean, "captions")["cache_hits"] == 0
    for name in ("captions.parquet", "rejects.parquet"):
        assert (killed / "data/captions" / name).read_bytes() == (clean / "data/captions" / name).read_bytes()


def test_new_seeds_cost_model_calls_only_for_themselves(built_repo, tmp_path):
    repo = copy_repo(built_repo["path"], tmp_path / "repo")  # built from the default 16 seeds
    before = {s: metrics(repo, s) for s in SYNTH}
    n = yaml.safe_load((repo / "params.yaml").read_text())["seeds"]["n_synthetic"]
    set_params(repo, {"seeds.n_synthetic": n + 3})  # the generator is sequential: n old scenes + 3 new
    run(["dvc", "repro", "synthesis/dvc.yaml:viper10k"], repo)
    after = {s: metrics(repo, s) for s in SYNTH}
    retries = 3  # vlm.max_retries + 1 attempts at most per item

    assert before["captions"]["items_in"] == n and after["captions"]["items_in"] == n + 3
    for step in ("captions", "reconstructions", "refinements", "edit_plans", "edited_pairs"):
        b, a = before[step], after[step]
        new_items = a["items_in"] - b["items_in"]
        assert 0 <= new_items <= 3, step
        assert a["cache_hits"] == b["cache_misses"], step        # every old call is served from the cache
        assert a["cache_misses"] <= new_items * retries, step    # calls only for the new items
        assert a["cache_misses"] >= new_items, step
    for part in ("clip_filter", "judge"):
        b, a = before["viper10k"][part], after["viper10k"][part]
        assert a["cache_hits"] == b["cache_misses"] and a["cache_misses"] <= 3 * retries, part
