"""Stage `edited_pairs`: the image-editing model applies each instruction to its original image."""

from viper.config import load_stage_params
from viper.models import load_editor, model_identity
from viper.records import load_shard_images
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, png_bytes, read_table, write_shards
from viper.synth.reconstructions import apply_edits
from viper.synth.runner import check_reject_fraction


def main() -> None:
    args = setup("edited_pairs", __doc__, ["seeds", "edit_plans", "models", "out", "metrics"])
    p = load_stage_params("edited_pairs")
    originals = {k: img for k, (img, _) in load_shard_images(args.seeds).items()}
    plans = read_table(f"{args.edit_plans}/edit_plans.parquet").to_dict("records")
    editor = load_editor(args.models, p.models)
    done, rejects, stats = apply_edits(editor, plans, originals, p.edited_pairs, p.seed, open_cache(),
                                       model_identity(args.models, "edit"))
    check_reject_fraction(stats, p.edited_pairs.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_shards(tmp, ({"__key__": pl["edit_id"], "png": png_bytes(img),
                            "json": {k: pl[k] for k in ("id", "edit_id", "category", "entity", "instruction")}}
                           for pl, img in done), 1000)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
