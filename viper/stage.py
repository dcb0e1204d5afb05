"""Small helpers every stage script uses: argument parsing, logging, metrics, rejects."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Callable

from viper.store.io import write_json, write_table
from viper.synth.runner import REJECT_COLUMNS, Reject

log = logging.getLogger("viper")


def setup(stage: str, description: str, paths: list[str], optional: tuple[str, ...] = ()) -> argparse.Namespace:
    """Parse `--<path> VALUE` options (every path comes from dvc.yaml) and configure logging. `optional`
    options are for the round stages of rounds/dvc.yaml that run the same script (e.g. `--vlm`)."""
    logging.basicConfig(level=os.environ.get("VIPER_LOG", "INFO"), format=f"[{stage}] %(message)s")
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=description)
    for p in paths:
        parser.add_argument(f"--{p}", required=True)
    for p in optional:
        parser.add_argument(f"--{p}")
    return parser.parse_args()


def write_rejects(path: str | Path, rejects: list[Reject]) -> None:
    write_table(path, [r.row() for r in sorted(rejects, key=lambda r: r.key)], REJECT_COLUMNS)


def write_metrics(path: str | Path, metrics: dict) -> None:
    write_json(path, metrics)
    log.info("metrics: %s", metrics)


def run(main: Callable[[], None]) -> None:
    """Call a stage's main(); problems the user must fix (bad params, missing, corrupt or unsafe data)
    end the stage with their message instead of a traceback."""
    from viper.config import ParamsError
    from viper.eval.tsv import BenchmarkDataError
    from viper.models import ModelLoadError
    from viper.store.io import ShardError
    from viper.store.viper10k import DatasetError

    try:
        main()
    except (ParamsError, BenchmarkDataError, DatasetError, ShardError, ModelLoadError) as err:
        raise SystemExit(f"error: {err}") from None
