"""Stage `round_seeds` (rounds/dvc.yaml): the seed images of closed-loop round k.

Most are round 0's (a different subset each round, picked by a per-round hash); `loop.fresh_seed_fraction`
of them are new: freshly generated scenes (seeds.source synthetic), or real images of `loop.seed_pool` that
round 0 did not use, each round taking the next slice in id order so rounds never share fresh images.
Written like the `seeds` stage's output (same shards, same record fields), so every synthesis script reads it.
"""

import itertools

from viper.config import load_stage_params
from viper.loop import kept_seed_ids, n_fresh, round_seed
from viper.records import ShardImages
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.io import atomic_dir
from viper.synth.runner import StepStats
from viper.synth.seeds import Seed, folder_inputs, normalised, synthetic_seeds, write_seed_shards


def fresh_real(pool: str, used: set[str], k: int, n: int, p) -> list[Seed]:
    """Round k's slice of the pool's unused images (normalised like seeds, in id order)."""
    if n == 0:
        return []
    unused = sorted((s for s in normalised(folder_inputs(pool), p.seeds.max_side, p.seeds.max_pixels,
                                           p.seeds.min_side) if isinstance(s, Seed) and s.id not in used),
                    key=lambda s: s.id)
    start = (k - 1) * n
    if len(unused) < start + n:
        raise SystemExit(f"round_seeds: round {k} needs fresh images {start + 1}..{start + n} of loop.seed_pool "
                         f"({pool}), which has {len(unused)} that round 0 did not use. Add images to the pool, "
                         "or lower loop.fresh_seed_fraction")
    return unused[start:start + n]


def main() -> None:
    args = setup("round_seeds", __doc__, ["round", "seeds", "pool", "out", "metrics"])
    p = load_stage_params("round_seeds")
    k, fraction = int(args.round), p.loop.fresh_seed_fraction
    base = ShardImages(args.seeds)
    ids = list(base)
    taken = set(ids)
    kept = kept_seed_ids(ids, fraction, p.seed, k)
    want = n_fresh(len(ids), fraction)
    # Round 0's seeds are normalised already: normalising again keeps their pixels and ids.
    inputs = [(f"round0:{i}", base.image(i)) for i in kept]
    if p.seeds.source == "synthetic":
        # A fresh scene can (rarely) repeat one: draw more than needed and keep the first `want` new ids.
        scenes = synthetic_seeds(2 * want + 8, p.seeds.size, round_seed(p.seed, k))
        fresh = itertools.islice((s for s in normalised(scenes, p.seeds.max_side, p.seeds.max_pixels,
                                                        p.seeds.min_side)
                                  if isinstance(s, Seed) and s.id not in taken), want)
        inputs += [(f"round{k}:{s.source}", s.image) for s in fresh]
    else:
        inputs += [(f"pool:{s.source}", s.image) for s in fresh_real(args.pool, taken, k, want, p)]
    stats = StepStats("round_seeds")
    with atomic_dir(args.out) as tmp:
        seeds, rejects = write_seed_shards(tmp, normalised(inputs, p.seeds.max_side, p.seeds.max_pixels,
                                                           p.seeds.min_side), stats)
        if len(seeds) != len(ids):  # inside: a failed round leaves no output behind
            raise SystemExit(f"round_seeds: round {k} has {len(seeds)} seeds, round 0 has {len(ids)} "
                             f"(rejects: {dict(stats.rejects)})")
        write_rejects(tmp / "rejects.parquet", rejects)
    write_metrics(args.metrics, {**stats.metrics(), "round": k, "kept_from_round0": len(kept),
                                 "fresh": len(seeds) - len(kept)})


if __name__ == "__main__":
    run(main)
