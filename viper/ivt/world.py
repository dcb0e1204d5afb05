"""The tiny grounding world IVT trains and is scored on by default: generated scenes with known object boxes
and referring expressions that a shape name alone cannot resolve.

Every scene holds a target and at least one distractor of the target's shape; the expression singles the
target out by colour, by size ("the larger ..."), or by its relation to another object ("the circle left of
the blue square"). An expression is kept only if `resolve` finds exactly the target among the scene's
objects, so every sample has one right answer. Boxes are in original-image pixels, (x1, y1, x2, y2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from viper.synth.seeds import BACKGROUNDS, COLORS, SHAPES

RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    box: tuple[int, int, int, int]

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def related(a: Obj, relation: str, b: Obj) -> bool:
    """Whether `a` is wholly `relation` `b` (no overlap along that axis: unambiguous to a viewer)."""
    if relation == "left of":
        return a.box[2] <= b.box[0]
    if relation == "right of":
        return a.box[0] >= b.box[2]
    if relation == "above":
        return a.box[3] <= b.box[1]
    return a.box[1] >= b.box[3]  # below


def resolve(objects: list[Obj], query: dict) -> list[int]:
    """Indices of the objects an expression's structure picks: shape, then colour, size or relation."""
    idx = [i for i, o in enumerate(objects) if o.shape == query["shape"]
           and query.get("colour") in (None, o.colour)]
    if query.get("size"):
        if len(idx) < 2:
            return []
        areas = sorted(objects[i].area for i in idx)
        tie = areas[-1] == areas[-2] if query["size"] == "larger" else areas[0] == areas[1]
        if tie:
            return []  # no strict extreme: "the larger" means nothing
        pick = max if query["size"] == "larger" else min
        idx = [pick(idx, key=lambda i: objects[i].area)]
    if query.get("relation"):
        relation, anchor = query["relation"]
        idx = [i for i in idx if i != anchor and related(objects[i], relation, objects[anchor])]
    return idx


def phrase(objects: list[Obj], query: dict) -> str:
    words = ["the", query["size"] if query.get("size") else None, query.get("colour"), query["shape"]]
    text = " ".join(w for w in words if w)
    if query.get("relation"):
        relation, anchor = query["relation"]
        text += f" {relation} the {objects[anchor].colour} {objects[anchor].shape}"
    return text


def _place(rng: np.random.Generator, size: int,
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    for _ in range(50):
        side = int(rng.integers(size // 8, size // 3))
        x, y = (int(v) for v in rng.integers(0, size - side, size=2))
        box = (x, y, x + side, y + side)
        if all(box[2] + 2 <= t[0] or t[2] + 2 <= box[0] or box[3] + 2 <= t[1] or t[3] + 2 <= box[1] for t in taken):
            return box
    return None


def _scene(rng: np.random.Generator, size: int) -> list[Obj] | None:
    shape = SHAPES[rng.integers(len(SHAPES))]
    colours = list(COLORS)
    n_same, n_other = int(rng.integers(2, 4)), int(rng.integers(0, 3))
    specs = [(shape, colours[rng.integers(len(colours))]) for _ in range(n_same)]
    specs += [(SHAPES[rng.integers(len(SHAPES))], colours[rng.integers(len(colours))]) for _ in range(n_other)]
    boxes: list[tuple[int, int, int, int]] = []
    for _ in specs:
        box = _place(rng, size, boxes)
        if box is None:
            return None
        boxes.append(box)
    return [Obj(s, c, b) for (s, c), b in zip(specs, boxes)]


def _query(rng: np.random.Generator, objects: list[Obj], target: int) -> dict | None:
    """A structure that resolves to `target` alone, trying colour, then size, then a relation (in random order)."""
    t = objects[target]
    options = [{"shape": t.shape, "colour": t.colour}, {"shape": t.shape, "size": "larger"},
               {"shape": t.shape, "size": "smaller"}]
    options += [{"shape": t.shape, "relation": (r, anchor)} for anchor in range(len(objects)) if anchor != target
                for r in RELATIONS]
    for k in rng.permutation(len(options)):
        q = options[int(k)]
        if "relation" in q:  # the anchor itself must be unambiguous by colour + shape
            a = objects[q["relation"][1]]
            if sum((o.shape, o.colour) == (a.shape, a.colour) for o in objects) != 1:
                continue
        if resolve(objects, q) == [target]:
            return q
    return None


def draw(objects: list[Obj], size: int, background: tuple[int, int, int]) -> Image.Image:
    img = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(img)
    for o in objects:
        x1, y1, x2, y2 = o.box
        fill = COLORS[o.colour]
        if o.shape == "circle":
            d.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
        elif o.shape == "square":
            d.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
        else:
            d.polygon([((x1 + x2) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)
    return img


def split_of(sample_id: str, val: float, test: float) -> str:
    u = int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if u < test else "val" if u < test + val else "train"


def samples(n: int, size: int, seed: int, val: float = 0.15, test: float = 0.2) -> Iterator[dict]:
    """`n` grounding samples: {id, split, image, expression, box, width, height, distractors, objects}."""
    rng = np.random.default_rng(seed)
    made = 0
    while made < n:
        objects = _scene(rng, size)
        if objects is None:
            continue
        target = int(rng.integers(len(objects)))
        if sum(o.shape == objects[target].shape for o in objects) < 2:
            continue  # the shape alone must not resolve it
        query = _query(rng, objects, target)
        if query is None:
            continue
        background = list(BACKGROUNDS.values())[rng.integers(len(BACKGROUNDS))]
        if any(COLORS[o.colour] == background for o in objects):
            continue
        sid = f"ivt-{seed}-{made:05d}"
        yield {"id": sid, "split": split_of(sid, val, test), "image": draw(objects, size, background),
               "expression": phrase(objects, query), "box": objects[target].box, "width": size, "height": size,
               "distractors": sum(o.shape == objects[target].shape for o in objects) - 1,
               "objects": [(o.shape, o.colour, o.box) for o in objects]}
        made += 1
