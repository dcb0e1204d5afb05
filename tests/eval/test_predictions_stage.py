"""The real predictions stage script with the tiny VLM, killed mid-run (SIGKILL), resumed, compared with an
uninterrupted run, and rerun with every reply cached (no model loaded)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from viper.eval.generate import TINY_GENERATORS
from viper.sandbox import add_evaluated_models, env, make_repo

pytestmark = pytest.mark.e2e

NAMES = ["MME-RealWorld", "BLINK"]
ROWS, BATCH = 8, 2
TOTAL = 3 * len(NAMES) * ROWS  # base, stage1, stage2 (the cold start passed its input through)


def cached(cache_dir: Path) -> int:
    import sqlite3

    db = cache_dir / "items.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM items WHERE step = 'predictions'").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


@pytest.fixture
def repo(tmp_path, tiny_vlm_dir) -> Path:
    repo = make_repo(tmp_path / "repo", {"benchmark.names": NAMES, "benchmark.batch_size": BATCH,
                                          "benchmark.max_new_tokens": 8})
    for name in NAMES:
        TINY_GENERATORS[name](repo / "data/bench_tiny" / f"{name}.tsv", ROWS, 0)
    add_evaluated_models(repo, tiny_vlm_dir)
    for stage in ("stage1", "stage2"):  # same weights, different directories: keys differ by content
        (repo / "data/checkpoints" / stage / "trainer_note.txt").write_text(stage)
    return repo


def stage_cmd(out: str, metrics: str) -> list[str]:
    return [sys.executable, "stages/predictions.py", "--data", "data/bench_tiny", "--models", "data/models",
            "--cold_start", "data/checkpoints/cold_start", "--stage1", "data/checkpoints/stage1",
            "--stage2", "data/checkpoints/stage2", "--out", out, "--metrics", metrics]


def run_stage(repo: Path, out: str, metrics: str, cache: Path) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(stage_cmd(out, metrics), cwd=repo, env={**env(), "VIPER_CACHE_DIR": str(cache)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    m = json.loads((repo / metrics).read_text())
    m["_wall"] = time.perf_counter() - start
    return m


def total(m: dict, key: str) -> int:
    assert m[key] == sum(v[key] for v in m.values() if isinstance(v, dict))
    return m[key]


def test_killed_stage_resumes_matches_an_uninterrupted_run_and_reruns_without_a_model(repo, tmp_path):
    cache, clean_cache = tmp_path / "cache", tmp_path / "clean_cache"
    proc = subprocess.Popen(stage_cmd("data/predictions", "reports/metrics/predictions.json"), cwd=repo,
                            env={**env(), "VIPER_CACHE_DIR": str(cache)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while cached(cache) < 3 * BATCH and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = cached(cache)
    assert 3 * BATCH <= done_before < TOTAL, f"the kill came too late ({done_before} of {TOTAL} cached)"
    assert done_before % BATCH == 0  # whole batches are committed (ROWS is a multiple of BATCH)
    assert not (repo / "data/predictions").exists()  # outputs appear atomically or not at all

    resumed = run_stage(repo, "data/predictions", "reports/metrics/predictions.json", cache)
    assert total(resumed, "cache_hits") == done_before  # committed batches were not regenerated
    assert total(resumed, "cache_misses") == TOTAL - done_before
    for model in ("base", "stage1", "stage2"):
        assert resumed[model]["rows"] == len(NAMES) * ROWS and resumed[model]["backend"] == "transformers"
        assert resumed[model]["max_images"] == 3  # BLINK's tiny rows carry 2 or 3 images
        for name, b in resumed[model]["benchmarks"].items():
            assert b["model_calls"] == math.ceil(b["cache_misses"] / BATCH), (model, name)
    assert cached(cache) == TOTAL

    clean = run_stage(repo, "clean_predictions", "clean.json", clean_cache)
    assert total(clean, "cache_hits") == 0 and total(clean, "cache_misses") == TOTAL
    files = sorted(p.name for p in (repo / "data/predictions").iterdir())
    assert len(files) == 3 * len(NAMES)
    for f in files:
        assert (repo / "data/predictions" / f).read_bytes() == (repo / "clean_predictions" / f).read_bytes()

    warm = run_stage(repo, "warm_predictions", "warm.json", cache)
    assert total(warm, "cache_misses") == total(warm, "model_calls") == 0
    assert not any(v["model_loaded"] for v in warm.values() if isinstance(v, dict))
    for f in files:
        assert (repo / "warm_predictions" / f).read_bytes() == (repo / "data/predictions" / f).read_bytes()
    print(f"\nresumed run {resumed['_wall']:.1f}s, clean run {clean['_wall']:.1f}s, all-cached rerun "
          f"{warm['_wall']:.1f}s; {done_before} of {TOTAL} replies were committed before the kill")
