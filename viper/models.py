"""Where each model comes from, and the one place that loads them.

The `models` stage writes `<models_dir>/manifest.json`: for every role (vlm, t2i, edit, embed, clip)
the path or hub id to pass to `from_pretrained`, the revision, and the class the model is
(`models.<role>.class`, checked by the loaders below). Tiny models are directories it
built; hub models are pinned ids. Everything downstream loads through the functions below, so the
tiny world and paper scale share every line of loading code.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from viper.store.io import read_json, sha256_file, write_json

ROLES = ("vlm", "t2i", "edit", "embed", "clip")
# The class each tiny builder makes, for every role the one the presets load at paper scale (DESIGN §1:
# same classes, smaller sizes). params.yaml declares it as models.<role>.class.
TINY_CLASSES = {"vlm": "Qwen2_5_VLForConditionalGeneration", "t2i": "QwenImagePipeline",
                "edit": "QwenImageEditPipeline", "embed": "XLMRobertaModel", "clip": "CLIP"}


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
        for role in ROLES:  # all checked before anything is built
            declared, tiny = getattr(models, role).class_, TINY_CLASSES[role]
            if declared != tiny:
                raise ValueError(
                    f"models.{role}.class is {declared!r}, but the tiny {role} model is a {tiny} (the class "
                    f"the presets use, at tiny size); set models.{role}.class: {tiny}, or models.source: hub "
                    "to load another class")
        for role in ROLES:
            builders[role](out_dir / role, seed)
            ref = getattr(models, role)
            # A built model has no hub revision; its content hash plays that part in cache keys.
            manifest[role] = {"path": role, "id": ref.id, "revision": "sha256:" + dir_digest(out_dir / role),
                              "class": ref.class_}
    else:
        for role in ROLES:
            ref = getattr(models, role)
            manifest[role] = {"path": None, "id": ref.id, "revision": ref.revision, "class": ref.class_}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def dir_digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "\n".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def manifest_entry(models_dir: str | Path, role: str) -> dict:
    """A role's entry of the manifest the `models` stage wrote."""
    manifest_path = Path(models_dir) / "manifest.json"
    if not manifest_path.exists():
        raise RuntimeError(f"{manifest_path} is missing: run `dvc repro models` first")
    return read_json(manifest_path)[role]


def resolve(models_dir: str | Path, role: str, absolute: bool = False) -> tuple[str, str | None]:
    """(path_or_id, revision) for a role, from the manifest the `models` stage wrote. `absolute` for a
    loader: a Ray actor does not load in the stage's working directory. Paths written into outputs stay
    relative, so outputs do not depend on where the repository lives."""
    entry = manifest_entry(models_dir, role)
    if entry["path"] is not None:
        path = Path(models_dir) / entry["path"]
        return str(path.resolve() if absolute else path), None
    return entry["id"], entry["revision"]


def model_identity(models_dir: str | Path, role: str) -> dict:
    """What identifies a model's weights, for cache keys and dataset cards."""
    entry = manifest_entry(models_dir, role)
    return {"id": entry["id"], "revision": entry["revision"]}


def model_class(models_dir: str | Path, role: str) -> str:
    """The class the manifest says a role's model is (models.<role>.class)."""
    entry = manifest_entry(models_dir, role)
    if "class" not in entry:
        raise RuntimeError(f"{Path(models_dir) / 'manifest.json'} names no class for {role!r} (written by an "
                           "older version): run `dvc repro models`")
    return entry["class"]


def check_class(role: str, expected: str, actual: str, path_or_id: str) -> None:
    """Fail, naming role, expected and actual class, when a loaded model is not the declared class."""
    if actual != expected:
        raise RuntimeError(
            f"the {role} model {path_or_id!r} loaded as a {actual}, but models.{role}.class (in the "
            f"manifest) is {expected}: point models.{role}.id at a {expected} checkpoint, or set the class "
            "it is and run `dvc repro models`")


class ModelLoadError(RuntimeError):
    """A model could not be loaded. Unlike an error of one item's model call, this fails the stage:
    the synthesis runner lets it through instead of recording every item as a reject."""


class Lazy:
    """Defers an expensive load until first use, so a stage whose items are all cached loads no model.

    Attributes passed as keywords are known without loading (e.g. the batch size)."""

    def __init__(self, load: Any, **known: Any):
        self.__dict__.update(known, _load=load, _obj=None)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # pickling (shipping a Lazy to a Ray actor) probes dunders: never load for them
            raise AttributeError(name)
        if self._obj is None:
            start = time.perf_counter()
            try:
                self.__dict__["_obj"] = self._load()
            except Exception as exc:  # systemic: no item can be computed (see ModelLoadError)
                raise ModelLoadError(f"could not load the model: {exc}") from exc
            self.__dict__["load_seconds"] = round(time.perf_counter() - start, 2)
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
    ref, rev = (path_or_id, revision) if path_or_id else resolve(models_dir, "vlm", absolute=True)
    # The manifest's model is checked against its declared class; a checkpoint path (RL output) is what
    # training saved from that model.
    expected = None if path_or_id else model_class(models_dir, "vlm")
    device, dtype, trc = models.device, models.dtype, models.trust_remote_code

    def load() -> Any:  # imports inside: a fully cached stage never imports torch or vLLM
        if backend == "vllm":
            from viper.backends.vllm_backend import EngineSettings, VllmVLM

            if expected is not None:  # vLLM instantiates the class config.json names
                from transformers import AutoConfig

                archs = AutoConfig.from_pretrained(ref, revision=rev, trust_remote_code=trc).architectures
                check_class("vlm", expected, (archs or ["<none>"])[0], ref)
            return VllmVLM(ref, rev, device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels,
                           batch_size=batch_size, trust_remote_code=trc, max_images=max_images,
                           settings=EngineSettings.of(engine))
        from viper.backends.vlm import TransformersVLM

        vlm = TransformersVLM(ref, rev, device=device, dtype=dtype, min_pixels=min_pixels,
                              max_pixels=max_pixels, batch_size=batch_size, trust_remote_code=trc)
        if expected is not None:
            check_class("vlm", expected, type(vlm.model).__name__, ref)
        return vlm

    return Lazy(load, batch_size=batch_size, backend=backend)


def vlm_metrics(vlm: Any) -> dict:
    """What a stage's metrics say about its VLM: the backend that served the calls, and what loading
    cost (a vLLM engine starts on the first call: reported apart from generation)."""
    out: dict[str, Any] = {"backend": vlm.backend, "model_loaded": vlm.loaded}  # known without loading
    if vlm.loaded:
        out["load_seconds"] = vlm.load_seconds
        out["engine_start_seconds"] = getattr(vlm._obj, "engine_start_seconds", None)
    return out


def vlm_identity(models_dir: str | Path, backend: str, checkpoint: str | None = None) -> dict:
    """The VLM's identity for cache keys: weights *and* backend, since vLLM and transformers sample
    differently from the same seed (a vLLM run must not be served transformers replies). A `checkpoint`
    (a closed-loop round synthesising with the previous round's RL output) is identified by its content,
    so a round whose model did not change keeps its cached calls and a retrained one gets new keys."""
    if checkpoint:
        return {"id": "checkpoint", "revision": "sha256:" + dir_digest(Path(checkpoint)), "backend": backend}
    return {**model_identity(models_dir, "vlm"), "backend": backend}


def synthesis_vlm(models_dir: str | Path, p: Any, checkpoint: str | None, max_images: int = 2) -> tuple[Any, dict]:
    """The VLM a synthesis stage calls and its cache identity: the manifest's `vlm` (round 0), or a round's
    `checkpoint` (loaded by absolute path, so Ray actors on other working directories find it too)."""
    path = str(Path(checkpoint).resolve()) if checkpoint else None
    vlm = load_vlm(models_dir, p.models, p.vlm.min_pixels, p.vlm.max_pixels, p.vlm.batch_size, p.vlm.backend,
                   path, engine=p.vllm, max_images=max_images)
    return vlm, vlm_identity(models_dir, p.vlm.backend, checkpoint)


def round_vlm(identity: dict, checkpoint: str | None) -> dict:
    """For a stage's metrics: `{"vlm": identity + path}` when it ran on a round's checkpoint, else nothing
    (round 0's metrics stay as they were)."""
    return {"vlm": {**identity, "path": checkpoint}} if checkpoint else {}


def load_t2i(models_dir: str | Path, models: Any) -> Any:
    ref, device, dtype = resolve(models_dir, "t2i", absolute=True), models.device, models.dtype
    expected = model_class(models_dir, "t2i")

    def load() -> Any:
        from viper.backends.diffusion import TextToImage

        t2i = TextToImage(*ref, device=device, dtype=dtype)
        check_class("t2i", expected, type(t2i.pipe).__name__, ref[0])
        return t2i

    return Lazy(load)


def load_editor(models_dir: str | Path, models: Any) -> Any:
    ref, device, dtype = resolve(models_dir, "edit", absolute=True), models.device, models.dtype
    expected = model_class(models_dir, "edit")

    def load() -> Any:
        from viper.backends.diffusion import ImageEditor

        editor = ImageEditor(*ref, device=device, dtype=dtype)
        check_class("edit", expected, type(editor.pipe).__name__, ref[0])
        return editor

    return Lazy(load)


def load_embedder(models_dir: str | Path, models: Any) -> Any:
    from viper.backends.embed import Embedder

    ref = resolve(models_dir, "embed")
    embedder = Embedder(*ref, device=models.device)
    check_class("embed", model_class(models_dir, "embed"), embedder.model_class, ref[0])
    return embedder


def load_clip(models_dir: str | Path, models: Any) -> Any:
    ref, device = resolve(models_dir, "clip", absolute=True), models.device
    expected = model_class(models_dir, "clip")

    def load() -> Any:
        from viper.backends.clip import ClipScorer

        clip = ClipScorer(*ref, device=device)
        check_class("clip", expected, type(clip.model).__name__, ref[0])
        return clip

    return Lazy(load)
