"""Where each model comes from, and the one place that loads them.

The `models` stage writes `<models_dir>/manifest.json`: for every role (vlm, t2i, edit, embed, clip)
the path or hub id to pass to `from_pretrained`, and the revision. Tiny models are directories it
built; hub models are pinned ids. Everything downstream loads through the functions below, so the
tiny world and paper scale share every line of loading code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from viper.store.io import read_json, sha256_file, write_json

ROLES = ("vlm", "t2i", "edit", "embed", "clip")


def build_models(models: Any, out_dir: str | Path, seed: int) -> dict:
    """Build the tiny models (source=tiny) or pin the hub ids (source=hub); write the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict] = {}
    if models.source == "tiny":
        from viper.zoo.clip import build_tiny_clip
        from viper.zoo.diffusion import build_tiny_edit, build_tiny_t2i
        from viper.zoo.embed import build_tiny_bge_m3
        from viper.zoo.vlm import build_tiny_vlm

        builders = {"vlm": build_tiny_vlm, "t2i": build_tiny_t2i, "edit": build_tiny_edit,
                    "embed": build_tiny_bge_m3, "clip": build_tiny_clip}
        for role in ROLES:
            builders[role](out_dir / role, seed)
            ref = getattr(models, role)
            # A built model has no hub revision; its content hash plays that part in cache keys.
            manifest[role] = {"path": role, "id": ref.id, "revision": "sha256:" + dir_digest(out_dir / role)}
    else:
        for role in ROLES:
            ref = getattr(models, role)
            manifest[role] = {"path": None, "id": ref.id, "revision": ref.revision}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def dir_digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def resolve(models_dir: str | Path, role: str) -> tuple[str, str | None]:
    """(path_or_id, revision) for a role, from the manifest the `models` stage wrote."""
    models_dir = Path(models_dir)
    manifest_path = models_dir / "manifest.json"
    if not manifest_path.exists():
        raise RuntimeError(f"{manifest_path} is missing: run `dvc repro models` first")
    entry = read_json(manifest_path)[role]
    if entry["path"] is not None:
        return str(models_dir / entry["path"]), None
    return entry["id"], entry["revision"]


def model_identity(models_dir: str | Path, role: str) -> dict:
    """What identifies a model's weights, for cache keys and dataset cards."""
    entry = read_json(Path(models_dir) / "manifest.json")[role]
    return {"id": entry["id"], "revision": entry["revision"]}


class ModelLoadError(RuntimeError):
    """A model could not be loaded. Unlike an error of one item's model call, this fails the stage:
    the synthesis runner lets it through instead of recording every item as a reject."""


class Lazy:
    """Defers an expensive load until first use, so a stage whose items are all cached loads no model.

    Attributes passed as keywords are known without loading (e.g. the batch size)."""

    def __init__(self, load: Any, **known: Any):
        self.__dict__.update(known, _load=load, _obj=None)

    def __getattr__(self, name: str) -> Any:
        if self._obj is None:
            try:
                self.__dict__["_obj"] = self._load()
            except Exception as exc:  # systemic: no item can be computed (see ModelLoadError)
                raise ModelLoadError(f"could not load the model: {exc}") from exc
        return getattr(self._obj, name)

    @property
    def loaded(self) -> bool:
        return self._obj is not None

    def release(self) -> None:
        """Free the model now if it was loaded (a vLLM engine shuts down); loading again is allowed."""
        obj, self.__dict__["_obj"] = self._obj, None
        if obj is not None and hasattr(obj, "close"):
            obj.close()


def load_vlm(models_dir: str | Path, models: Any, min_pixels: int, max_pixels: int, batch_size: int,
             backend: str = "transformers", path_or_id: str | None = None, revision: str | None = None, *,
             engine: Any = None, max_images: int = 2) -> Any:
    """The VLM of `backend` (transformers | vllm), loaded on first use.

    Without `path_or_id` the `vlm` role of the manifest (at its pinned revision); with it, that
    checkpoint at `revision`. `engine` is the `vllm` params section (vLLM only); `max_images` the most
    images one request may carry (vLLM sizes its memory for that worst case).
    """
    ref, rev = (path_or_id, revision) if path_or_id else resolve(models_dir, "vlm")
    device, dtype, trc = models.device, models.dtype, models.trust_remote_code

    def load() -> Any:  # imports inside: a fully cached stage never imports torch or vLLM
        if backend == "vllm":
            from viper.backends.vllm_backend import EngineSettings, VllmVLM

            return VllmVLM(ref, rev, device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels,
                           batch_size=batch_size, trust_remote_code=trc, max_images=max_images,
                           settings=EngineSettings.of(engine))
        from viper.backends.vlm import TransformersVLM

        return TransformersVLM(ref, rev, device=device, dtype=dtype, min_pixels=min_pixels,
                               max_pixels=max_pixels, batch_size=batch_size, trust_remote_code=trc)

    return Lazy(load, batch_size=batch_size, backend=backend)


def vlm_identity(models_dir: str | Path, backend: str) -> dict:
    """The VLM's identity for cache keys: weights *and* backend, since vLLM and transformers sample
    differently from the same seed (a vLLM run must not be served transformers replies)."""
    return {**model_identity(models_dir, "vlm"), "backend": backend}


def load_t2i(models_dir: str | Path, models: Any) -> Any:
    ref, device, dtype = resolve(models_dir, "t2i"), models.device, models.dtype

    def load() -> Any:
        from viper.backends.diffusion import TextToImage

        return TextToImage(*ref, device=device, dtype=dtype)

    return Lazy(load)


def load_editor(models_dir: str | Path, models: Any) -> Any:
    ref, device, dtype = resolve(models_dir, "edit"), models.device, models.dtype

    def load() -> Any:
        from viper.backends.diffusion import ImageEditor

        return ImageEditor(*ref, device=device, dtype=dtype)

    return Lazy(load)


def load_embedder(models_dir: str | Path, models: Any) -> Any:
    from viper.backends.embed import Embedder

    return Embedder(*resolve(models_dir, "embed"), device=models.device)


def load_clip(models_dir: str | Path, models: Any) -> Any:
    ref, device = resolve(models_dir, "clip"), models.device

    def load() -> Any:
        from viper.backends.clip import ClipScorer

        return ClipScorer(*ref, device=device)

    return Lazy(load)
