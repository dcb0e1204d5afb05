"""Read and write benchmark TSVs in VLMEvalKit's format.

`image` holds base64 PNG/JPEG, a stringified Python list of base64 strings (multi-image rows), or,
when it is at most 64 characters, the `index` of another row whose image is reused. The raw column
is kept as read, so writing a loaded frame back gives the same file; the resolved forms go into
derived columns that `write_tsv` drops.

A row without `image` data may name its image file(s) in `image_path` instead (a path or a list
literal of paths), as VLMEvalKit's meta-only TSVs do (CRPE); relative paths are resolved against the
TSV's folder, and the files' bytes are read as if they had been inlined as base64.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import re
from pathlib import Path

import pandas as pd
from PIL import Image

from viper.store.io import atomic_write_bytes

REQUIRED_COLUMNS = ("index", "image", "question", "answer")  # `image_path` may stand in for `image`
DERIVED_COLUMNS = ("image_b64", "images")  # added by load_tsv, never written
_REF_MAX_LEN = 64  # VLMEvalKit's rule: a value this short is a row reference, not image data
_INT = re.compile(r"-?\d+")


class BenchmarkDataError(ValueError):
    """A benchmark file is missing or malformed; the message names the file and the problem."""


def decode_image(b64: str) -> Image.Image:
    """One base64 PNG/JPEG string as an RGB image (fully loaded, so no file handle stays open)."""
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")


def _split_images(value: str) -> list[str]:
    if value.startswith("["):
        items = ast.literal_eval(value)  # literal_eval only parses literals; it never runs code
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            raise ValueError("not a list of strings")
        return items
    return [value]


def _read_image_files(cell: str, idx: str, path: Path, missing: list[tuple[str, Path]]) -> list[str]:
    """The files an `image_path` cell names, as base64 of their bytes (missing ones are collected)."""
    try:
        names = _split_images(cell)
    except (ValueError, SyntaxError) as err:
        raise BenchmarkDataError(f"{path}: row {idx}: unreadable image_path list ({err})") from None
    out = []
    for name in names:
        file = Path(name) if Path(name).is_absolute() else path.parent / name
        if not file.is_file():
            missing.append((idx, file))
            continue
        out.append(base64.b64encode(file.read_bytes()).decode("ascii"))
    return out


def _missing_files_error(path: Path, missing: list[tuple[str, Path]]) -> BenchmarkDataError:
    shown = "\n".join(f"  row {idx}: {file}" for idx, file in missing[:5])
    more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
    return BenchmarkDataError(
        f"{path}: {len(missing)} image file(s) named in its `image_path` column do not exist:\n"
        f"{shown}{more}\n"
        f"Rows without base64 data in `image` are read from `image_path`, relative paths against the TSV's "
        f"folder {path.parent}/. Either put the image files there so that these paths exist (for "
        f"CRPE_RELATION: the images of CRPE's release, under the relative paths the TSV names), or replace "
        f"the file with the VLMEvalKit TSV whose `image` column holds the images as base64 (for "
        f"CRPE_RELATION the md5-pinned one, see viper/eval/paper_files.py).")


def _resolve_images(df: pd.DataFrame, path: Path) -> list[list[str]]:
    images = df["image"] if "image" in df.columns else pd.Series([None] * len(df), dtype=object)
    paths = df["image_path"] if "image_path" in df.columns else None
    raw = {str(i): (None if pd.isna(v) else str(v)) for i, v in zip(df["index"], images)}
    out, missing = [], []
    for pos, (idx, value) in enumerate(raw.items()):
        if value is None:
            cell = None if paths is None or pd.isna(paths.iloc[pos]) else str(paths.iloc[pos])
            if cell is None:
                where = "`image` and `image_path` cells" if paths is not None else "`image` cell"
                raise BenchmarkDataError(f"{path}: row {idx} has an empty {where}: no image")
            out.append(_read_image_files(cell, idx, path, missing))
            continue
        if len(value) <= _REF_MAX_LEN:
            # One level only, as in VLMEvalKit: the target must hold image data itself.
            target = raw.get(value)
            if target is None or len(target) <= _REF_MAX_LEN:
                raise BenchmarkDataError(
                    f"{path}: row {idx} refers to image of row {value!r}, which has no image data")
            value = target
        try:
            out.append(_split_images(value))
        except (ValueError, SyntaxError) as err:
            raise BenchmarkDataError(f"{path}: row {idx}: unreadable image list ({err})") from None
    if missing:
        raise _missing_files_error(path, missing)
    return out


def load_tsv(path: str | Path, *, decode: bool = True, skip_noimg: bool = False) -> pd.DataFrame:
    """Load a benchmark TSV; add `image_b64` (resolved base64 list) and `images` (RGB PIL list).

    With decode=False the `images` column is left out (large benchmarks decode per batch with
    `decode_image` instead of holding every image in memory). With skip_noimg=True rows whose `image`
    (and `image_path`, if any) is empty are dropped first, as VLMEvalKit's
    `ImageBaseDataset(skip_noimg=True)` does (HallusionBench's text-only questions); otherwise such
    a row is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkDataError(f"benchmark file not found: {path}")
    # Everything is read as text so option "3" does not become 3.0 in a prompt, and only empty
    # cells count as absent: pandas' default would also turn an option reading "None" or "NA"
    # into NaN and silently drop it. Python strings (object), not pandas' Arrow-backed `str`: the
    # base64 cells are then held once (the Arrow column plus the resolved `image_b64` strings held
    # them twice, and parsing into Arrow peaked at about 4x the file size).
    df = pd.read_csv(path, sep="\t", dtype=object, keep_default_na=False, na_values=[""])
    missing = [c for c in REQUIRED_COLUMNS
               if c not in df.columns and not (c == "image" and "image_path" in df.columns)]
    if missing:
        raise BenchmarkDataError(f"{path}: missing required column(s) {', '.join(missing)}")
    if skip_noimg:
        has_image = pd.Series(False, index=df.index)
        for col in ("image", "image_path"):
            if col in df.columns:
                has_image |= df[col].notna()
        df = df[has_image].reset_index(drop=True)
    if df["index"].isna().any():
        raise BenchmarkDataError(f"{path}: empty `index` cell")
    if df["index"].duplicated().any():
        dup = df["index"][df["index"].duplicated()].iloc[0]
        raise BenchmarkDataError(f"{path}: duplicate index {dup!r}")
    # VLMEvalKit indexes are integers; keep them as such when they round-trip exactly.
    if all(_INT.fullmatch(s) and str(int(s)) == s for s in df["index"]):
        df["index"] = df["index"].astype(int)
    df["image_b64"] = _resolve_images(df, path)
    if decode:
        try:
            df["images"] = [[decode_image(b) for b in imgs] for imgs in df["image_b64"]]
        except (ValueError, OSError) as err:  # bad base64 or not an image
            raise BenchmarkDataError(f"{path}: undecodable image ({err})") from None
    return df


def write_tsv(df: pd.DataFrame, path: str | Path) -> None:
    """Write the VLMEvalKit form: rows sorted by `index` (stable), derived columns dropped.

    Same frame, same bytes: fixed line ending, no pandas index, empty cell for NaN. The file is
    replaced atomically so a reader never sees half a benchmark.
    """
    out = df.drop(columns=[c for c in DERIVED_COLUMNS if c in df.columns])
    out = out.sort_values("index", kind="stable")
    text = out.to_csv(sep="\t", index=False, lineterminator="\n", na_rep="")
    atomic_write_bytes(path, text.encode("utf-8"))


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks (VLMEvalKit pins benchmark files by md5)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
