"""Boxes for IVT: strict parsing of a VLM's reply, the model's frame vs the original image, IoU, Acc@tau, and
the overlay a refinement step sees.

Qwen2.5-VL answers in absolute pixels of its *resized input* (sides multiples of 28 within min/max pixels,
`smart_resize`), not of the original image and not on a 0-1000 grid; scoring happens in original pixels.
A reply is parsed strictly: no box, malformed JSON, a non-number or non-finite coordinate, an inverted or
empty box, or a box wholly outside the image is a `BoxFailure` with a fixed reason, never a guessed box.
"""

from __future__ import annotations

import json
import math
import re
from typing import Iterable, Literal

from PIL import Image, ImageDraw

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
FAILURE_REASONS = ("no_box", "not_json", "bad_coordinates", "non_finite", "inverted", "empty", "outside")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class BoxFailure(ValueError):
    """A reply or box that yields no usable box; `reason` is one of FAILURE_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in FAILURE_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def parse_box(reply: str) -> Box:
    """The first `bbox_2d` of a reply: `{"bbox_2d": [x1, y1, x2, y2], ...}` or a list of such objects,
    optionally inside a ```json fence; coordinates in the model's frame."""
    fenced = _FENCE.search(reply)
    text = (fenced.group(1) if fenced else reply).strip()
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if "bbox_2d" not in text or start < 0:
        raise BoxFailure("no_box", reply[:80])
    try:  # strict=False: a control character inside a free-text field (label, check) is not a box error
        value, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
    except ValueError as err:
        raise BoxFailure("not_json", str(err)[:80]) from None
    objs = value if isinstance(value, list) else [value]
    obj = next((v for v in objs if isinstance(v, dict) and "bbox_2d" in v), None)
    if obj is None:
        raise BoxFailure("no_box", reply[:80])
    coords = obj["bbox_2d"]
    if not isinstance(coords, list) or len(coords) != 4 or \
            not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords):
        raise BoxFailure("bad_coordinates", repr(coords)[:80])
    return check_box(tuple(float(c) for c in coords))  # type: ignore[arg-type]


def check_box(box: Box) -> Box:
    """The box itself, if its coordinates are finite and x2 > x1, y2 > y1."""
    if not all(math.isfinite(c) for c in box):
        raise BoxFailure("non_finite", repr(box))
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        raise BoxFailure("inverted", repr(box))
    if x2 == x1 or y2 == y1:
        raise BoxFailure("empty", repr(box))
    return box


def input_size(width: int, height: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """(width, height) of the image as Qwen2.5-VL sees it: the processor's own smart_resize."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return w, h


def rescale(box: Box, src: tuple[int, int], dst: tuple[int, int]) -> Box:
    """A box in an image of size `src` (width, height) mapped to the same image at size `dst`."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def clip(box: Box, width: int, height: int) -> Box:
    """The box's part inside the image; a box with no area inside it is `outside`."""
    x1, y1 = max(0.0, box[0]), max(0.0, box[1])
    x2, y2 = min(float(width), box[2]), min(float(height), box[3])
    if x2 <= x1 or y2 <= y1:
        raise BoxFailure("outside", f"{box!r} vs a {width}x{height} image")
    return x1, y1, x2, y2


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 for disjoint ones)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def accuracy(ious: Iterable[float | None], tau: float, op: Literal[">=", ">"] = ">=") -> float:
    """Share of samples whose IoU passes `tau`. `op` is the benchmark's convention: `>=` (Ref-Adv,
    lmms-eval's RefCOCOg) or `>` (Ref-L4's evaluator). A failed prediction (None) counts as a miss."""
    values = list(ious)
    if op not in (">=", ">"):
        raise ValueError(f"op must be '>=' or '>', not {op!r}")
    hit = (lambda v: v >= tau) if op == ">=" else (lambda v: v > tau)
    return sum(1 for v in values if v is not None and hit(v)) / len(values) if values else 0.0


def draw_box(image: Image.Image, box: Box, colour: tuple[int, int, int] = (255, 0, 0), alpha: float = 0.35,
             outline: int = 2) -> Image.Image:
    """A copy of `image` with `box` (original pixels) filled semi-transparently and outlined: what the model
    sees of its previous answer at the next step."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle(box, fill=(*colour, round(255 * alpha)), outline=(*colour, 255), width=outline)
    return Image.alpha_composite(base, layer).convert("RGB")
