"""Stage `captions`: the VLM describes every seed image (streamed: one window of images decoded at a time)."""

from viper.config import load_stage_params
from viper.models import round_vlm, synthesis_vlm, vlm_metrics
from viper.records import ShardImages
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, write_table
from viper.synth.captions import CaptionTask
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task
from viper.synth.stream import window_size, windows


def main() -> None:
    args = setup("captions", __doc__, ["seeds", "models", "out", "metrics"], optional=("vlm",))
    p = load_stage_params("captions")
    seeds = ShardImages(args.seeds)
    vlm, model = synthesis_vlm(args.models, p, args.vlm)  # --vlm: a closed-loop round's checkpoint
    task, cache = CaptionTask(p.captions.max_new_tokens), open_cache()
    stats, rows, rejects = StepStats("captions"), [], []
    for keys in windows(list(seeds), window_size(p.vlm.batch_size), "captions"):
        items = [{"key": k, "image": seeds.image(k)} for k in keys]
        out, bad = run_vlm_task(task, items, vlm, seed=p.seed, temperature=p.vlm.temperature,
                                max_retries=p.vlm.max_retries, cache=cache, model=model, stats=stats)
        rows += out
        rejects += bad
    check_reject_fraction(stats, p.vlm.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_table(tmp / "captions.parquet", rows, ["id", "caption"])
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, {**stats.metrics(), **vlm_metrics(vlm), **round_vlm(model, args.vlm)})


if __name__ == "__main__":
    run(main)
