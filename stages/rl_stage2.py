"""Stage `rl_stage2`: GRPO from the stage-1 checkpoint (visual-operation data under the paper's schedule)."""

from viper.config import load_stage_params
from viper.rl.stages import run_stage
from viper.store.viper10k import Viper10K
from viper.stage import run, setup, write_metrics


def main() -> None:
    args = setup("rl_stage2", __doc__, ["stage1", "dataset", "models", "out", "curves",
                                        "metrics"])
    p = load_stage_params("rl_stage2")
    metrics = run_stage(2, p, args.stage1, Viper10K(args.dataset), args.models, args.out,
                        args.curves)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
