"""Readers for the records each stage writes (see DESIGN.md §3 and dvc.yaml for the paths)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from PIL import Image

from viper.store.io import read_shards, read_table


class ShardImages:
    """The images of a shard directory, read from disk when asked for, one at a time.

    Opening it reads only the shards' headers and JSON members (validated as `read_shards` does), so a
    stage can hold the index of 10K images and decode only the window it is working on."""

    def __init__(self, shard_dir: str | Path, ext: str = "png"):
        self._refs, self._meta = {}, {}
        for sample in read_shards(shard_dir, images=False):
            self._refs[sample["__key__"]] = sample[ext]
            self._meta[sample["__key__"]] = sample["json"]

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, key: str) -> bool:
        return key in self._refs

    def __iter__(self) -> Iterator[str]:
        """Keys in shard order."""
        return iter(self._refs)

    def meta(self, key: str) -> dict:
        return self._meta[key]

    def image(self, key: str) -> Image.Image:
        """The RGB image of `key`, decoded now (not kept)."""
        return self._refs[key].load().convert("RGB")


def load_shard_images(shard_dir: str | Path, ext: str = "png") -> dict[str, tuple[Image.Image, dict]]:
    """key -> (RGB image, json metadata) for every sample of a shard directory, all decoded (small sets:
    benchmarks, tests; a stage streams with `ShardImages`)."""
    out = {}
    for sample in read_shards(shard_dir):
        out[sample["__key__"]] = (sample[ext].convert("RGB"), sample["json"])
    return out


def load_refinements(path: str | Path) -> list[dict]:
    df = read_table(path)
    return [{**row, "refinements": json.loads(row["refinements"])} for row in df.to_dict("records")]
