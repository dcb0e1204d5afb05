"""Stage `refinements`: the VLM lists each caption's flaws from original vs reconstruction (RL stage-1 truth).

Streamed: the two images of a window of items are decoded at a time."""

import json

from viper.config import load_stage_params
from viper.models import round_vlm, synthesis_vlm, vlm_metrics
from viper.records import ShardImages
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, write_table
from viper.synth.refinements import RefineTask
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task
from viper.synth.stream import window_size, windows


def main() -> None:
    args = setup("refinements", __doc__, ["seeds", "reconstructions", "models", "out", "metrics"], optional=("vlm",))
    p = load_stage_params("refinements")
    seeds, recons = ShardImages(args.seeds), ShardImages(args.reconstructions)
    vlm, model = synthesis_vlm(args.models, p, args.vlm)  # --vlm: a closed-loop round's checkpoint
    task = RefineTask(p.refinements.max_new_tokens, p.refinements.max_items, p.refinements.max_item_chars)
    cache = open_cache()
    stats, rows, rejects = StepStats("refinements"), [], []
    for keys in windows(list(recons), window_size(p.vlm.batch_size), "refinements"):
        items = [{"key": k, "image": seeds.image(k), "reconstruction": recons.image(k),
                  "caption": recons.meta(k)["caption"]} for k in keys]
        out, bad = run_vlm_task(task, items, vlm, seed=p.seed, temperature=p.vlm.temperature,
                                max_retries=p.vlm.max_retries, cache=cache, model=model, stats=stats)
        rows += out
        rejects += bad
    for r in rows:  # parquet column of JSON text: a list per row, readable by any tool
        r["refinements"] = json.dumps(r["refinements"], ensure_ascii=False)
    check_reject_fraction(stats, p.vlm.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_table(tmp / "refinements.parquet", rows, ["id", "caption", "refinements"])
        write_rejects(tmp / "rejects.parquet", rejects)
    metrics = {**stats.metrics(), **vlm_metrics(vlm), **round_vlm(model, args.vlm)}
    metrics["faithful_captions"] = sum(r["refinements"] == "[]" for r in rows)
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
