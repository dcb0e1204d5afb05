"""Stage `refinements`: the VLM lists each caption's flaws from original vs reconstruction (RL stage-1 truth)."""

import json

from viper.config import load_stage_params
from viper.models import load_vlm, vlm_identity, vlm_metrics
from viper.records import load_shard_images
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir, write_table
from viper.synth.refinements import RefineTask
from viper.store.cache import open_cache
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task


def main() -> None:
    args = setup("refinements", __doc__, ["seeds", "reconstructions", "models", "out", "metrics"])
    p = load_stage_params("refinements")
    seeds = load_shard_images(args.seeds)
    recons = load_shard_images(args.reconstructions)
    items = [{"key": k, "image": seeds[k][0], "reconstruction": img, "caption": meta["caption"]}
             for k, (img, meta) in recons.items()]
    vlm = load_vlm(args.models, p.models, p.vlm.min_pixels, p.vlm.max_pixels, p.vlm.batch_size, p.vlm.backend,
                   engine=p.vllm)
    task = RefineTask(p.refinements.max_new_tokens, p.refinements.max_items, p.refinements.max_item_chars)
    stats = StepStats("refinements")
    rows, rejects = run_vlm_task(task, items, vlm, seed=p.seed, temperature=p.vlm.temperature,
                                 max_retries=p.vlm.max_retries, cache=open_cache(),
                                 model=vlm_identity(args.models, p.vlm.backend), stats=stats)
    for r in rows:  # parquet column of JSON text: a list per row, readable by any tool
        r["refinements"] = json.dumps(r["refinements"], ensure_ascii=False)
    check_reject_fraction(stats, p.vlm.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_table(tmp / "refinements.parquet", rows, ["id", "caption", "refinements"])
        write_rejects(tmp / "rejects.parquet", rejects)
    metrics = {**stats.metrics(), **vlm_metrics(vlm)}
    metrics["faithful_captions"] = sum(r["refinements"] == "[]" for r in rows)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
