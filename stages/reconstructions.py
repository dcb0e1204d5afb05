"""Stage `reconstructions`: the text-to-image model paints each caption (image-level reconstruction)."""

from viper.config import load_stage_params
from viper.models import load_t2i, model_identity
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, png_bytes, read_table, write_shards
from viper.synth.reconstructions import reconstruct
from viper.synth.runner import check_reject_fraction


def main() -> None:
    args = setup("reconstructions", __doc__, ["captions", "models", "out", "metrics"])
    p = load_stage_params("reconstructions")
    captions = read_table(f"{args.captions}/captions.parquet").to_dict("records")
    t2i = load_t2i(args.models, p.models)
    done, rejects, stats = reconstruct(t2i, captions, p.reconstructions, p.seed, open_cache(),
                                       model_identity(args.models, "t2i"))
    check_reject_fraction(stats, p.reconstructions.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_shards(tmp, ({"__key__": c["id"], "png": png_bytes(img), "json": {"id": c["id"],
                            "caption": c["caption"]}} for c, img in done), 1000)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
