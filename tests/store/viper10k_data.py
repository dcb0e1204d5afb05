"""Small, valid Viper10K directories written with the real writer (write_subset + build_manifest)."""

from pathlib import Path

from PIL import Image

from viper.store.io import png_bytes, write_json
from viper.store.viper10k import build_manifest
from viper.synth.viper10k import write_subset


def image(i: int) -> bytes:
    return png_bytes(Image.new("RGB", (8, 8), (i * 30 % 256, 10, 200)))


def caption_samples(n):
    for i in range(n):
        yield {"__key__": f"img{i}", "png": image(i),
               "json": {"id": f"img{i}", "caption": f"a blue square number {i}", "refinements": ["x"] * (i % 3)}}


def operation_samples(n):
    for i in range(n):
        yield {"__key__": f"edit{i}", "src.png": image(i), "edited.png": image(i + 1),
               "json": {"id": f"img{i}", "edit_id": f"edit{i}", "category": "tune_attribute", "entity": "square",
                        "instruction": f"make square {i} red"}}


def make_dataset(root: Path, n_caption: int = 5, n_operation: int = 3, shard_size: int = 2) -> Path:
    entries = {"caption_refining": write_subset(root / "caption_refining", caption_samples(n_caption), shard_size),
               "visual_operation": write_subset(root / "visual_operation", operation_samples(n_operation), shard_size)}
    write_json(root / "manifest.json", build_manifest(entries, models={"vlm": {"id": "m", "revision": "r"}},
                                                      params={"seed": 0}))
    return root
