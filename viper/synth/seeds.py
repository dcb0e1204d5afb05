"""Seed images: generate synthetic scenes or read a folder, normalise, content-hash, dedupe.

A seed's id is the sha256 (first 16 hex chars) of its normalised RGB pixels and size, so the same
picture saved twice (or as PNG and as a re-encoded copy with equal pixels) collapses to one record.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from viper.synth.runner import clean_message, error_detail

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "purple": (140, 60, 180), "orange": (240, 140, 30), "black": (20, 20, 20), "white": (245, 245, 245),
}
BACKGROUNDS = {"sky": (170, 210, 240), "grass": (120, 180, 100), "sand": (225, 205, 160),
               "gray": (150, 150, 150), "night": (30, 30, 60)}
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Seed:
    id: str
    image: Image.Image
    source: str


@dataclass(frozen=True)
class SeedReject:
    """An input that is not a seed. `detail` is deterministic (no object addresses or temporary paths),
    so identical runs write byte-identical rejects tables."""
    source: str
    reason: str
    detail: str


def image_id(img: Image.Image) -> str:
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()[:16]


def draw_scene(rng: np.random.Generator, size: int) -> Image.Image:
    """A background with 1-4 coloured shapes and sometimes a short text label."""
    bg = list(BACKGROUNDS.values())[rng.integers(len(BACKGROUNDS))]
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        color = list(COLORS.values())[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        r = int(rng.integers(size // 10, size // 4))
        cx, cy = (int(v) for v in rng.integers(r, size - r, size=2))
        box = (cx - r, cy - r, cx + r, cy + r)
        if shape == "circle":
            draw.ellipse(box, fill=color)
        elif shape == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=color)
    if rng.random() < 0.3:
        draw.text((2, 2), "ABCDEFGH"[rng.integers(8)] + str(int(rng.integers(10))), fill=(0, 0, 0))
    return img


def synthetic_seeds(n: int, size: int, seed: int) -> Iterator[tuple[str, Image.Image]]:
    """n scenes, drawn one at a time as they are consumed."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"synthetic:{i}", draw_scene(rng, size)


def normalise(img: Image.Image, max_side: int) -> Image.Image:
    """EXIF orientation applied, RGB, longest side <= max_side (aspect kept)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        img = base
    elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((arr / max(arr.max(), 1) * 255).astype(np.uint8)).convert("RGB")
    else:
        img = img.convert("RGB")
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    return img


class InputRejected(ValueError):
    """An input that cannot be a seed: `reason` (a fixed word) and a deterministic `detail`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def open_image(data: bytes, max_pixels: int, name: str = "", min_side: int = 1) -> Image.Image:
    """Decode fully or raise InputRejected(reason, detail)."""
    if not data:
        raise InputRejected("empty_file")
    # Our own limit below rejects with a recorded reason instead of PIL's bomb check. Set for this call only:
    # the global guards every other image this process decodes (Viper10K shards, benchmark rows).
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        return _decode(data, max_pixels, name, min_side)
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _decode(data: bytes, max_pixels: int, name: str, min_side: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
            # The header alone gives the size: a decompression bomb is refused before it is decoded.
            if img.width * img.height > max_pixels:
                raise InputRejected("too_many_pixels", f"{img.width}x{img.height}")
            if min(img.size) < min_side:
                raise InputRejected("too_small",
                                    f"{img.width}x{img.height}, shorter side below min_side {min_side}")
            img.load()
    except InputRejected:
        raise
    except Exception as exc:  # PIL raises many types for corrupt data
        if "truncated" in str(exc):
            raise InputRejected("truncated", clean_message(str(exc))) from None
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES and isinstance(exc, Image.UnidentifiedImageError):
            raise InputRejected("not_an_image") from None
        # PIL's messages can name the in-memory file ("<_io.BytesIO object at 0x...>"): cleaned
        raise InputRejected("undecodable", error_detail(exc)) from None
    return img


def folder_inputs(folder: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every non-hidden file below `folder` (sorted), read one at a time as consumed: what is not an image is
    rejected, not skipped. Only the list of paths is held, never the folder's contents."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    for p in files:
        yield p.relative_to(folder).as_posix(), p.read_bytes()


def normalised(inputs: Iterable[tuple[str, Image.Image | bytes]], max_side: int, max_pixels: int,
               min_side: int = 1) -> Iterator[Seed | SeedReject]:
    """Each input, in order, as a normalised `Seed` or a `SeedReject`; only the first of each content id is
    a seed (later ones are `duplicate`). Holds the ids seen, not the images.

    Images whose shorter side is below `min_side`, as read or once downscaled to `max_side` (a thin
    strip), are rejected as `too_small`: the models downstream cannot work on them."""
    first: dict[str, str] = {}  # content id -> the source that gave it first
    for source, raw in inputs:
        try:
            img = raw if isinstance(raw, Image.Image) else open_image(raw, max_pixels, source, min_side)
            size = img.size
            img = normalise(img, max_side)
            if min(img.size) < min_side:
                raise InputRejected("too_small", f"{size[0]}x{size[1]} becomes {img.width}x{img.height} at "
                                    f"max_side {max_side}, shorter side below min_side {min_side}")
        except InputRejected as exc:
            yield SeedReject(source, exc.reason, exc.detail)
            continue
        except Exception as exc:  # noqa: BLE001 - a hostile file may break decoding or conversion anywhere
            yield SeedReject(source, "undecodable", error_detail(exc))
            continue
        sid = image_id(img)
        if sid in first:
            yield SeedReject(source, "duplicate", f"same content as {first[sid]}")
            continue
        first[sid] = source
        yield Seed(sid, img, source)


def ingest(inputs: Iterable[tuple[str, Image.Image | bytes]], max_side: int, max_pixels: int,
           min_side: int = 1) -> tuple[list[Seed], list[SeedReject]]:
    """`normalised` collected: (seeds sorted by id, rejects in input order). For small sets; the stage streams."""
    seeds, rejects = [], []
    for out in normalised(inputs, max_side, max_pixels, min_side):
        (seeds if isinstance(out, Seed) else rejects).append(out)
    return sorted(seeds, key=lambda s: s.id), rejects


def write_seed_shards(out: Path, outputs: Iterable[Seed | SeedReject], stats) -> tuple[dict[str, dict], list]:
    """Spill each `Seed` to `out/.staging` as the PNG it will be, then write the shards in id order: memory
    holds ids and records, never images. Returns (id -> record, rejects as runner.Reject rows); counts go
    into `stats` (a runner.StepStats). What the `seeds` and `round_seeds` stages write."""
    import shutil

    from viper.store.io import png_bytes, write_shards
    from viper.synth.runner import Reject

    staging = out / ".staging"
    staging.mkdir()
    seeds: dict[str, dict] = {}
    rejects: list[Reject] = []
    for item in outputs:
        stats.items_in += 1
        if isinstance(item, Seed):
            (staging / item.id).write_bytes(png_bytes(item.image))
            seeds[item.id] = {"id": item.id, "source": item.source, "width": item.image.width,
                              "height": item.image.height}
        else:
            rejects.append(Reject(item.source, item.reason, item.detail))
    stats.items_out = len(seeds)
    stats.rejects.update(r.reason for r in rejects)
    if seeds:
        write_shards(out, ({"__key__": k, "png": (staging / k).read_bytes(), "json": seeds[k]}
                           for k in sorted(seeds)), shard_size=1000)
    shutil.rmtree(staging)
    return seeds, rejects
