"""Does GRPO learn? Train the tiny policy with the real reward on the tiny Viper10K and compare rewards.

    python benchmarks/learning.py [--params params.yaml] [--schedule two_stage|mixed|...] [--stage 1|2]
                                  [--init DIR] [--steps N] [--k K] [--out reports/benchmarks/learning_<schedule>.json]

Runs one RL stage exactly as `rl_stage1`/`rl_stage2` would (viper.rl.stages.plan picks the examples of the
schedule, viper.rl.trl_backend.build_trainer builds the GRPOTrainer, viper.rl.reward scores with the BGE-M3
embedder from data/models), for `--steps` optimizer steps (default 150, more than the pipeline's stages), on the
outputs of `dvc repro` (data/models, data/viper10k). The only addition is a recorder around the two reward
callables: it keeps every completion's format and correctness score with the optimizer step at which its
rollout batch was generated.

Figures: `first` is the mean reward of the completions generated in the first k optimizer steps, `last` that
of the last k steps; `delta = last - first`; `ci95` is a percentile bootstrap of delta that resamples prompt
groups (one prompt's G completions share a prompt and an advantage baseline, so they are not independent)
within each window. The last line is the total reward; the two lines before it are format and correctness
alone. Exit status 1 if the total reward did not rise (ci95 not entirely above 0).

Stage 2 of two_stage starts from the stage-1 checkpoint: `--stage 2 --init data/checkpoints/stage1`.
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

from viper.config import load_params  # noqa: E402


class Recorder:
    """Wraps the reward callables TRL calls; keeps (step, prompt group, format, correct) per completion."""

    def __init__(self, funcs: list, weights: list[float], num_generations: int):
        self.funcs, self.weights, self.g = funcs, weights, num_generations
        self.rows: list[tuple[int, int, float, float]] = []
        self._groups = 0

    def wrapped(self) -> list:
        fmt, cor = self.funcs

        def format_reward(completions, ground_truth, trainer_state=None, **kw):
            return fmt(completions, ground_truth, **kw)

        def correct_reward(completions, ground_truth, trainer_state=None, **kw):
            # TRL calls the callables in order, with the same batch: this one records the batch once.
            f, c = fmt(completions, ground_truth, **kw), cor(completions, ground_truth, **kw)
            step = trainer_state.global_step if trainer_state is not None else 0
            for i, (a, b) in enumerate(zip(f, c)):
                self.rows.append((step, self._groups + i // self.g, a, b))
            self._groups += len(f) // self.g
            return c

        return [format_reward, correct_reward]

    def table(self) -> np.ndarray:
        """Columns: step, group, format, correct, total."""
        a = np.array(self.rows, dtype=np.float64).reshape(-1, 4)
        total = self.weights[0] * a[:, 2] + self.weights[1] * a[:, 3]
        return np.column_stack([a, total])


def bootstrap_delta(first: list[np.ndarray], last: list[np.ndarray], n: int, seed: int) -> tuple[float, float]:
    """95 % percentile interval of mean(last) - mean(first), resampling whole groups in each window."""
    rng = np.random.default_rng(seed)
    deltas = np.empty(n)
    for i in range(n):
        a = np.concatenate([first[j] for j in rng.integers(0, len(first), len(first))])
        b = np.concatenate([last[j] for j in rng.integers(0, len(last), len(last))])
        deltas[i] = b.mean() - a.mean()
    return float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))


def summarise(table: np.ndarray, column: int, steps: int, k: int, n_boot: int, seed: int) -> dict:
    def groups(mask):
        sel = table[mask]
        return [sel[sel[:, 1] == g, column] for g in np.unique(sel[:, 1])]

    # A rollout generated at global step s (0-based count of finished optimizer steps) feeds steps s+1...
    first, last = groups(table[:, 0] < k), groups(table[:, 0] >= steps - k)
    if not first or not last:
        raise SystemExit(f"no rollouts in the first or last {k} steps of {steps}; lower --k")
    f, la = float(np.concatenate(first).mean()), float(np.concatenate(last).mean())
    lo, hi = bootstrap_delta(first, last, n_boot, seed)
    return {"first": f, "last": la, "delta": la - f, "ci95": [lo, hi], "groups_first": len(first),
            "groups_last": len(last)}


def line(name: str, s: dict) -> str:
    return (f"{name}: first={s['first']:.4f} last={s['last']:.4f} delta={s['delta']:+.4f} "
            f"ci95=[{s['ci95'][0]:+.4f},{s['ci95'][1]:+.4f}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--schedule", default=None, help="rl.stage_order (default: the params')")
    ap.add_argument("--stage", type=int, default=1, choices=(1, 2))
    ap.add_argument("--init", default=None, help="start checkpoint (default: data/models/vlm)")
    ap.add_argument("--dataset", default=str(ROOT / "data" / "viper10k"))
    ap.add_argument("--models", default=str(ROOT / "data" / "models"))
    ap.add_argument("--steps", type=int, default=150,
                    help="optimizer steps (default 150: ~3 min on 2 cores, long enough for the trend to clear the "
                    "noise; 0 = the stage's steps in the params)")
    ap.add_argument("--k", type=int, default=None, help="window in optimizer steps (default: steps // 4)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from viper.backends.vlm import load_processor
    from viper.models import load_embedder
    from viper.rl.reward import ViperReward
    from viper.rl.stages import drop_overlong, plan
    from viper.rl.trl_backend import build_trainer, reward_functions
    from viper.store.viper10k import Viper10K

    p = load_params(args.params)
    rl = p.rl.model_copy(update={"stage_order": args.schedule or p.rl.stage_order})
    examples, planned = plan(args.stage, rl, Viper10K(args.dataset), p.seed)
    steps = args.steps or planned
    if not examples or not steps:
        raise SystemExit(f"stage {args.stage} of schedule {rl.stage_order} trains nothing")
    k = args.k or max(1, steps // 4)
    init = args.init or str(Path(args.models) / "vlm")
    weights = [p.reward.w_format, p.reward.w_correct]
    reward = ViperReward(load_embedder(args.models, p.models), p.reward.tau, *weights)
    recorder = Recorder(reward_functions(reward), weights, rl.num_generations)
    examples, _ = drop_overlong(examples, load_processor(init, None, rl.min_pixels, rl.max_pixels),
                                rl.max_prompt_length)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(init, examples, rl, recorder.wrapped(), weights, steps, p.seed,
                                p.models.device, p.models.dtype, work)
        trainer.train()
    seconds = time.perf_counter() - start
    table = recorder.table()
    result = {"schedule": rl.stage_order, "stage": args.stage, "init": init, "steps": steps, "k": k,
              "learning_rate": rl.learning_rate, "examples": len(examples), "completions": len(table),
              "seconds": round(seconds, 1)}
    for name, col in (("format", 2), ("correct", 3), ("reward", 4)):
        result[name] = summarise(table, col, steps, k, args.bootstrap, p.seed)
    out = Path(args.out or ROOT / "reports" / "benchmarks" / f"learning_{rl.stage_order}_stage{args.stage}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"schedule={rl.stage_order} stage={args.stage} steps={steps} k={k} lr={rl.learning_rate} "
          f"examples={len(examples)} completions={len(table)} seconds={seconds:.0f}")
    for name in ("format", "correct", "reward"):
        print(line(name, result[name]))
    return 0 if result["reward"]["ci95"][0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
