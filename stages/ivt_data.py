"""Stage `ivt_data` (ivt/dvc.yaml): the grounding samples IVT trains and is scored on, one parquet per split.

ivt.source tiny generates the scene world (viper/ivt/world.py); paper reads the converted benchmark TSVs in
ivt.sources and checks their counts (viper/ivt/data.py)."""

from viper.config import ParamsError, load_stage_params
from viper.ivt import data, world
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir


def main() -> None:
    args = setup("ivt_data", __doc__, ["out", "metrics"])
    p = load_stage_params("ivt_data")
    ivt = p.ivt
    try:
        if ivt.source == "tiny":
            rows = data.rows_of_world(world.samples(ivt.n, ivt.size, p.seed, val=ivt.val, test=ivt.test))
        else:
            rows = [r for s in ivt.sources for r in data.read_tsv(s)]
    except data.GroundingDataError as err:
        raise ParamsError(str(err)) from None
    counts = {split: sum(r["split"] == split for r in rows) for split in data.SPLITS}
    if any(v is not None and counts[k] != v for k, v in ivt.split_counts.items()):
        raise ParamsError(f"the grounding splits have {counts} rows, but ivt.split_counts expects "
                          f"{dict(ivt.split_counts)}")
    if not counts["train"] or not counts["test"]:
        raise ParamsError(f"the grounding splits {counts} leave train or test empty: raise ivt.n or change "
                          "ivt.val / ivt.test")
    with atomic_dir(args.out) as tmp:  # checked first: a wrong source never leaves a half-valid output
        data.write_splits(tmp, rows)
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    write_metrics(args.metrics, {"source": ivt.source, "splits": counts, "sources": by_source})


if __name__ == "__main__":
    run(main)
