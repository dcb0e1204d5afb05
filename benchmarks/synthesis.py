"""Synthesis throughput and item-cache benchmarks on the tiny world. Prints and saves figures.

    python benchmarks/synthesis.py [--seeds 64] [--out reports/benchmarks/synthesis.json]
    .venv-vllm/bin/python benchmarks/synthesis.py --backend vllm [--only backends]

Every figure comes from real `dvc repro` runs in throwaway copies of this repository (viper.sandbox),
each with its own empty item cache:
  1. cold run of the six synthesis stages: wall seconds and items/s per stage;
  2. warm rerun after deleting their outputs (forced, item cache kept): cost relative to cold;
  3. a kill at ~50% of the captions stage, then resume: calls made vs an uninterrupted run;
  4. 10% more seed images: calls made per stage relative to the cold run;
  5. batched vs one-at-a-time VLM generation (items/s);
  6. with --backend vllm (run it from .venv-vllm, which has both backends): every VLM stage under
     transformers and under the vLLM engine, items/s with and without the engine start, the engine start
     itself, and parse rejects per stage.
Stage wall times include process start, imports and model loading: on the tiny world those dominate
small runs, which is why the default uses more seeds than params.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from viper.sandbox import env, make_repo, metrics, run, set_params, target

SYNTH = ["captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]
OUTS = ["data/captions", "data/reconstructions", "data/refinements", "data/edit_plans", "data/edited_pairs",
        "data/viper10k/caption_refining", "data/viper10k/visual_operation"]


def timed_stages(repo: Path, force: bool = False) -> dict[str, float]:
    times = {}
    for stage in SYNTH:
        start = time.perf_counter()
        run(["dvc", "repro", "-s", *(["-f"] if force else []), target(stage)], repo)
        times[stage] = time.perf_counter() - start
    return times


def calls(m: dict) -> int:
    """Model calls that missed the cache (items that needed computing), across a stage's steps."""
    if "judge" in m:
        return m["judge"]["cache_misses"] + m["clip_filter"]["cache_misses"]
    return m["cache_misses"]


def cached_rows(repo: Path, step: str) -> int:
    db = repo / ".viper_cache" / "items.sqlite"
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM items WHERE step = ?", (step,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def cold_and_warm(work: Path, n: int) -> dict:
    repo = make_repo(work / "cold", {"seeds.n_synthetic": n})
    run(["dvc", "repro", "synthesis/dvc.yaml:seeds", "models"], repo)
    cold = timed_stages(repo)
    cold_metrics = {s: metrics(repo, s) for s in SYNTH}
    for out in OUTS:
        shutil.rmtree(repo / out, ignore_errors=True)
    warm = timed_stages(repo, force=True)
    return {
        "seeds": n,
        "cold_seconds": {s: round(t, 2) for s, t in cold.items()},
        "items_per_s_in_stage": {s: cold_metrics[s].get("items_per_s", cold_metrics[s].get("judge", {}).get(
            "items_per_s")) for s in SYNTH},
        "warm_seconds": {s: round(t, 2) for s, t in warm.items()},
        "warm_over_cold": round(sum(warm.values()) / sum(cold.values()), 4),
        "warm_cache_misses": sum(calls(metrics(repo, s)) for s in SYNTH),
        "cold_calls": {s: calls(m) for s, m in cold_metrics.items()},
    }


def kill_and_resume(work: Path, n: int) -> dict:
    clean = make_repo(work / "clean", {"seeds.n_synthetic": n, "vlm.batch_size": 4})
    run(["dvc", "repro", "synthesis/dvc.yaml:seeds", "models"], clean)
    start = time.perf_counter()
    run(["dvc", "repro", "synthesis/dvc.yaml:captions"], clean)
    uninterrupted = time.perf_counter() - start
    total = metrics(clean, "captions")["attempts"]

    repo = make_repo(work / "killed", {"seeds.n_synthetic": n, "vlm.batch_size": 4})
    run(["dvc", "repro", "synthesis/dvc.yaml:seeds", "models"], repo)
    start = time.perf_counter()
    proc = subprocess.Popen(["dvc", "repro", "synthesis/dvc.yaml:captions"], cwd=repo, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while cached_rows(repo, "captions") < total // 2 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before_kill = time.perf_counter() - start
    done = cached_rows(repo, "captions")
    start = time.perf_counter()
    run(["dvc", "repro", "synthesis/dvc.yaml:captions"], repo)
    resume = time.perf_counter() - start
    m = metrics(repo, "captions")
    same = all((repo / "data/captions" / f).read_bytes() == (clean / "data/captions" / f).read_bytes()
               for f in ("captions.parquet", "rejects.parquet"))
    return {
        "calls_total": total, "calls_cached_at_kill": done, "calls_on_resume": m["cache_misses"],
        "calls_redone_fraction": round((done + m["cache_misses"] - total) / total, 4),
        "seconds_uninterrupted": round(uninterrupted, 2), "seconds_before_kill": round(before_kill, 2),
        "seconds_resume": round(resume, 2),
        "wall_redone_fraction": round((before_kill + resume - uninterrupted) / uninterrupted, 4),
        "outputs_identical_to_uninterrupted": same,
    }


def incremental(work: Path, n: int) -> dict:
    repo = make_repo(work / "incr", {"seeds.n_synthetic": n})
    run(["dvc", "repro", "synthesis/dvc.yaml:viper10k"], repo)
    before = {s: calls(metrics(repo, s)) for s in SYNTH}
    extra = max(1, n // 10)
    set_params(repo, {"seeds.n_synthetic": n + extra})
    run(["dvc", "repro", "synthesis/dvc.yaml:viper10k"], repo)
    after = {s: calls(metrics(repo, s)) for s in SYNTH}
    return {"seeds_before": n, "seeds_added": extra, "calls_cold": before, "calls_incremental": after,
            "work_fraction": round(sum(after.values()) / sum(before.values()), 4)}


def batching(work: Path, n: int) -> dict:
    from PIL import Image

    from viper.backends.vlm import TransformersVLM, VLMRequest
    from viper.zoo.vlm import build_tiny_vlm

    build_tiny_vlm(work / "vlm", seed=0)
    out = {}
    for batch in (1, 8):
        vlm = TransformersVLM(str(work / "vlm"), None, min_pixels=784, max_pixels=3136, batch_size=batch)
        reqs = [VLMRequest("Describe the picture.", (Image.new("RGB", (64, 64), (i * 3 % 255, 90, 40)),),
                           max_new_tokens=48, seed=i) for i in range(n)]
        vlm.generate(reqs[:batch])  # warm-up
        start = time.perf_counter()
        vlm.generate(reqs)
        out[f"batch_{batch}_items_per_s"] = round(n / (time.perf_counter() - start), 2)
    out["speedup"] = round(out["batch_8_items_per_s"] / out["batch_1_items_per_s"], 2)
    return out


VLM_STAGES = ["captions", "refinements", "edit_plans", "viper10k"]


def backends(work: Path, n: int, names: list[str]) -> dict:
    """The same VLM stages under each backend, in repositories of their own (cold item caches)."""
    out: dict = {}
    for backend in names:
        repo = make_repo(work / f"backend-{backend}", {"seeds.n_synthetic": n, "vlm.backend": backend})
        run(["dvc", "repro", target("seeds"), "models"], repo)
        per_stage = {}
        for stage in SYNTH:
            start = time.perf_counter()
            run(["dvc", "repro", "-s", target(stage)], repo)
            wall = time.perf_counter() - start
            if stage not in VLM_STAGES:
                continue
            m = metrics(repo, stage)
            m = m["judge"] if stage == "viper10k" else m
            engine = m.get("engine_start_seconds") or 0.0
            per_stage[stage] = {
                "items": m["items_in"], "model_calls": m["model_calls"], "attempts": m["attempts"],
                "parse_rejects": m["items_in"] - m["items_out"], "stage_wall_s": round(wall, 2),
                "engine_start_s": engine, "load_s": m.get("load_seconds"),
                "items_per_s": m["items_per_s"],
                "items_per_s_without_start": (round(m["items_in"] / (m["seconds"] - engine), 3)
                                              if m["seconds"] > engine else None),
            }
        out[backend] = per_stage
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--out", default="reports/benchmarks/synthesis.json")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers",
                        help="vllm: also compare every VLM stage under transformers and vLLM")
    parser.add_argument("--only", nargs="*", help="run only these sections (e.g. backends)")
    args = parser.parse_args()
    sections = {"cold_vs_warm": cold_and_warm, "kill_and_resume": kill_and_resume,
                "incremental_seeds": incremental, "batching": batching}
    if args.backend == "vllm":
        sections["backends"] = lambda work, n: backends(work, n, ["transformers", "vllm"])
    if args.only:
        sections = {k: v for k, v in sections.items() if k in args.only}
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if args.only and out_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, fn in sections.items():
            start = time.perf_counter()
            results[name] = fn(work, args.seeds)
            print(f"{name} ({time.perf_counter() - start:.0f} s): {json.dumps(results[name], indent=2)}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
