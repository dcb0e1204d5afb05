"""Stage `seeds`: read or generate seed images, normalise them, give them content ids, dedupe.

Streaming: inputs are read one at a time and each kept seed is spilled to a staging folder as the PNG it
will be in the shards; the shards are then written in id order from there. Memory holds the ids, never
the images, however large the folder.
"""

import shutil

from viper.config import load_stage_params
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir, png_bytes, write_shards
from viper.synth.runner import Reject, StepStats, check_reject_fraction
from viper.synth.seeds import Seed, folder_inputs, normalised, synthetic_seeds


def main() -> None:
    args = setup("seeds", __doc__, ["folder", "out", "metrics"])
    p = load_stage_params("seeds")
    if p.seeds.source == "synthetic":
        inputs = synthetic_seeds(p.seeds.n_synthetic, p.seeds.size, p.seed)
    else:
        inputs = folder_inputs(args.folder)
    stats = StepStats("seeds")
    with atomic_dir(args.out) as tmp:
        staging = tmp / ".staging"
        staging.mkdir()
        seeds: dict[str, dict] = {}  # id -> its JSON record
        rejects: list[Reject] = []
        for out in normalised(inputs, p.seeds.max_side, p.seeds.max_pixels, p.seeds.min_side):
            stats.items_in += 1
            if isinstance(out, Seed):
                (staging / out.id).write_bytes(png_bytes(out.image))
                seeds[out.id] = {"id": out.id, "source": out.source, "width": out.image.width,
                                 "height": out.image.height}
            else:
                rejects.append(Reject(out.source, out.reason, out.detail))
        stats.items_out = len(seeds)
        stats.rejects.update(r.reason for r in rejects)
        if not seeds:
            raise SystemExit(f"seeds: no usable image among {stats.items_in} inputs (source={p.seeds.source}, "
                             f"folder={args.folder}); reasons: {dict(stats.rejects)}")
        check_reject_fraction(stats, p.seeds.max_reject_fraction)
        write_shards(tmp, ({"__key__": k, "png": (staging / k).read_bytes(), "json": seeds[k]}
                           for k in sorted(seeds)), shard_size=1000)
        shutil.rmtree(staging)
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
