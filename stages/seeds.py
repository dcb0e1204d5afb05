"""Stage `seeds`: read or generate seed images, normalise them, give them content ids, dedupe.

Streaming: inputs are read one at a time and each kept seed is spilled to a staging folder as the PNG it
will be in the shards; the shards are then written in id order from there. Memory holds the ids, never
the images, however large the folder.
"""

from viper.config import load_stage_params
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir
from viper.synth.runner import StepStats, check_reject_fraction
from viper.synth.seeds import folder_inputs, normalised, synthetic_seeds, write_seed_shards


def main() -> None:
    args = setup("seeds", __doc__, ["folder", "out", "metrics"])
    p = load_stage_params("seeds")
    if p.seeds.source == "synthetic":
        inputs = synthetic_seeds(p.seeds.n_synthetic, p.seeds.size, p.seed)
    else:
        inputs = folder_inputs(args.folder)
    stats = StepStats("seeds")
    with atomic_dir(args.out) as tmp:
        seeds, rejects = write_seed_shards(tmp, normalised(inputs, p.seeds.max_side, p.seeds.max_pixels,
                                                           p.seeds.min_side), stats)
        if not seeds:
            raise SystemExit(f"seeds: no usable image among {stats.items_in} inputs (source={p.seeds.source}, "
                             f"folder={args.folder}); reasons: {dict(stats.rejects)}")
        check_reject_fraction(stats, p.seeds.max_reject_fraction)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
