"""Which checkpoints the benchmark evaluates, in report order, and what identifies each one's weights."""

from __future__ import annotations

from pathlib import Path

from viper.models import dir_digest, model_identity, resolve
from viper.rl.cold_start import INIT_FILE


def evaluated_models(models_dir: str | Path, cold_start: str | Path, stage1: str | Path,
                     stage2: str | Path) -> dict[str, tuple[str, str | None]]:
    """{name: (path_or_id, revision)}: base (at the manifest's pinned revision), the cold-start warm-up
    when it trained (an ablation), stage1, stage2 (local checkpoints: no revision)."""
    out = {"base": resolve(models_dir, "vlm")}
    if not (Path(cold_start) / INIT_FILE).exists():
        out["cold_start"] = (str(cold_start), None)
    out.update(stage1=(str(stage1), None), stage2=(str(stage2), None))
    return out


def evaluated_identity(models_dir: str | Path, name: str, path_or_id: str) -> dict:
    """What identifies an evaluated model's weights in cache keys: the manifest's id + revision for the
    base, the content digest of a checkpoint directory for the others (a retrained checkpoint gets new
    keys, an unchanged one keeps its cached replies)."""
    if name == "base":
        return model_identity(models_dir, "vlm")
    return {"id": "checkpoint", "revision": "sha256:" + dir_digest(Path(path_or_id))}
