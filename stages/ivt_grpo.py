"""Stage `ivt_grpo` (ivt/dvc.yaml): GRPO from the SFT checkpoint over multi-step rollouts on the train split.

A rollout is step 0 and T refinements, each seeing the image with the previous box drawn; reward = final-step
IoU + w_format * format; KL to the SFT model (viper/ivt/grpo.py). The per-step curves are DVC plots."""

import time

from viper.config import load_stage_params
from viper.ivt import grpo
from viper.ivt.data import read_split
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir


def main() -> None:
    args = setup("ivt_grpo", __doc__, ["init", "data", "out", "curves", "metrics"])
    p = load_stage_params("ivt_grpo")
    ivt, start = p.ivt, time.perf_counter()
    samples = read_split(args.data, "train")
    with atomic_dir(args.out) as tmp:
        rows, _ = grpo.train(args.init, samples, tmp, ivt.grpo, steps=ivt.steps, seed=p.seed, device=p.models.device,
                             min_pixels=ivt.min_pixels, max_pixels=ivt.max_pixels,
                             max_new_tokens=ivt.max_new_tokens, curves_dir=args.curves)
    k = max(1, len(rows) // 4)
    mean = lambda rs, key: round(sum(r[key] for r in rs) / len(rs), 4)  # noqa: E731
    write_metrics(args.metrics, {
        "steps": len(rows), "train_items": len(samples), "init": args.init,
        "reward_first_quarter": mean(rows[:k], "reward"), "reward_last_quarter": mean(rows[-k:], "reward"),
        "format_first_quarter": mean(rows[:k], "format"), "format_last_quarter": mean(rows[-k:], "format"),
        "iou_first_quarter": mean(rows[:k], "correct"), "iou_last_quarter": mean(rows[-k:], "correct"),
        "seconds": round(time.perf_counter() - start, 2)})


if __name__ == "__main__":
    run(main)
