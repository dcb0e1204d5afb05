"""Peak memory of the predictions stage against benchmark size, on MME-RealWorld-shaped data.

    python benchmarks/predictions.py [--rows 32] [--factor 4] [--batch-size 8] [--no-eager]
                                     [--out reports/benchmarks/predictions.json]

MME-RealWorld is ~23.6K rows of high-resolution photos; decoding them all up front needs ~200 GB (audit
A7). This generates MME-RealWorld-shaped TSVs (`viper.eval.generate.make_mme_realworld_highres`: the
benchmark's columns and prompt, 1500x1000 photo-like JPEGs, every row with its own image data) of N and
factor*N rows and runs the real `stages/predictions.py` with the tiny VLM on each, in a throwaway copy
of this repository (viper.sandbox) with its own empty item cache, in a subprocess whose peak RSS is read
from the kernel (`os.wait4`). The stage evaluates base, stage1 and stage2; stage1 and stage2 have the
same checkpoint content, so stage2 is served from the cache (two generating passes, one all-cached).
Then the factor*N stage is rerun with its cache warm (no model may load). Unless --no-eager, the
previous code path runs on the same files for comparison: every image decoded up front
(`load_tsv(decode=True)`) and all rows in one `generate` call.

The figure that matters is peak(factor*N) / peak(N): near 1 when memory is bounded by the batch, not
the row count. On the tiny model the peak has a ~1.3 GB floor (torch, the model load), which flatters any
ratio, so the output also gives the peak's growth per extra row: on the streamed path that is the base64
text of the benchmark (held, not decoded: ~0.6 MiB per 1500x1000 row here) plus keys and replies; on the
eager path also every decoded image (4.3 MiB per row). The warm rerun (no model, so no floor) shows the
held text alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from viper.sandbox import add_evaluated_models, env, make_repo  # noqa: E402

NAME = "MME-RealWorld"
DATA = "data/bench_highres"


def _status_kib(pid: int, field: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith(field + ":")), 0)


def measured(cmd: list[str], cwd: Path, extra_env: dict | None = None) -> dict:
    """Run `cmd`; its wall seconds and peak RSS (MiB) from the kernel's accounting of that child alone
    (`os.wait4`), cross-checked by polling its VmHWM. This parent process stays small (it imports no
    torch; the heavy preparation runs in its own subprocess), since a child's ru_maxrss also counts the
    memory it was forked with."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, stdout=log,
                                stderr=subprocess.STDOUT)
        hwm = 0
        while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:  # not reaped yet
            hwm = max(hwm, _status_kib(proc.pid, "VmHWM"))
            time.sleep(0.02)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            log.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{log.read().decode()[-4000:]}")
    return {"seconds": round(time.perf_counter() - start, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "polled_hwm_mib": round(hwm / 1024, 1)}


def prepare_child(repo: str, rows: int, seed: int, vlm_dir: str) -> None:
    """In its own process (it imports torch): the tiny VLM (once), the TSV, the manifest, the checkpoints."""
    from viper.eval.generate import make_mme_realworld_highres

    repo_, vlm = Path(repo), Path(vlm_dir)
    if not vlm.exists():
        from viper.zoo.vlm import build_tiny_vlm

        build_tiny_vlm(vlm, seed=0)
    make_mme_realworld_highres(repo_ / DATA / f"{NAME}.tsv", rows, seed)
    add_evaluated_models(repo_, vlm)  # stage1 = stage2 = base in content: stage2 is served from stage1's cache


def build_repo(work: Path, rows: int, batch_size: int, vlm_dir: Path, seed: int) -> Path:
    repo = make_repo(work / f"rows{rows}", {"benchmark.names": [NAME], "benchmark.data_dir": DATA,
                                            "benchmark.batch_size": batch_size})
    cmd = [sys.executable, __file__, "--prepare-child", str(repo), str(rows), str(seed), str(vlm_dir)]
    subprocess.run(cmd, cwd=ROOT, env=env(), check=True, stdout=subprocess.DEVNULL)
    return repo


def stage_cmd(out: str, metrics: str) -> list[str]:
    return [sys.executable, "stages/predictions.py", "--data", DATA, "--models", "data/models",
            "--cold_start", "data/checkpoints/cold_start", "--stage1", "data/checkpoints/stage1",
            "--stage2", "data/checkpoints/stage2", "--out", out, "--metrics", metrics]


def eager_child(tsv: str, vlm_dir: str, batch_size: int, max_new_tokens: int, min_px: int,
                max_px: int) -> None:
    """The previous code path: every image decoded up front, every row in one generate call."""
    from viper.backends.requests import VLMRequest
    from viper.backends.vlm import TransformersVLM
    from viper.eval.registry import BENCHMARKS
    from viper.eval.tsv import load_tsv

    df = load_tsv(tsv)  # decode=True
    vlm = TransformersVLM(vlm_dir, None, min_pixels=min_px, max_pixels=max_px, batch_size=batch_size)
    bench = BENCHMARKS[NAME]
    reqs = [VLMRequest(bench.prompt(row), tuple(row["images"]), max_new_tokens=max_new_tokens)
            for row in df.to_dict("records")]
    assert len(vlm.generate(reqs)) == len(df)


def run_size(work: Path, rows: int, args: argparse.Namespace, vlm_dir: Path) -> dict:
    import yaml

    repo = build_repo(work, rows, args.batch_size, vlm_dir, args.seed)
    tsv = repo / DATA / f"{NAME}.tsv"
    params = yaml.safe_load((repo / "params.yaml").read_text())["benchmark"]
    cache = {"VIPER_CACHE_DIR": str(work / f"cache{rows}")}
    res = {"rows": rows, "tsv_mib": round(tsv.stat().st_size / 2**20, 1),
           "decoded_rgb_mib": round(rows * 1500 * 1000 * 3 / 2**20, 1)}
    res["streamed"] = measured(stage_cmd("data/predictions", "metrics.json"), repo, cache)
    res["streamed"]["metrics"] = json.loads((repo / "metrics.json").read_text())
    res["warm_rerun"] = measured(stage_cmd("warm_predictions", "warm.json"), repo, cache)
    res["warm_rerun"]["metrics"] = json.loads((repo / "warm.json").read_text())
    if args.eager:
        res["eager"] = measured([sys.executable, __file__, "--eager-child", str(tsv), str(vlm_dir),
                                 str(args.batch_size), str(params["max_new_tokens"]),
                                 str(params["min_pixels"]), str(params["max_pixels"])], ROOT)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32, help="N")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-eager", dest="eager", action="store_false")
    ap.add_argument("--out", default=str(ROOT / "reports/benchmarks/predictions.json"))
    ap.add_argument("--eager-child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--prepare-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.eager_child:
        tsv, vlm, bs, mnt, lo, hi = args.eager_child
        return eager_child(tsv, vlm, int(bs), int(mnt), int(lo), int(hi))
    if args.prepare_child:
        repo, rows, seed, vlm = args.prepare_child
        return prepare_child(repo, int(rows), int(seed), vlm)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="viper-bench-pred-") as tmp:
        work = Path(tmp)
        small = run_size(work, args.rows, args, work / "vlm")
        large = run_size(work, args.rows * args.factor, args, work / "vlm")
    extra_rows = large["rows"] - small["rows"]

    def figures(run: str) -> dict:
        lo, hi = small[run], large[run]
        return {"peak_ratio": round(hi["peak_rss_mib"] / lo["peak_rss_mib"], 3),
                "peak_kib_per_extra_row": round((hi["peak_rss_mib"] - lo["peak_rss_mib"]) * 1024
                                                / extra_rows, 1)}

    runs = ["streamed", "warm_rerun"] + (["eager"] if args.eager else [])
    result = {
        "benchmark": NAME, "image_size": [1500, 1000], "batch_size": args.batch_size,
        "backend": "transformers",
        "model": "tiny Qwen2.5-VL (random weights)", "cpus": os.cpu_count(),
        "sizes": {"N": small, f"{args.factor}N": large},
        **{run: figures(run) for run in runs},
        "tsv_kib_per_row": round(large["tsv_mib"] * 1024 / large["rows"], 1),
        "decoded_kib_per_row": round(1500 * 1000 * 3 / 1024, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "parent_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"{NAME}-shaped TSVs, 1500x1000 JPEG images, batch_size {args.batch_size}, tiny VLM, "
          f"{os.cpu_count()} CPUs; peak RSS in MiB, wall seconds")
    print(f"{'rows':>5} {'tsv':>6} {'decoded':>8} | {'streamed peak':>13} {'s':>6} | "
          f"{'warm peak':>9} {'s':>5} | {'eager peak':>10} {'s':>6}")
    for r in (small, large):
        st, w, e = r["streamed"], r["warm_rerun"], r.get("eager", {})
        print(f"{r['rows']:>5} {r['tsv_mib']:>6} {r['decoded_rgb_mib']:>8} | {st['peak_rss_mib']:>13} "
              f"{st['seconds']:>6} | {w['peak_rss_mib']:>9} {w['seconds']:>5} | "
              f"{e.get('peak_rss_mib', '-'):>10} {e.get('seconds', '-'):>6}")
    for run in runs:
        f = result[run]
        print(f"{run:>10}: peak({args.factor}N)/peak(N) = {f['peak_ratio']}; the peak grows by "
              f"{f['peak_kib_per_extra_row']} KiB per extra row")
    print(f"(one row: {result['tsv_kib_per_row']} KiB of base64 in the TSV, "
          f"{result['decoded_kib_per_row']} KiB decoded)")
    loaded = any(m["model_loaded"] for m in large["warm_rerun"]["metrics"].values() if isinstance(m, dict))
    print(f"warm rerun loaded a model: {loaded}")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
