"""A tiny synthetic benchmark in MMStar's TSV format, for CPU runs of the evaluation stage.

Every answer can be read off a 64x64 PIL drawing (colours, shapes, positions, sizes, counts, text,
a bar chart), so a capable model scores high and a random one about 25%; the six categories carry
MMStar's names so per-category reporting is exercised. Each drawing supports two questions; every
fourth row asks the second one through an image back-reference (`image` = the other row's index),
which is the form VLMEvalKit uses to avoid repeating image data.

The other six paper benchmarks get generators of the same kind (same drawings, same determinism:
equal arguments give equal bytes), each writing its VLMEvalKit TSV layout: RealWorldQA (2-4 options),
MME-RealWorld (5 options and the "multi-choice options" column), BLINK and Mantis-Eval (several images
per row), HallusionBench (Yes/No questions grouped by set, figure and question in the `index`) and
CRPE relation (blocks of 4 circular variants). `TINY_GENERATORS` maps each benchmark name to a
`(path, rows, seed)` callable.
"""

from __future__ import annotations

import base64
import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from viper.eval.tsv import write_tsv

CATEGORIES = ("coarse perception", "fine-grained perception", "instance reasoning",
              "logical reasoning", "math", "science & technology")
LETTERS = "ABCD"
SIZE = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220),
           "yellow": (235, 210, 40), "purple": (140, 60, 180), "orange": (240, 140, 30)}
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128),
               "pink": (255, 190, 210)}
KINDS = ("circle", "square", "triangle", "diamond")
TEXT_LETTERS = "EFGHKMNPRSTUVWXY"  # no A-D or Z, so the drawn text never looks like an answer letter
CELL = (11, 32, 53)  # centres of a 3x3 grid; shapes of radius <= 10 in distinct cells never touch
SIDES = {"on the left": (0, 1), "on the right": (2, 1), "at the top": (1, 0), "at the bottom": (1, 2)}


@dataclass
class Question:
    text: str
    correct: str
    distractors: list[str]  # all different from `correct`; three in the single-image templates
    l2: str


@dataclass
class Shape:
    kind: str
    colour: str
    cell: tuple[int, int]
    r: int = 8

    @property
    def name(self) -> str:
        return f"the {self.colour} {self.kind}"


def _others(rng: random.Random, pool, exclude, k: int = 3) -> list[str]:
    return rng.sample([x for x in pool if x not in exclude], k)


def _canvas(bg: str = "white") -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[bg])
    return img, ImageDraw.Draw(img)


def _draw(d: ImageDraw.ImageDraw, s: Shape, centre: tuple[int, int] | None = None) -> None:
    cx, cy = centre or (CELL[s.cell[0]], CELL[s.cell[1]])
    r, fill = s.r, COLOURS[s.colour]
    if s.kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif s.kind == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif s.kind == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    else:
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def _scene(shapes: list[Shape]) -> Image.Image:
    img, d = _canvas()
    for s in shapes:
        _draw(d, s)
    return img


def _cells(rng: random.Random, n: int) -> list[tuple[int, int]]:
    return rng.sample([(x, y) for y in range(3) for x in range(3)], n)


# --- one template per kind of drawing; each returns the image and two or more questions ---------

def _single_shape(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    bg, kind, colour = rng.choice(list(BACKGROUNDS)), rng.choice(KINDS), rng.choice(list(COLOURS))
    img, d = _canvas(bg)
    _draw(d, Shape(kind, colour, (1, 1), r=16), centre=(32, 32))
    return img, [
        Question("What is the background colour of the image?", bg, _others(rng, BACKGROUNDS, {bg}),
                 "background colour"),
        Question("What shape is shown in the image?", kind, _others(rng, KINDS, {kind}), "shape"),
    ]


def _coloured_kinds(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    kinds, colours = rng.sample(KINDS, 3), rng.sample(list(COLOURS), 3)
    shapes = [Shape(k, c, cell) for k, c, cell in zip(kinds, colours, _cells(rng, 3))]
    qs = [Question(f"What colour is the {s.kind}?", s.colour, _others(rng, COLOURS, {s.colour}),
                   "shape colour") for s in shapes]
    return _scene(shapes), qs


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _letter(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    letter, colour = rng.choice(TEXT_LETTERS), rng.choice(list(COLOURS))
    img, d = _canvas()
    font = _font(40)
    x0, y0, x1, y1 = d.textbbox((0, 0), letter, font=font)
    d.text(((SIZE - (x1 - x0)) / 2 - x0, (SIZE - (y1 - y0)) / 2 - y0), letter, font=font,
           fill=COLOURS[colour])
    return img, [
        Question("Which letter is written in the image?", letter, _others(rng, TEXT_LETTERS, {letter}),
                 "text"),
        Question("What colour is the letter in the image?", colour, _others(rng, COLOURS, {colour}),
                 "text colour"),
    ]


def _sides(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    sides, colours, kinds = rng.sample(list(SIDES), 2), rng.sample(list(COLOURS), 2), rng.sample(KINDS, 2)
    shapes = [Shape(k, c, SIDES[side]) for k, c, side in zip(kinds, colours, sides)]
    qs = [Question(f"Where is {s.name} in the image?", side, _others(rng, SIDES, {side}), "position")
          for s, side in zip(shapes, sides)]
    return _scene(shapes), qs


def _sizes(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    # Radii 4/6/8/10: the biggest and smallest are unique and differ visibly from the rest.
    radii = rng.sample([4, 6, 8, 10], 4)
    shapes = [Shape(rng.choice(KINDS), c, cell, r)
              for c, cell, r in zip(rng.sample(list(COLOURS), 4), _cells(rng, 4), radii)]
    big, small = max(shapes, key=lambda s: s.r), min(shapes, key=lambda s: s.r)
    names = [s.name for s in shapes]
    return _scene(shapes), [
        Question("Which shape is the biggest?", big.name, [n for n in names if n != big.name], "size"),
        Question("Which shape is the smallest?", small.name, [n for n in names if n != small.name], "size"),
    ]


def _majority(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    kinds = rng.sample(KINDS, 4)
    present, missing = kinds[:3], kinds[3]
    shape_kinds = present + [rng.choice(present) for _ in range(2)]
    major, *minor = rng.sample(list(COLOURS), 3)
    colours = [major] * 3 + minor
    rng.shuffle(shape_kinds)
    rng.shuffle(colours)
    shapes = [Shape(k, c, cell) for k, c, cell in zip(shape_kinds, colours, _cells(rng, 5))]
    return _scene(shapes), [
        Question("Which colour do most of the shapes have?", major,
                 minor + _others(rng, COLOURS, {major, *minor}, 1), "majority"),
        Question("Which of these shapes does not appear in the image?", missing, present, "absence"),
    ]


def _numbers(rng: random.Random, correct: int) -> list[str]:
    return [str(n) for n in _others(rng, range(9), {correct})]


def _counts(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    n = rng.randint(1, 6)
    shapes = [Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), cell) for cell in _cells(rng, n)]
    total = sum(s.kind in ("circle", "square") for s in shapes)
    return _scene(shapes), [
        Question("How many shapes are in the image?", str(n), _numbers(rng, n), "counting"),
        Question("What is the number of circles plus the number of squares in the image?", str(total),
                 _numbers(rng, total), "sum of counts"),
    ]


def _bars(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    colours, heights = rng.sample(list(COLOURS), 4), rng.sample([12, 24, 36, 48], 4)
    img, d = _canvas()
    for i, (c, h) in enumerate(zip(colours, heights)):
        d.rectangle((6 + 14 * i, 58 - h, 16 + 14 * i, 58), fill=COLOURS[c])
    d.line((2, 59, 61, 59), fill=(0, 0, 0))
    tall, short = colours[heights.index(48)], colours[heights.index(12)]
    return img, [
        Question("In the bar chart, which colour is the tallest bar?", tall,
                 [c for c in colours if c != tall], "bar chart"),
        Question("In the bar chart, which colour is the shortest bar?", short,
                 [c for c in colours if c != short], "bar chart"),
    ]


FRACTIONS = {"one quarter": 1, "one half": 2, "three quarters": 3, "all of it": 4}


def _gauge(rng: random.Random) -> tuple[Image.Image, list[Question]]:
    fraction, colour = rng.choice(list(FRACTIONS)), rng.choice(list(COLOURS))
    img, d = _canvas()
    d.rectangle((8, 24, 8 + 12 * FRACTIONS[fraction], 40), fill=COLOURS[colour])
    d.rectangle((8, 24, 56, 40), outline=(0, 0, 0))
    return img, [
        Question("What fraction of the bar is filled?", fraction, _others(rng, FRACTIONS, {fraction}),
                 "gauge"),
        Question("What colour is the filled part of the bar?", colour, _others(rng, COLOURS, {colour}),
                 "gauge"),
    ]


Template = Callable[[random.Random], tuple[Image.Image, list[Question]]]
TEMPLATES: dict[str, tuple[Template, ...]] = {
    "coarse perception": (_single_shape,),
    "fine-grained perception": (_coloured_kinds, _letter),
    "instance reasoning": (_sides, _sizes),
    "logical reasoning": (_majority,),
    "math": (_counts,),
    "science & technology": (_bars, _gauge),
}


def _png_b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # PIL writes no timestamp, so equal pixels give equal bytes
    return base64.b64encode(buf.getvalue()).decode("ascii")


def make_tiny_mmstar(path: str | Path, rows_per_category: int, seed: int) -> None:
    """Write a synthetic MMStar-format TSV: 6 categories x `rows_per_category` rows, byte-deterministic."""
    if rows_per_category <= 0:
        raise ValueError(f"rows_per_category must be positive, got {rows_per_category}")
    rng = random.Random(seed)
    rows: list[dict] = []
    for category in CATEGORIES:
        # Each correct letter appears equally often (up to rounding) so a letter bias cannot score.
        letters = [LETTERS[i % 4] for i in range(rows_per_category)]
        rng.shuffle(letters)
        source_index, spare = None, []  # the last drawn image and its unasked questions
        for k, letter in enumerate(letters):
            if k % 4 == 1 and spare:
                q, image = spare.pop(0), str(source_index)
            else:
                img, qs = rng.choice(TEMPLATES[category])(rng)
                rng.shuffle(qs)
                q, spare, image, source_index = qs[0], qs[1:], _png_b64(img), len(rows)
            texts = list(q.distractors)
            rng.shuffle(texts)
            texts.insert(LETTERS.index(letter), q.correct)
            rows.append({"index": len(rows), "image": image, "question": q.text,
                         **dict(zip(LETTERS, texts)), "answer": letter,
                         "category": category, "l2-category": q.l2})
    write_tsv(pd.DataFrame(rows), path)


# =================================================================================================
# The other six paper benchmarks. Same drawings, same rule: every answer can be read off the image(s).
# =================================================================================================

ALL_TEMPLATES: tuple[Template, ...] = tuple(t for ts in TEMPLATES.values() for t in ts)
NUMBERS = tuple(str(n) for n in range(9))
ORDINALS = ("the first image", "the second image", "the third image", "the fourth image")


def _check_rows(rows: int, multiple: int = 1) -> None:
    if rows <= 0 or rows % multiple:
        need = "a positive multiple of %d" % multiple if multiple > 1 else "positive"
        raise ValueError(f"rows must be {need}, got {rows}")


def _write(rows: list[dict], columns: list[str], path: str | Path) -> None:
    # Explicit column order: rows with fewer options must not move the later columns around.
    write_tsv(pd.DataFrame(rows, columns=columns), path)


def _extra_pool(q: Question) -> tuple[str, ...] | None:
    """Values of the same kind as the correct answer, to draw more distractors from (None if unknown)."""
    for pool in (tuple(COLOURS), tuple(TEXT_LETTERS), NUMBERS):
        if q.correct in pool:
            return pool
    return None


def _distractors(rng: random.Random, q: Question, k: int) -> list[str] | None:
    """`k` wrong options: the question's own, topped up from its pool; None if there are not enough.

    Extra colours, letters or numbers are absent from the drawing (or not the asked-for one), so the
    answer stays unique.
    """
    if len(q.distractors) >= k:
        return rng.sample(q.distractors, k)
    pool = _extra_pool(q)
    if pool is None:
        return None
    extra = [v for v in pool if v != q.correct and v not in q.distractors]
    if len(q.distractors) + len(extra) < k:
        return None
    return list(q.distractors) + rng.sample(extra, k - len(q.distractors))


def _balanced_letters(rng: random.Random, n: int, letters: str) -> list[str]:
    out = [letters[i % len(letters)] for i in range(n)]
    rng.shuffle(out)
    return out


def _single_image_rows(rng: random.Random, rows: int, templates: tuple[Template, ...],
                       usable: Callable[[Question], bool] = lambda q: True):
    """Yield (question, image cell) pairs; every fourth row re-asks the last drawing via back-reference.

    The row index is the position, so the back-reference is the index of the row that drew the image.
    """
    source, spare = None, []
    for i in range(rows):
        if i % 4 == 1 and spare:
            yield spare.pop(0), str(source)
            continue
        while True:
            img, qs = rng.choice(templates)(rng)
            qs = [q for q in qs if usable(q)]
            if qs:
                break
        rng.shuffle(qs)
        source, spare = i, qs[1:]
        yield qs[0], _png_b64(img)


# --- RealWorldQA: one image, 2-4 options (absent ones empty), `category` -----------------------------

def make_tiny_realworldqa(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic RealWorldQA-format TSV: one image per row; the number of options cycles 2, 3, 4."""
    _check_rows(rows)
    rng = random.Random(seed)
    out = []
    for i, (q, image) in enumerate(_single_image_rows(rng, rows, ALL_TEMPLATES)):
        k = 2 + i % 3
        texts = rng.sample(q.distractors, k - 1)
        pos = rng.randrange(k)
        texts.insert(pos, q.correct)
        out.append({"index": i, "image": image, "question": q.text, **dict(zip(LETTERS, texts)),
                    "answer": LETTERS[pos], "category": q.l2})
    _write(out, ["index", "image", "question", *LETTERS, "answer", "category"], path)


# --- MME-RealWorld: 5 options A-E, `category` ("Task/Subtask") and `l2-category` ---------------------

MME_LETTERS = "ABCDE"
# VLMEvalKit's MME-RealWorld rating splits `category` at "/" into a task (Perception, Reasoning) and one
# of five subtasks; the drawings are assigned to them by kind of question.
MME_CATEGORIES = {
    "shape colour": "Perception/Monitoring", "majority": "Reasoning/Monitoring",
    "text": "Perception/OCR with Complex Context", "text colour": "Perception/OCR with Complex Context",
    "counting": "Perception/Remote Sensing", "sum of counts": "Reasoning/Remote Sensing",
    "bar chart": "Perception/Diagram and Table", "gauge": "Perception/Diagram and Table",
}
MME_TEMPLATES = (_coloured_kinds, _letter, _majority, _counts, _bars, _gauge)
MME_CHOICE_PROMPT = "The choices are listed below:\n"  # VLMEvalKit's prefix of "multi-choice options"


def make_tiny_mme_realworld(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic MME-RealWorld-format TSV (English): five options, correct letters balanced.

    Besides A-E the file carries VLMEvalKit's "multi-choice options" column ("The choices are listed
    below:" and one "(X) text" line per option), from which VLMEvalKit cuts the A-E texts.
    """
    _check_rows(rows)
    rng = random.Random(seed)
    letters = _balanced_letters(rng, rows, MME_LETTERS)

    def usable(q: Question) -> bool:
        return q.l2 in MME_CATEGORIES and _extra_pool(q) is not None

    out = []
    for i, (q, image) in enumerate(_single_image_rows(rng, rows, MME_TEMPLATES, usable)):
        texts = _distractors(rng, q, 4)
        rng.shuffle(texts)
        texts.insert(MME_LETTERS.index(letters[i]), q.correct)
        lines = [f"({k}) {t}" for k, t in zip(MME_LETTERS, texts)]
        out.append({"index": i, "image": image, "question": q.text,
                    "multi-choice options": MME_CHOICE_PROMPT + "\n".join(lines),
                    **dict(zip(MME_LETTERS, texts)), "answer": letters[i],
                    "category": MME_CATEGORIES[q.l2], "l2-category": q.l2})
    _write(out, ["index", "image", "question", "multi-choice options", *MME_LETTERS, "answer", "category",
                 "l2-category"], path)


def make_mme_realworld_highres(path: str | Path, rows: int, seed: int, size: tuple[int, int] = (1500, 1000),
                               quality: int = 90, grain: int = 24) -> None:
    """An MME-RealWorld-shaped TSV at the real benchmark's image sizes, for memory and speed benchmarks.

    Rows, columns and prompts are those of `make_tiny_mme_realworld`; each drawing is scaled up to
    `size`, given seeded photo-like grain (so its JPEG is about as large as a photo's, ~1 MB at
    1500x1000 instead of a few KB for a flat drawing) and stored as JPEG base64. Every row carries its
    own image data, as in the MME-RealWorld.tsv VLMEvalKit builds (no back-references).
    """
    import numpy as np

    make_tiny_mme_realworld(path, rows, seed)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    rng = np.random.default_rng(seed)
    data: dict[str, str] = {}
    for idx, cell in zip(df["index"], df["image"]):
        if len(cell) <= 64:  # a back-reference: filled in below with its target's data
            continue
        img = Image.open(io.BytesIO(base64.b64decode(cell))).convert("RGB").resize(size, Image.NEAREST)
        noise = rng.integers(-grain, grain + 1, size=(size[1], size[0], 3), dtype=np.int16)
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        data[idx] = base64.b64encode(buf.getvalue()).decode("ascii")
    df["image"] = [data[cell] if len(cell) <= 64 else data[idx]
                   for idx, cell in zip(df["index"], df["image"])]
    df["index"] = df["index"].astype(int)
    write_tsv(df, path)


# --- multi-image drawings (BLINK, Mantis-Eval) ---------------------------------------------------

def _draw_letter(letter: str, colour: str, bg: str = "white") -> Image.Image:
    img, d = _canvas(bg)
    font = _font(40)
    x0, y0, x1, y1 = d.textbbox((0, 0), letter, font=font)
    d.text(((SIZE - (x1 - x0)) / 2 - x0, (SIZE - (y1 - y0)) / 2 - y0), letter, font=font,
           fill=COLOURS[colour])
    return img


def _one_shape(kind: str, colour: str) -> Image.Image:
    img, d = _canvas()
    _draw(d, Shape(kind, colour, (1, 1), r=16), centre=(32, 32))
    return img


MultiTemplate = Callable[[random.Random, int], tuple[list[Image.Image], Question]]


def _mi_which(rng: random.Random, n: int) -> tuple[list[Image.Image], Question]:
    shapes = [Shape(rng.choice(KINDS), c, (1, 1)) for c in rng.sample(list(COLOURS), n)]
    t = rng.randrange(n)
    return [_one_shape(s.kind, s.colour) for s in shapes], Question(
        f"Which image shows {shapes[t].name}?", ORDINALS[t],
        [o for o in ORDINALS[:n] if o != ORDINALS[t]], "Visual_Similarity")


def _mi_most(rng: random.Random, n: int) -> tuple[list[Image.Image], Question]:
    counts = rng.sample(range(1, 7), n)
    most = rng.random() < 0.5
    t = counts.index(max(counts) if most else min(counts))
    images = [_scene([Shape(rng.choice(KINDS), rng.choice(list(COLOURS)), cell) for cell in _cells(rng, c)])
              for c in counts]
    return images, Question(f"Which image contains the {'most' if most else 'fewest'} shapes?",
                            ORDINALS[t], [o for o in ORDINALS[:n] if o != ORDINALS[t]], "Counting")


def _mi_count(rng: random.Random, n: int) -> tuple[list[Image.Image], Question]:
    kind = rng.choice(KINDS)
    kinds = [rng.choice(KINDS) for _ in range(n)]
    total = kinds.count(kind)
    images = [_one_shape(k, rng.choice(list(COLOURS))) for k in kinds]
    return images, Question(f"In how many of the images is there a {kind}?", str(total),
                            [str(v) for v in range(n + 1) if v != total], "Counting")


def _mi_spell(rng: random.Random, n: int) -> tuple[list[Image.Image], Question]:
    letters = rng.sample(TEXT_LETTERS, n)
    images = [_draw_letter(ch, rng.choice(list(COLOURS))) for ch in letters]
    word = "".join(letters)
    wrong = {word[::-1]}  # the same letters in reverse order, then one letter swapped for an absent one
    others = [ch for ch in TEXT_LETTERS if ch not in letters]
    while len(wrong) < 3:
        k = rng.randrange(n)
        wrong.add(word[:k] + rng.choice(others) + word[k + 1:])
    return images, Question("Reading the letter in each image in order, which sequence do they form?",
                            word, sorted(wrong), "Text_Reading")


def _mi_same(rng: random.Random, n: int) -> tuple[list[Image.Image], Question]:
    same = rng.random() < 0.5
    colours = [rng.choice(list(COLOURS))] * n if same else rng.sample(list(COLOURS), n)
    images = [_one_shape(rng.choice(KINDS), c) for c in colours]
    return images, Question("Do the shapes in all the images have the same colour?",
                            "yes" if same else "no", ["no" if same else "yes"], "Colour_Comparison")


MULTI_TEMPLATES: tuple[MultiTemplate, ...] = (_mi_which, _mi_most, _mi_count, _mi_spell, _mi_same)


def _image_list(images: list[Image.Image]) -> str:
    """VLMEvalKit's multi-image cell: a Python list literal of base64 strings."""
    return str([_png_b64(img) for img in images])


def _mc_cells(rng: random.Random, q: Question, max_options: int = 4) -> tuple[dict, str]:
    """Option cells (correct one at a random letter) and the answer letter."""
    k = min(max_options, len(q.distractors) + 1)
    texts = rng.sample(q.distractors, k - 1)
    pos = rng.randrange(k)
    texts.insert(pos, q.correct)
    return dict(zip(LETTERS, texts)), LETTERS[pos]


# --- BLINK: 2-3 images per row, 2-4 options, `category` ------------------------------------------

def make_tiny_blink(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic BLINK-format TSV: 2 or 3 images per row (a list literal in `image`), up to 4 options."""
    _check_rows(rows)
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        images, q = MULTI_TEMPLATES[i % len(MULTI_TEMPLATES)](rng, rng.choice((2, 3)))
        options, answer = _mc_cells(rng, q)
        out.append({"index": i, "image": _image_list(images), "question": q.text, **options,
                    "answer": answer, "category": q.l2})
    _write(out, ["index", "image", "question", *LETTERS, "answer", "category"], path)


# --- Mantis-Eval: 2-4 images, "<image>" tags, multiple-choice and short-answer rows ---------------

MANTIS_CATEGORIES = {"Visual_Similarity": "Co-reference", "Counting": "Counting",
                     "Text_Reading": "Temporal", "Colour_Comparison": "Comparison"}


def make_tiny_mantis(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic Mantis-Eval TSV in the layout `paper_files.convert_mantis` writes.

    2-4 images per row; the question starts with one "<image>" tag per image, as in the release.
    Every fifth row is a short-answer question (no options, answer a number); the others are
    multiple-choice with plain option texts in A-D and the answer as a letter.
    """
    _check_rows(rows)
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        n = 2 + i % 3
        short = i % 5 == 4
        template = _mi_count if short else MULTI_TEMPLATES[i % len(MULTI_TEMPLATES)]
        images, q = template(rng, n)
        question = " ".join(["<image>"] * n) + " " + q.text
        if short:
            options, answer, qtype = {}, q.correct, "short-answer"
        else:
            (options, answer), qtype = _mc_cells(rng, q), "multi-choice"
        out.append({"index": i, "id": f"tiny_{i}", "image": _image_list(images), "question": question,
                    **options, "answer": answer, "question_type": qtype,
                    "category": MANTIS_CATEGORIES[q.l2], "data_source": "tiny"})
    _write(out, ["index", "id", "image", "question", *LETTERS, "answer", "question_type", "category",
                 "data_source"], path)


# --- HallusionBench: Yes/No, grouped by set / figure / question -----------------------------------
#
# A "set" is one drawing and its edited versions (figures); every question of the set is asked about
# every figure, and an edit can flip the answer. `index` = "{category}_{l2}_{visual_input}_{set}_
# {figure}_{question}", so its "_"-fields 3, 4, 5 are set_id, figure_id and question_id as VLMEvalKit's
# Hallusion_rating reads them. The exact layout of VLMEvalKit's own indexes was not found; fields 0-2
# follow HallusionBench's release fields (category VD/VS, subcategory, visual_input 1 = original
# figure, 2 = edited), and no field contains "_". Answers are "Yes"/"No", the strings VLMEvalKit's
# YOrN scorer compares with (data['answer'] == extracted).

HB_PATTERNS = ((2, 3), (1, 2), (2, 2), (3, 1))  # (figures, questions): figure and question groups differ


@dataclass
class _HBKind:
    category: str  # HallusionBench: VD (visual dependent) or VS (visual supplement)
    new: Callable[[random.Random], dict]
    edit: Callable[[random.Random, dict], dict]
    draw: Callable[[dict], Image.Image]
    # k questions about a scene: (text, predicate on a scene); half are true of the original figure
    questions: Callable[[random.Random, dict, int], list[tuple[str, Callable[[dict], bool]]]]


def _pick(rng: random.Random, true_value, pool) -> object:
    """The true value or (half the time) another value of the pool, so Yes and No both occur."""
    return true_value if rng.random() < 0.5 else rng.choice([v for v in pool if v != true_value])


def _edit_attr(rng: random.Random, scene: dict, pools: dict) -> dict:
    attr = rng.choice(sorted(pools))
    return {**scene, attr: rng.choice([v for v in pools[attr] if v != scene[attr]])}


_FIGURE_POOLS = {"kind": KINDS, "colour": tuple(COLOURS), "side": tuple(SIDES)}


def _figure_draw(s: dict) -> Image.Image:
    return _scene([Shape(s["kind"], s["colour"], SIDES[s["side"]], r=10)])


_FIGURE_QUESTIONS = {"colour": "Is the shape in the image {}?", "kind": "Is the shape in the image a {}?",
                     "side": "Is the shape {} of the image?"}


def _attribute_questions(rng: random.Random, s: dict, k: int, pools: dict, templates: dict):
    """k yes/no questions "has attribute a the value v?", one per attribute of `templates`, v the true value
    or a decoy from the pool (values are drawn in the templates' order, so the output is reproducible)."""
    values = {a: _pick(rng, s[a], pools[a]) for a in templates}
    qs = [(q.format(values[a]), lambda t, a=a, v=values[a]: t[a] == v) for a, q in templates.items()]
    return rng.sample(qs, k)


_OCR_POOLS = {"letter": tuple(TEXT_LETTERS), "colour": tuple(COLOURS), "bg": ("white", "gray", "pink")}
_OCR_QUESTIONS = {"letter": "Is the letter {} written in the image?",
                  "colour": "Is the letter in the image written in {}?", "bg": "Is the background of the image {}?"}


def _chart_new(rng: random.Random) -> dict:
    return {"colours": rng.sample(list(COLOURS), 4), "heights": rng.sample([12, 24, 36, 48], 4)}


def _chart_edit(rng: random.Random, s: dict) -> dict:
    i, j = rng.sample(range(4), 2)  # swap two bars' heights
    heights = list(s["heights"])
    heights[i], heights[j] = heights[j], heights[i]
    return {**s, "heights": heights}


def _chart_draw(s: dict) -> Image.Image:
    img, d = _canvas()
    for i, (c, h) in enumerate(zip(s["colours"], s["heights"])):
        d.rectangle((6 + 14 * i, 58 - h, 16 + 14 * i, 58), fill=COLOURS[c])
    d.line((2, 59, 61, 59), fill=(0, 0, 0))
    return img


def _height(s: dict, colour: str) -> int:
    return s["heights"][s["colours"].index(colour)]


def _chart_questions(rng: random.Random, s: dict, k: int):
    tall = s["colours"][s["heights"].index(48)]
    short = s["colours"][s["heights"].index(12)]
    c_tall, c_short = _pick(rng, tall, s["colours"]), _pick(rng, short, s["colours"])
    c1, c2 = rng.sample(s["colours"], 2)
    qs = [(f"Is the {c_tall} bar the tallest bar in the chart?",
           lambda t, v=c_tall: _height(t, v) == max(t["heights"])),
          (f"Is the {c_short} bar the shortest bar in the chart?",
           lambda t, v=c_short: _height(t, v) == min(t["heights"])),
          (f"Is the {c1} bar taller than the {c2} bar?",
           lambda t, a=c1, b=c2: _height(t, a) > _height(t, b))]
    return rng.sample(qs, k)


HB_KINDS: dict[str, _HBKind] = {
    "figure": _HBKind("VD", lambda rng: {a: rng.choice(p) for a, p in _FIGURE_POOLS.items()},
                      lambda rng, s: _edit_attr(rng, s, _FIGURE_POOLS), _figure_draw,
                      lambda rng, s, k: _attribute_questions(rng, s, k, _FIGURE_POOLS, _FIGURE_QUESTIONS)),
    "ocr": _HBKind("VD", lambda rng: {a: rng.choice(p) for a, p in _OCR_POOLS.items()},
                   lambda rng, s: _edit_attr(rng, s, _OCR_POOLS),
                   lambda s: _draw_letter(s["letter"], s["colour"], s["bg"]),
                   lambda rng, s, k: _attribute_questions(rng, s, k, _OCR_POOLS, _OCR_QUESTIONS)),
    "chart": _HBKind("VS", _chart_new, _chart_edit, _chart_draw, _chart_questions),
}


def make_tiny_hallusionbench(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic HallusionBench-format TSV (Yes/No), sets cycling through `HB_PATTERNS`.

    Within a set, the rows of one figure share its image: the first carries the data and the others
    refer to it by index. set_id counts per l2-category, as in HallusionBench, so figure and question
    groups are only unique together with the l2-category. The last set is cut short to fit `rows`.
    """
    _check_rows(rows)
    rng = random.Random(seed)
    out: list[dict] = []
    set_ids = {name: 0 for name in HB_KINDS}
    s = 0
    while len(out) < rows:
        l2 = list(HB_KINDS)[s % len(HB_KINDS)]
        kind, (n_fig, n_q) = HB_KINDS[l2], HB_PATTERNS[s % len(HB_PATTERNS)]
        set_id, s = set_ids[l2], s + 1
        set_ids[l2] += 1
        scenes = [kind.new(rng)]
        while len(scenes) < n_fig:
            edited = kind.edit(rng, scenes[0])
            if edited not in scenes:
                scenes.append(edited)
        questions = kind.questions(rng, scenes[0], n_q)
        for f, scene in enumerate(scenes):
            image = _png_b64(kind.draw(scene))
            first = None
            for q, (text, holds) in enumerate(questions):
                if len(out) == rows:
                    break
                index = f"{kind.category}_{l2}_{1 if f == 0 else 2}_{set_id}_{f}_{q}"
                out.append({"index": index, "image": image if first is None else first, "question": text,
                            "answer": "Yes" if holds(scene) else "No", "category": kind.category,
                            "l2-category": l2})
                first = first or index
    _write(out, ["index", "image", "question", "answer", "category", "l2-category"], path)


# --- CRPE relation: blocks of 4 circular variants ------------------------------------------------
#
# One drawing per block with a subject S next to an object O (and a third shape D); the question
# asks for the relation (predicate), the subject or the object. The four rows of a block carry the
# same options rotated by 0-3 places, so the correct option's letter moves through A-D. The options
# are part of the question text, one "(X) text" line each (VLMEvalKit's CRPE TSV has no option
# columns; its exact text layout was not found, so this layout is an assumption), and `answer` is
# "(X) text", so answer[4:] is the option text, as VLMEvalKit's CRPE scorer expects.

RELATIONS = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, -1), "below": (0, 1)}
CRPE_CATEGORIES = ("subject", "predicate", "object")


def _holds(rel: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """`a` is `rel` `b` in the loose sense (further in that direction at all), for ruling out D."""
    dx, dy = RELATIONS[rel]
    return (a[0] - b[0]) * dx > 0 if dx else (a[1] - b[1]) * dy > 0


def _crpe_item(rng: random.Random, category: str) -> tuple[Image.Image, str, str, list[str]]:
    """(image, question, correct option, three wrong options) for one block."""
    rel = rng.choice(list(RELATIONS))
    dx, dy = RELATIONS[rel]
    grid = [(x, y) for y in range(3) for x in range(3)]
    o = rng.choice([c for c in grid if (c[0] + dx, c[1] + dy) in grid])
    sc = (o[0] + dx, o[1] + dy)
    if category == "subject":  # "What is <rel> O?": D must not be <rel> O
        free = [c for c in grid if c not in (sc, o) and not _holds(rel, c, o)]
    elif category == "object":  # "What is S <rel>?": S must not be <rel> D
        free = [c for c in grid if c not in (sc, o) and not _holds(rel, sc, c)]
    else:
        free = [c for c in grid if c not in (sc, o)]
    colours = rng.sample(list(COLOURS), 5)
    kinds = rng.sample(KINDS, 3)
    subj, obj, third = (Shape(k, c, cell) for k, c, cell in zip(kinds, colours, (sc, o, rng.choice(free))))
    absent = [f"the {c} {rng.choice(KINDS)}" for c in colours[3:]]  # colours not in the drawing
    if category == "predicate":
        question = f"What is the position of {subj.name} relative to {obj.name}?"
        correct, wrong = rel, [r for r in RELATIONS if r != rel]
    elif category == "subject":
        question, correct, wrong = f"What is {rel} {obj.name}?", subj.name, [third.name, *absent]
    else:
        question, correct, wrong = f"What is {subj.name} {rel}?", obj.name, [third.name, *absent]
    return _scene([subj, obj, third]), question, correct, wrong


def make_tiny_crpe_relation(path: str | Path, rows: int, seed: int) -> None:
    """Synthetic CRPE_RELATION-format TSV: rows/4 blocks of 4 circular variants (rows % 4 == 0).

    Blocks cycle through the categories subject, predicate, object; the block's later rows refer to
    the first row's image.
    """
    _check_rows(rows, 4)
    rng = random.Random(seed)
    out = []
    for b in range(rows // 4):
        category = CRPE_CATEGORIES[b % len(CRPE_CATEGORIES)]
        img, question, correct, wrong = _crpe_item(rng, category)
        base = list(wrong)
        rng.shuffle(base)
        base.insert(rng.randrange(4), correct)
        image = _png_b64(img)
        for j in range(4):
            options = base[j:] + base[:j]
            letter = LETTERS[options.index(correct)]
            text = question + "".join(f"\n({k}) {t}" for k, t in zip(LETTERS, options))
            out.append({"index": 4 * b + j, "image": image if j == 0 else str(4 * b), "question": text,
                        "answer": f"({letter}) {correct}", "category": category})
    _write(out, ["index", "image", "question", "answer", "category"], path)


# --- the registry of generators -------------------------------------------------------------------

def _tiny_mmstar(path: str | Path, rows: int, seed: int) -> None:
    """MMStar with `rows` rows in all, split evenly over its six categories."""
    _check_rows(rows, len(CATEGORIES))
    make_tiny_mmstar(path, rows // len(CATEGORIES), seed)


TINY_GENERATORS: dict[str, Callable[[str | Path, int, int], None]] = {
    "MMStar": _tiny_mmstar,
    "RealWorldQA": make_tiny_realworldqa,
    "MME-RealWorld": make_tiny_mme_realworld,
    "BLINK": make_tiny_blink,
    "Mantis-Eval": make_tiny_mantis,
    "HallusionBench": make_tiny_hallusionbench,
    "CRPE_RELATION": make_tiny_crpe_relation,
}
