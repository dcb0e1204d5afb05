"""Stage `ivt_eval@<method>` (ivt/dvc.yaml): step 0 and T refinement steps of one model on the test split.

base = the models stage's VLM (its step 0 is the single-shot baseline, its later steps naive iteration);
sft and grpo = the IVT checkpoints. Greedy decoding; every step is a cached request (viper/ivt/loop.py).
Writes the trajectories (boxes per step in original pixels, replies, the failure that ended one); scoring
per step choice is the report's (so stop_iou and acc_op rerun only ivt_report)."""

import time

from viper.config import load_stage_params
from viper.ivt.data import read_split
from viper.ivt.loop import iterate
from viper.ivt.run import student, write_trajectories
from viper.models import vlm_metrics
from viper.stage import run, setup, write_metrics
from viper.store.cache import open_cache
from viper.store.io import atomic_dir
from viper.synth.runner import StepStats


def main() -> None:
    args = setup("ivt_eval", __doc__, ["method", "model", "data", "models", "out", "metrics"])
    p = load_stage_params("ivt_eval")
    ivt = p.ivt
    samples = read_split(args.data, "test", ivt.eval_limit)
    vlm, identity = student(args.models, args.model, p)
    stats, start = StepStats(f"ivt_eval@{args.method}"), time.perf_counter()
    trajectories = iterate(vlm, samples, ivt.steps, min_pixels=ivt.min_pixels, max_pixels=ivt.max_pixels,
                           max_new_tokens=ivt.max_new_tokens, cache=open_cache(), model=identity, stats=stats,
                           batch_size=ivt.batch_size)
    stats.seconds = time.perf_counter() - start
    with atomic_dir(args.out) as tmp:
        write_trajectories(tmp, trajectories)
    complete = sum(t["failure"] is None for t in trajectories)
    write_metrics(args.metrics, {"method": args.method, "model": args.model, "samples": len(samples),
                                 "steps": ivt.steps, "complete": complete, "vlm": identity,
                                 "cache": stats.metrics(), **vlm_metrics(vlm)})


if __name__ == "__main__":
    run(main)
