"""What the IVT stages share: which VLM a stage runs (the base from the `models` stage, or a checkpoint of
the IVT pipeline), its item-cache identity, and trajectories as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAJECTORIES = "trajectories.jsonl"


def student(models_dir: str | Path, model: str | Path, p: Any) -> tuple[Any, dict]:
    """The VLM at `model` (the models stage's output directory = its `vlm` role; else a checkpoint saved by
    ivt_sft / ivt_grpo) on the transformers backend, and its cache identity (a checkpoint by content)."""
    from viper.models import load_vlm, vlm_identity

    base = (Path(model) / "manifest.json").exists()
    path = None if base else str(Path(model).resolve())
    vlm = load_vlm(models_dir, p.models, p.ivt.min_pixels, p.ivt.max_pixels, p.ivt.batch_size, "transformers", path,
                   max_images=1)
    return vlm, vlm_identity(models_dir, "transformers", None if base else str(model))


def teacher(models_dir: str | Path, p: Any) -> tuple[Any, dict]:
    """The VLM that writes corrective checks: `ivt.teacher.id` at its revision, or the models stage's vlm."""
    from viper.models import load_vlm, vlm_identity

    t = p.ivt.teacher
    vlm = load_vlm(models_dir, p.models, p.ivt.min_pixels, p.ivt.max_pixels, p.ivt.batch_size, "transformers",
                   t.id, t.revision, max_images=1)
    identity = {"id": t.id, "revision": t.revision, "backend": "transformers"} if t.id else \
        vlm_identity(models_dir, "transformers")
    return vlm, identity


def write_trajectories(out_dir: str | Path, trajectories: list[dict]) -> None:
    with open(Path(out_dir) / TRAJECTORIES, "w") as f:
        for t in trajectories:
            f.write(json.dumps({**t, "boxes": [list(b) for b in t["boxes"]]}, ensure_ascii=False) + "\n")


def read_trajectories(out_dir: str | Path) -> list[dict]:
    with open(Path(out_dir) / TRAJECTORIES) as f:
        return [{**t, "boxes": [tuple(b) for b in t["boxes"]]} for t in map(json.loads, f)]
