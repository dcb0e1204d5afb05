"""Stage `round_train_set` (rounds/dvc.yaml): the Viper10K closed-loop round k trains on, by `loop.data`:

    replace     round k's own data
    window      round k-1's own data + round k's
    accumulate  everything round k-1 trained on + round k's (so rounds 0..k)

Sample keys get the round they came from (`r2_<id>`), so the same seed image in two rounds stays two
samples; keys of an earlier merged set already carry theirs. The content depends only on which samples are
merged: round 1 under window and under accumulate is the same set (round 0 trained on its own data), and
DVC then reruns nothing after it.
"""

from pathlib import Path

from viper.config import load_stage_params
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir, atomic_write_bytes, png_bytes, write_json
from viper.store.viper10k import KEY_FIELD, SCHEMA, SUBSETS, Viper10K, build_manifest, card
from viper.synth.viper10k import write_subset


def tagged(ds: Viper10K, subset: str, prefix: str | None):
    """The subset's samples re-keyed with `prefix` (None: keys already carry their round)."""
    for sample in ds.samples(subset):
        rec = dict(sample["json"])
        if prefix:
            for field in ("id", "edit_id"):
                if field in rec:
                    rec[field] = f"{prefix}_{rec[field]}"
        out = {"__key__": rec[KEY_FIELD[subset]], "json": rec}
        for ext in SCHEMA[subset]["images"]:
            out[ext] = png_bytes(sample[ext])
        yield out


def main() -> None:
    args = setup("round_train_set", __doc__, ["round", "own", "prev_own", "prev_train", "out", "metrics"])
    p = load_stage_params("round_train_set")
    k, mode = int(args.round), p.loop.data
    # (dataset, key prefix): older data first. Round 0's data (k == 1) has plain keys; merged sets are tagged.
    sources: list[tuple[str, str | None]] = []
    if mode == "window":
        sources.append((args.prev_own, f"r{k - 1}"))
    elif mode == "accumulate":
        sources.append((args.prev_train, f"r{k - 1}" if k == 1 else None))
    sources.append((args.own, f"r{k}"))
    datasets = [(Viper10K(path), prefix) for path, prefix in sources]
    out = Path(args.out)
    entries = {}
    with atomic_dir(out) as tmp:
        for subset in SUBSETS:
            (tmp / subset).mkdir()
            samples = (s for ds, prefix in datasets for s in tagged(ds, subset, prefix))
            entries[subset] = write_subset(tmp / subset, samples, shard_size=1000)
        own = datasets[-1][0].manifest
        man = build_manifest(entries, models=own["models"], params={"sources": [path for path, _ in sources]})
        write_json(tmp / "manifest.json", man)
        atomic_write_bytes(tmp / "README.md", card(man).encode())
    Viper10K(out)  # what training will read: checked now, before any RL stage starts
    write_metrics(args.metrics, {"round": k, "data": mode, "sources": [path for path, _ in sources],
                                 **{s: man["subsets"][s]["count"] for s in SUBSETS}})


if __name__ == "__main__":
    run(main)
