"""IVT's grounding data as tables: one parquet file per split, one row per referring expression.

Columns: id, source, split, image (PNG bytes), expression, x1, y1, x2, y2 (the target's box in original-image
pixels), width, height. The tiny default generates them (`viper.ivt.world`); at paper scale they are read from
the published benchmarks, converted once to a VLMEvalKit-style TSV per source (`read_tsv` says the columns),
and each source's row count is checked against the count its preset states.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
from PIL import Image

SPLITS = ("train", "val", "test")
COLUMNS = ["id", "source", "split", "image", "expression", "x1", "y1", "x2", "y2", "width", "height"]
TSV_COLUMNS = ("index", "image", "expression", "bbox", "split")


class GroundingDataError(ValueError):
    """Grounding files that are missing, malformed or of the wrong size: the message says what to fix."""


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def rows_of_world(samples: Iterable[dict]) -> list[dict]:
    return [{"id": s["id"], "source": "tiny", "split": s["split"], "image": png(s["image"]),
             "expression": s["expression"], **dict(zip(("x1", "y1", "x2", "y2"), map(float, s["box"]))),
             "width": s["width"], "height": s["height"]} for s in samples]


def write_splits(out_dir: str | Path, rows: list[dict]) -> dict[str, int]:
    """One parquet per split (all three, possibly empty); returns the row count of each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in SPLITS:
        part = sorted((r for r in rows if r["split"] == split), key=lambda r: r["id"])
        pd.DataFrame(part, columns=COLUMNS).to_parquet(out_dir / f"{split}.parquet", index=False)
        counts[split] = len(part)
    return counts


def read_split(data_dir: str | Path, split: str, limit: int | None = None) -> list[dict]:
    """A split's samples: {id, source, image (RGB), expression, box, width, height}, in id order."""
    path = Path(data_dir) / f"{split}.parquet"
    if not path.exists():
        raise GroundingDataError(f"{path} is missing: run `dvc repro ivt/dvc.yaml:ivt_data`")
    table = pd.read_parquet(path)
    if limit is not None:
        table = table.head(limit)
    return [{"id": r.id, "source": r.source, "image": Image.open(io.BytesIO(r.image)).convert("RGB"),
             "expression": r.expression, "box": (r.x1, r.y1, r.x2, r.y2), "width": int(r.width),
             "height": int(r.height)} for r in table.itertuples()]


def _box_xyxy(value: Any, fmt: str, where: str) -> tuple[float, ...]:
    try:
        coords = [float(c) for c in (json.loads(value) if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        raise GroundingDataError(f"{where}: bbox {value!r} is not a list of four numbers") from None
    if len(coords) != 4 or not all(math.isfinite(c) for c in coords):
        raise GroundingDataError(f"{where}: bbox {value!r} is not four finite numbers")
    x, y, a, b = coords
    box = (x, y, x + a, y + b) if fmt == "xywh" else (x, y, a, b)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise GroundingDataError(f"{where}: bbox {value!r} ({fmt}) has no area")
    return box


def read_tsv(source: Any) -> list[dict]:
    """The rows of one published benchmark, as converted for us: a TSV with columns index, image (base64),
    expression, bbox (a JSON list in original pixels, `source.box_format` xyxy or xywh as COCO writes it) and
    split (train | val | test). Its row count must be `source.count` when that is set."""
    path = Path(source.file)
    if not path.exists():
        raise GroundingDataError(
            f"{source.name}: {path} is missing. Convert the published {source.name} files to a TSV with columns "
            f"{', '.join(TSV_COLUMNS)} (data/ivt_sources/README.md says what each holds) and put it there, or set "
            "ivt.source: tiny")
    table = pd.read_csv(path, sep="\t", dtype={"index": str})
    missing = [c for c in TSV_COLUMNS if c not in table.columns]
    if missing:
        raise GroundingDataError(f"{path} lacks the columns {missing} (has {list(table.columns)})")
    if source.count is not None and len(table) != source.count:
        raise GroundingDataError(f"{path} has {len(table)} rows, but the preset expects {source.count} for "
                                 f"{source.name}: a partial or different download")
    rows = []
    for r in table.itertuples():
        where = f"{path} row {r.index}"
        if r.split not in SPLITS:
            raise GroundingDataError(f"{where}: split {r.split!r} is not one of {SPLITS}")
        try:
            img = Image.open(io.BytesIO(base64.b64decode(r.image))).convert("RGB")
        except Exception as err:  # noqa: BLE001 - any undecodable image is the file's fault
            raise GroundingDataError(f"{where}: the image does not decode ({err})") from None
        box = _box_xyxy(r.bbox, source.box_format, where)
        rows.append({"id": f"{source.name}-{r.index}", "source": source.name, "split": r.split, "image": png(img),
                     "expression": str(r.expression), **dict(zip(("x1", "y1", "x2", "y2"), box)),
                     "width": img.width, "height": img.height})
    return rows
