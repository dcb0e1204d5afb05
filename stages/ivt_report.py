"""Stage `ivt_report` (ivt/dvc.yaml): reports/ivt.md, reports/ivt.html and reports/ivt.json (DVC metrics)
from the three models' test trajectories: four methods x three step choices, the oracle as a labelled
diagnostic, the paper's figures beside, the GRPO curve and example images (viper/ivt/report.py)."""

import json
from pathlib import Path

from viper.config import load_stage_params
from viper.ivt import report
from viper.ivt.data import read_split
from viper.ivt.run import read_trajectories
from viper.rl.curves import read_curves
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir, atomic_write_bytes

N_EXAMPLES = 4


def main() -> None:
    args = setup("ivt_report", __doc__, ["data", "evals", "curves", "training", "report", "html", "examples",
                                         "metrics"])
    p = load_stage_params("ivt_report")
    ivt = p.ivt
    runs = {m: read_trajectories(Path(args.evals) / m) for m in ("base", "sft", "grpo")}
    lengths = {m: len(t) for m, t in runs.items()}
    if len(set(lengths.values())) != 1:
        raise SystemExit(f"error: the evaluations cover different samples {lengths}: rerun ivt_eval")
    result = report.scores(runs, ivt.steps, ivt.stop_iou, ivt.acc_op)
    training = {k: json.loads((Path(args.training) / f"{k}.json").read_text()) for k in ("traces", "sft", "grpo")}
    samples = {s["id"]: s for s in read_split(args.data, "test", len(runs["base"]))}
    picked = [t["id"] for t in runs["base"][:N_EXAMPLES]]
    images = [(sid, report.example_image(samples[sid], {m: next(t for t in runs[m] if t["id"] == sid)
                                                        for m in runs})) for sid in picked]
    with atomic_dir(args.examples) as tmp:
        for sid, img in images:
            img.save(tmp / f"{sid}.png")
    images = [(f"{sid}: {samples[sid]['expression']}", img) for sid, img in images]
    rel = Path(args.examples).relative_to(Path(args.report).parent)
    n = lengths["base"]
    atomic_write_bytes(args.report, report.markdown(result, ivt.steps, ivt.acc_op, ivt.stop_iou, n,
                                                    [f"{rel}/{sid}.png" for sid in picked], training).encode())
    atomic_write_bytes(args.html, report.html_page(result, ivt.steps, ivt.acc_op, ivt.stop_iou, n,
                                                   read_curves(args.curves), images, training).encode())
    write_metrics(args.metrics, {"samples": n, "steps": ivt.steps, "op": ivt.acc_op, "stop_iou": ivt.stop_iou,
                                 "methods": result})


if __name__ == "__main__":
    run(main)
