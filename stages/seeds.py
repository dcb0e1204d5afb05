"""Stage `seeds`: read or generate seed images, normalise them, give them content ids, dedupe."""

from viper.config import load_stage_params
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir, png_bytes, write_shards
from viper.synth.runner import Reject, StepStats, check_reject_fraction
from viper.synth.seeds import folder_inputs, ingest, synthetic_seeds


def main() -> None:
    args = setup("seeds", __doc__, ["folder", "out", "metrics"])
    p = load_stage_params("seeds")
    if p.seeds.source == "synthetic":
        inputs = synthetic_seeds(p.seeds.n_synthetic, p.seeds.size, p.seed)
    else:
        inputs = folder_inputs(args.folder)
    seeds, rejects = ingest(inputs, p.seeds.max_side, p.seeds.max_pixels, p.seeds.min_side)
    stats = StepStats("seeds", items_in=len(inputs), items_out=len(seeds))
    stats.rejects.update(r.reason for r in rejects)
    if not seeds:
        raise SystemExit(f"seeds: no usable image among {len(inputs)} inputs (source={p.seeds.source}, "
                         f"folder={args.folder}); reasons: {dict(stats.rejects)}")
    check_reject_fraction(stats, p.seeds.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_shards(tmp, ({"__key__": s.id, "png": png_bytes(s.image),
                            "json": {"id": s.id, "source": s.source, "width": s.image.width,
                                     "height": s.image.height}} for s in seeds), shard_size=1000)
        write_rejects(tmp / "rejects.parquet", [Reject(r.source, r.reason, r.detail) for r in rejects])
    write_metrics(args.metrics, stats.metrics())


if __name__ == "__main__":
    run(main)
