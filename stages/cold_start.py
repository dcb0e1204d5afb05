"""Stage `cold_start`: optional SFT warm-up before RL; when disabled it names the base model for RL."""

from viper.config import load_stage_params
from viper.models import resolve
from viper.rl.cold_start import cot_examples, train_sft, write_pass_through
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir
from viper.store.viper10k import Viper10K


def main() -> None:
    args = setup("cold_start", __doc__, ["dataset", "models", "out", "metrics"])
    p = load_stage_params("cold_start")
    dataset = Viper10K(args.dataset)  # checked before use, even when the warm-up is off
    base, _ = resolve(args.models, "vlm")
    with atomic_dir(args.out) as tmp:
        if not p.cold_start.enabled:
            write_pass_through(tmp, base)
            metrics = {"enabled": False, "steps": 0}
        else:
            examples = cot_examples(dataset, p.cold_start.examples, p.seed)
            rows = train_sft(base, examples, tmp, p.cold_start, p.seed, p.models.device, p.models.dtype,
                             p.rl.min_pixels, p.rl.max_pixels)
            metrics = {"enabled": True, "steps": len(rows), "examples": len(examples),
                       "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"]}
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
