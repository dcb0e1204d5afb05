"""Stage `rl_stage1`: GRPO from the base VLM, or its cold-start warm-up (caption-refining data under the
paper's schedule). In a closed-loop round (round_rl_stage1 in rounds/dvc.yaml) `--init` is the previous
round's stage-2 model and `--base_init` round 0's start; `loop.init` picks one."""

from viper.config import load_stage_params
from viper.rl.cold_start import start_model
from viper.rl.stages import run_stage
from viper.store.viper10k import Viper10K
from viper.stage import run, setup, write_metrics


def main() -> None:
    args = setup("rl_stage1", __doc__, ["init", "dataset", "models", "out", "curves", "metrics"],
                 optional=("base_init",))
    p = load_stage_params("rl_stage1")
    base = args.base_init and p.loop.init == "base"  # ReST-EM: every round restarts from the base model
    init = start_model(args.base_init if base else args.init)
    metrics = run_stage(1, p, init, Viper10K(args.dataset), args.models, args.out, args.curves)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
