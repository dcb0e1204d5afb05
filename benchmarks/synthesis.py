"""Synthesis throughput and item-cache benchmarks on the tiny world. Prints and saves figures.

    python benchmarks/synthesis.py [--seeds 64] [--out reports/benchmarks/synthesis.json]
    .venv-vllm/bin/python benchmarks/synthesis.py --backend vllm [--only backends]
    python benchmarks/synthesis.py --executor {local,ray} --workers N [--seeds 64]

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
With --executor (saved to reports/benchmarks/scale_out.json) it runs the scale-out sections instead:
  7. the six stages in process, then (ray) on a local Ray cluster with 1 and N actors per step, each into an
     empty object store: per stage items, hits/misses, model calls, the wall split (outside the model steps,
     cluster connect, model load, actor compute, store I/O, actor start and idle), items/s per worker, the
     speed-up over 1 worker, an all-hit rerun's cost, the work redone after a kill at ~50 %, and
     `digest local=<x> ray=<y>` over every output file;
  8. peak RSS of every synthesis stage at N and 4N seeds of --rss-side pixels (streaming bounds it).
Stage wall times include process start, imports and model loading: on the tiny world those dominate
small runs, which is why the default uses more seeds than params.yaml.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from viper.sandbox import copy_repo, env, make_repo, metrics, run, set_params, target

SYNTH = ["captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]
OUTS = ["data/captions", "data/reconstructions", "data/refinements", "data/edit_plans", "data/edited_pairs",
        "data/viper10k/caption_refining", "data/viper10k/visual_operation"]


def timed_stages(repo: Path, force: bool = False, extra_env: dict | None = None) -> dict[str, float]:
    times = {}
    for stage in SYNTH:
        start = time.perf_counter()
        run(["dvc", "repro", "-s", *(["-f"] if force else []), target(stage)], repo, extra_env)
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


def digest(repo: Path) -> str:
    """One sha256 over every file the synthesis model stages wrote (paths and bytes)."""
    h = hashlib.sha256()
    for out in OUTS:
        for f in sorted((repo / out).rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(repo)}\n".encode())
                h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def steps(m: dict) -> list[dict]:
    return [m["clip_filter"], m["judge"]] if "judge" in m else [m]


def stage_figures(repo: Path, walls: dict[str, float], workers: int) -> dict:
    """Per stage: items, hits/misses, model calls and where the wall time went."""
    out = {}
    for stage in SYNTH:
        parts = steps(metrics(repo, stage))
        ray = [p["ray"] for p in parts if "ray" in p]
        inside = sum(p["seconds"] for p in parts)
        row = {
            "items": sum(p["items_in"] for p in parts), "hits": sum(p["cache_hits"] for p in parts),
            "misses": sum(p["cache_misses"] for p in parts), "model_calls": sum(p["model_calls"] for p in parts),
            "wall_s": round(walls[stage], 2),
            # process start, imports, reading inputs, writing outputs, DVC's hashing: outside the model steps
            "outside_steps_s": round(walls[stage] - inside, 2),
            "store_io_s": round(sum(p["store_seconds"] for p in parts), 3),
            "peak_rss_mib": max(p["peak_rss_mib"] for p in parts),
        }
        if ray:
            sec = [r["seconds"] for r in ray]
            row.update({
                "cluster_connect_s": round(sum(s.get("cluster", 0) for s in sec), 2),
                "model_load_s": round(max(s.get("load", 0) for s in sec), 2),  # per actor, in parallel
                "actor_compute_s": round(sum(s.get("compute", 0) for s in sec), 2),  # summed over actors
                "actor_store_s": round(sum(s.get("store", 0) for s in sec), 3),
                "remote_wall_s": round(sum(s.get("wall", 0) for s in sec), 2),
                "actors": max(r["actors"] for r in ray), "batches": sum(r["batches"] for r in ray),
            })
            # start of actors + model load + waiting: the remote wall not covered by computing in parallel
            row["actor_start_and_idle_s"] = round(row["remote_wall_s"] - row["actor_compute_s"] / row["actors"], 2)
        compute = row.get("remote_wall_s", inside)
        row["items_per_s_per_worker"] = round(row["misses"] / compute / (workers if ray else 1), 3) if compute else None
        out[stage] = row
    return out


def peak_rss(work: Path, n: int, size: int) -> dict:
    """Peak RSS of every synthesis stage (in-process) at n and 4n seeds of `size` px: streaming bounds it."""
    out = {}
    for count in (n, 4 * n):
        repo = make_repo(work / f"rss-{count}", {"seeds.n_synthetic": count, "seeds.size": size,
                                                  "seeds.max_side": size})
        run(["dvc", "repro", target("seeds"), "models"], repo)
        timed_stages(repo)
        out[count] = {s: max(p["peak_rss_mib"] for p in steps(metrics(repo, s))) for s in ["seeds", *SYNTH]}
    ratio = {s: round(out[4 * n][s] / out[n][s], 3) for s in out[n]}
    return {"seeds": [n, 4 * n], "image_side": size, "peak_rss_mib": {str(k): v for k, v in out.items()},
            "ratio_4n_over_n": ratio, "max_ratio": max(ratio.values())}


def killed_on_ray(base: Path, work: Path, extra_env: dict) -> dict:
    """Kill the captions driver at ~50 % of its items committed; the rerun's misses say what was redone."""
    from viper.store.cache import ObjectStore

    repo = copy_repo(base, work / "ray-killed")
    set_params(repo, {"vlm.batch_size": 2})  # many small batches, so the kill lands mid-stage
    url = extra_env["VIPER_CACHE_URL"]
    total = metrics(base, "seeds")["items_out"]
    proc = subprocess.Popen(["dvc", "repro", "-s", "-f", target("captions")], cwd=repo, env={**env(), **extra_env},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = 0
    while done < total // 2 and proc.poll() is None:
        time.sleep(0.05)
        done = ObjectStore(url).counts().get("captions", 0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = ObjectStore(url).counts().get("captions", 0)
    start = time.perf_counter()
    run(["dvc", "repro", "-s", "-f", target("captions")], repo, extra_env)
    m = metrics(repo, "captions")
    return {"items": total, "committed_at_kill": at_kill, "computed_on_rerun": m["cache_misses"],
            "redone_fraction": round((at_kill + m["cache_misses"] - m["attempts"]) / m["attempts"], 4),
            "rerun_wall_s": round(time.perf_counter() - start, 2),
            "temporary_objects_left": len(ObjectStore(url).temporary())}


def scale_out(work: Path, n: int, executor: str, workers: int) -> dict:
    """The synthesis stages in process and (with --executor ray) on a local Ray cluster of this machine with 1
    and `workers` actors per step, each into an empty object store; then an all-hit rerun and a kill."""
    base = make_repo(work / "so-base", {"seeds.n_synthetic": n})
    run(["dvc", "repro", target("seeds"), "models"], base)
    local = copy_repo(base, work / "so-local")
    result = {"seeds": n, "workers": workers, "local": stage_figures(local, timed_stages(local), 1)}
    result["digest_local"] = digest(local)
    if executor == "local":
        return result
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": max(os.cpu_count() or 1, workers), "object_store_memory": 512 * 2**20})
    result["cluster_start_s"] = round(time.perf_counter() - start, 2)
    try:
        for w in sorted({1, workers}):
            repo = copy_repo(base, work / f"so-ray-{w}")
            set_params(repo, {"ray.workers": w})
            ray_env = {"RAY_ADDRESS": cluster.address, "VIPER_CACHE_URL": f"file://{work}/store-{w}"}
            result[f"ray_{w}"] = stage_figures(repo, timed_stages(repo, extra_env=ray_env), w)
        result["digest_ray"] = digest(repo)
        walls = timed_stages(repo, force=True, extra_env=ray_env)  # every value in the store now
        rerun = stage_figures(repo, walls, workers)
        result["all_hit_rerun"] = {"wall_s": {s: r["wall_s"] for s, r in rerun.items()},
                                   "misses": sum(r["misses"] for r in rerun.values()),
                                   "actors_started": sum(r.get("actors", 0) for r in rerun.values())}
        ray_env["VIPER_CACHE_URL"] = f"file://{work}/store-killed"
        result["killed_at_half"] = killed_on_ray(base, work, ray_env)
    finally:
        cluster.shutdown()
    one, many = result["ray_1"], result[f"ray_{workers}"]
    result["speedup_vs_1_worker"] = {s: round(one[s]["wall_s"] / many[s]["wall_s"], 3) for s in SYNTH}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=64)
    parser.add_argument("--out", default="reports/benchmarks/synthesis.json")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers",
                        help="vllm: also compare every VLM stage under transformers and vLLM")
    parser.add_argument("--only", nargs="*", help="run only these sections (e.g. backends)")
    parser.add_argument("--executor", choices=["local", "ray"],
                        help="run the scale-out sections instead: the stages in process, and on Ray if asked")
    parser.add_argument("--workers", type=int, default=2, help="actors per step for --executor ray")
    parser.add_argument("--rss-side", type=int, default=384, help="seed image side for the peak-RSS section")
    args = parser.parse_args()
    sections = {"cold_vs_warm": cold_and_warm, "kill_and_resume": kill_and_resume,
                "incremental_seeds": incremental, "batching": batching}
    if args.executor:
        sections = {"scale_out": lambda work, n: scale_out(work, n, args.executor, args.workers),
                    "peak_rss": lambda work, n: peak_rss(work, n, args.rss_side)}
    if args.backend == "vllm":
        sections["backends"] = lambda work, n: backends(work, n, ["transformers", "vllm"])
    if args.only:
        sections = {k: v for k, v in sections.items() if k in args.only}
    if args.executor and args.out == parser.get_default("out"):
        args.out = "reports/benchmarks/scale_out.json"
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if args.only and out_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, fn in sections.items():
            start = time.perf_counter()
            results[name] = fn(work, args.seeds)
            print(f"{name} ({time.perf_counter() - start:.0f} s): {json.dumps(results[name], indent=2)}", flush=True)
    if "scale_out" in results and "digest_ray" in results["scale_out"]:
        so = results["scale_out"]
        print(f"digest local={so['digest_local']} ray={so['digest_ray']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
