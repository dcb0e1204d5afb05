"""Does IVT's GRPO learn? Train the policy on the tiny grounding world with the real multi-step rollouts and
reward, and compare the reward of the first and last steps.

    python benchmarks/ivt_learning.py [--params params.yaml] [--init data/ivt/checkpoints/sft] [--steps N]
                                      [--k K] [--out reports/benchmarks/ivt_learning.json]

Runs `viper.ivt.grpo.train` exactly as the `ivt_grpo` stage does (same params section, same train split from
`dvc repro ivt/dvc.yaml`), for `--steps` updates (default 90, three times the stage's). Figures as in
benchmarks/learning.py (its bootstrap is reused): `first` / `last` are the mean reward of the rollouts generated
in the first / last k steps, `delta = last - first`, `ci95` a percentile bootstrap of delta resampling prompt
groups (one prompt's rollouts share a baseline). Lines for format (share of steps with a usable box), final-step
IoU and the total reward. Exit status 1 if the total reward did not rise (ci95 not entirely above 0).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning import line, summarise  # noqa: E402

from viper.config import load_params  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--init", default=str(ROOT / "data" / "ivt" / "checkpoints" / "sft"))
    ap.add_argument("--data", default=str(ROOT / "data" / "ivt" / "grounding"))
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--k", type=int, default=None, help="window in optimizer steps (default: steps // 4)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "ivt_learning.json"))
    args = ap.parse_args()

    from viper.ivt import grpo
    from viper.ivt.data import read_split

    p = load_params(args.params)
    g = p.ivt.grpo.model_copy(update={"steps": args.steps})
    k = args.k or max(1, args.steps // 4)
    samples = read_split(args.data, "train")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        _, records = grpo.train(args.init, samples, Path(work) / "out", g, steps=p.ivt.steps, seed=p.seed,
                                device=p.models.device, min_pixels=p.ivt.min_pixels, max_pixels=p.ivt.max_pixels,
                                max_new_tokens=p.ivt.max_new_tokens, curves_dir=Path(work) / "curves")
    seconds = time.perf_counter() - start
    # columns as benchmarks/learning.py's table: step (0-based: finished updates before the rollout), group, ...
    table = np.array([[r["step"] - 1, r["group"], r["format"], r["iou"], r["reward"]] for r in records])
    result = {"init": str(Path(args.init).relative_to(ROOT)) if Path(args.init).is_relative_to(ROOT) else args.init,
              "steps": args.steps, "k": k, "refinement_steps": p.ivt.steps, "num_generations": g.num_generations,
              "batch_prompts": g.batch_prompts, "learning_rate": g.learning_rate, "beta": g.beta,
              "w_format": g.w_format, "train_items": len(samples), "rollouts": len(records),
              "seconds": round(seconds, 1)}
    for name, col in (("format", 2), ("final_iou", 3), ("reward", 4)):
        result[name] = summarise(table, col, args.steps, k, args.bootstrap, p.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ivt grpo steps={args.steps} k={k} T={p.ivt.steps} G={g.num_generations} lr={g.learning_rate} "
          f"rollouts={len(records)} seconds={seconds:.0f}")
    for name in ("format", "final_iou", "reward"):
        print(line(name, result[name]))
    return 0 if result["reward"]["ci95"][0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
