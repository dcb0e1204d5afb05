"""Stage `reconstructions`: the text-to-image model paints each caption (image-level reconstruction).

Streamed: captions are rendered a window at a time and each image is written to the shards as it comes."""

from viper.config import load_stage_params
from viper.models import load_t2i, model_identity
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import ShardWriter, atomic_dir, png_bytes, read_table
from viper.synth.reconstructions import reconstruct
from viper.synth.runner import StepStats, check_reject_fraction
from viper.synth.stream import window_size, windows


def main() -> None:
    args = setup("reconstructions", __doc__, ["captions", "models", "out", "metrics"])
    p = load_stage_params("reconstructions")
    captions = read_table(f"{args.captions}/captions.parquet").to_dict("records")
    t2i = load_t2i(args.models, p.models)
    cache, model = open_cache(), model_identity(args.models, "t2i")
    stats, rejects = StepStats("reconstructions"), []
    with atomic_dir(args.out) as tmp:
        with ShardWriter(tmp, 1000) as shards:
            for window in windows(captions, window_size(p.reconstructions.batch_size), "reconstructions"):
                done, bad, _ = reconstruct(t2i, window, p.reconstructions, p.seed, cache, model, stats)
                for c, img in done:
                    shards.write({"__key__": c["id"], "png": png_bytes(img),
                                  "json": {"id": c["id"], "caption": c["caption"]}})
                rejects += bad
        check_reject_fraction(stats, p.reconstructions.max_reject_fraction)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
