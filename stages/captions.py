"""Stage `captions`: the VLM describes every seed image."""

from viper.config import load_stage_params
from viper.models import load_vlm, vlm_identity, vlm_metrics
from viper.records import load_shard_images
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir, write_table
from viper.synth.captions import CaptionTask
from viper.store.cache import open_cache
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task


def main() -> None:
    args = setup("captions", __doc__, ["seeds", "models", "out", "metrics"])
    p = load_stage_params("captions")
    items = [{"key": k, "image": img} for k, (img, _) in load_shard_images(args.seeds).items()]
    vlm = load_vlm(args.models, p.models, p.vlm.min_pixels, p.vlm.max_pixels, p.vlm.batch_size, p.vlm.backend,
                   engine=p.vllm)
    stats = StepStats("captions")
    rows, rejects = run_vlm_task(CaptionTask(p.captions.max_new_tokens), items, vlm, seed=p.seed,
                                 temperature=p.vlm.temperature, max_retries=p.vlm.max_retries, cache=open_cache(),
                                 model=vlm_identity(args.models, p.vlm.backend), stats=stats)
    check_reject_fraction(stats, p.vlm.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_table(tmp / "captions.parquet", rows, ["id", "caption"])
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, {**stats.metrics(), **vlm_metrics(vlm)})


if __name__ == "__main__":
    run(main)
