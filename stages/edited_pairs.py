"""Stage `edited_pairs`: the image-editing model applies each instruction to its original image.

Streamed: a window of plans at a time, with only their originals decoded; edits are written as they come."""

from viper.config import load_stage_params
from viper.models import load_editor, model_identity
from viper.records import ShardImages
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import ShardWriter, atomic_dir, png_bytes, read_table
from viper.synth.reconstructions import apply_edits
from viper.synth.runner import StepStats, check_reject_fraction
from viper.synth.stream import window_size, windows

FIELDS = ("id", "edit_id", "category", "entity", "instruction")


def main() -> None:
    args = setup("edited_pairs", __doc__, ["seeds", "edit_plans", "models", "out", "metrics"])
    p = load_stage_params("edited_pairs")
    seeds = ShardImages(args.seeds)
    plans = read_table(f"{args.edit_plans}/edit_plans.parquet").to_dict("records")
    editor = load_editor(args.models, p.models)
    cache, model = open_cache(), model_identity(args.models, "edit")
    stats, rejects = StepStats("edited_pairs"), []
    with atomic_dir(args.out) as tmp:
        with ShardWriter(tmp, 1000) as shards:
            for window in windows(plans, window_size(p.edited_pairs.batch_size), "edited_pairs"):
                originals = {pl["id"]: seeds.image(pl["id"]) for pl in window if pl["id"] in seeds}
                done, bad, _ = apply_edits(editor, window, originals, p.edited_pairs, p.seed, cache, model, stats)
                for pl, img in done:
                    shards.write({"__key__": pl["edit_id"], "png": png_bytes(img), "json": {k: pl[k] for k in FIELDS}})
                rejects += bad
        check_reject_fraction(stats, p.edited_pairs.max_reject_fraction)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
