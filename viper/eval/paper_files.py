"""The seven benchmark files of the ViPER paper: name, size and checksum, and a Mantis-Eval converter.

`PAPER_FILES[name]` holds, per benchmark:
  file    the TSV's file name (VLMEvalKit saves `<dataset name>.tsv` in its data root)
  rows    expected number of evaluated rows (after dropping image-less rows where VLMEvalKit does),
          or None where no published count was found
  md5     VLMEvalKit's pinned md5 of that file, or None where VLMEvalKit pins none
  url     where VLMEvalKit (or, for Mantis-Eval, the authors) publish it
  source  where each value above was read, so it can be re-checked
  notes   caveats (a changed md5, a file VLMEvalKit builds itself, rows it drops)

Values were read from VLMEvalKit at commit e8e78f05f3080fe28154f2130321f17951c3be94 (2026-08-18).
Nothing here is guessed: where a value could not be found it is None and the notes say so.

Mantis-Eval is not in VLMEvalKit; `convert_mantis` turns its Hugging Face release into a TSV of the
same kind (multi-image `image` cells), which is what `viper.eval.scorers.mantis_prompt` reads.
"""

from __future__ import annotations

import base64
import io
import json
import re
import string
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from viper.eval.tsv import write_tsv

_VLMEVALKIT = "open-compass/VLMEvalKit@e8e78f05f3080fe28154f2130321f17951c3be94"
_MCQ = f"{_VLMEVALKIT}:vlmeval/dataset/image_mcq.py"

PAPER_FILES: dict[str, dict[str, Any]] = {
    "MMStar": {
        "file": "MMStar.tsv",
        "rows": 1500,
        "md5": "e1ecd2140806c1b1bbf54b43372efb9e",
        "url": "https://opencompass.openxlab.space/utils/VLMEval/MMStar.tsv",
        "source": {"md5": f"{_MCQ} ImageMCQDataset.DATASET_MD5['MMStar'] (unchanged since 2024-04-19)",
                   "url": f"{_MCQ} ImageMCQDataset.DATASET_URL['MMStar']",
                   "rows": "../shared/reference/eval-scoring.md (1,500 = 6 categories x 250)"},
        "notes": "",
    },
    "RealWorldQA": {
        "file": "RealWorldQA.tsv",
        "rows": 765,
        "md5": "4de008f55dc4fd008ca9e15321dc44b7",
        "url": "https://opencompass.openxlab.space/utils/VLMEval/RealWorldQA.tsv",
        "source": {"md5": f"{_MCQ} ImageMCQDataset.DATASET_MD5['RealWorldQA'] (since 2024-12-30, 79913ae1)",
                   "url": f"{_MCQ} ImageMCQDataset.DATASET_URL['RealWorldQA']",
                   "rows": "../shared/reference/eval-scoring.md; Hugging Face viewer of "
                           "lmms-lab/RealWorldQA (test split, 765 rows)"},
        "notes": "Earlier VLMEvalKit pins (2024): 92321028d2bc29040284b6674721e48f, "
                 "878cdd2999abd521ff17881a06d85730, b7fc0bee84d301627cf37581ef139035.",
    },
    "MME-RealWorld": {
        "file": "MME-RealWorld.tsv",
        "rows": None,
        "md5": "fd341132362fc41e707cb37ee6e4dcda",
        "url": "https://huggingface.co/datasets/yifanzhang114/MME-RealWorld-Base64",
        "source": {"md5": f"{_MCQ} MMERealWorld.DATASET_MD5['MME-RealWorld'] (since 2025-10-29, 2ffe897c)",
                   "url": f"{_MCQ} MMERealWorld.load_data (repo_id default)",
                   "rows": "not found"},
        "notes": "English subset. VLMEvalKit has no download URL for this TSV: MMERealWorld.load_data "
                 "snapshots the HF repo above and *builds* MME-RealWorld.tsv from its JSON files with "
                 "pandas.to_csv (columns index, image, question, 'multi-choice options', A-E, answer, "
                 "category, l2-category); the md5 is that of the built file, so it can differ with "
                 "the JSON order or the pandas version. Previous pins: 271c33ec814c39533c467ec6fb8a6f36 "
                 "(2024-09-11 to 2025-10-29), 7d7cc66f7fe0f56ebc68fdddf2b447da (2024-09). Row count: "
                 "the paper's 29,429 QA pairs include the Chinese part; no count for the English "
                 "file was found.",
    },
    "BLINK": {
        "file": "BLINK.tsv",
        "rows": 1901,
        "md5": "d5e8af148b10ac69f535ff7b23f3f989",
        "url": "https://opencompass.openxlab.space/utils/VLMEval/BLINK.tsv",
        "source": {"md5": f"{_MCQ} ImageMCQDataset.DATASET_MD5['BLINK'] (since 2026-05-11, fbd4d504)",
                   "url": f"{_MCQ} ImageMCQDataset.DATASET_URL['BLINK']",
                   "rows": "../shared/reference/eval-scoring.md (BLINK val); OpenCompass "
                           "leaderboard meta_data.py: '1901 visual questions in multi-choice format'"},
        "notes": "VLMEvalKit's BLINK.tsv is BLINK's val split. Its md5 changed on 2026-05-11 with "
                 "'[Fix] Fix BLINK Relative_Reflectance answers (#1539)'; the file before the fix "
                 "(pinned 2024-07-18 to 2026-05-11, so the one the paper could have used) had md5 "
                 "3b6649b6a662184ea046908e5506260e.",
    },
    "Mantis-Eval": {
        "file": "Mantis-Eval.tsv",
        "rows": 217,
        "md5": None,
        "url": "https://huggingface.co/datasets/TIGER-Lab/Mantis-Eval (config mantis_eval, split test, "
               "mantis_eval/test-00000-of-00001.parquet)",
        "source": {"md5": "none: not a VLMEvalKit dataset; the TSV is made locally by convert_mantis",
                   "rows": "Hugging Face viewer of TIGER-Lab/Mantis-Eval (mantis_eval/test, 217 rows); "
                           "dataset_info num_examples 217 in the card copied to TIGER-Lab/NLVR2",
                   "format": "dataset_info features (id, question_type, question, images, options, "
                             "answer, data_source, category); OpenGVLab/InternVL "
                             "internvl_chat/eval/mantis_eval/evaluate_mantis.py; TIGER-AI-Lab/Mantis "
                             "mantis/benchmark/eval.py"},
        "notes": "Convert the release with convert_mantis(src_dir, out_path). No md5 is pinned because "
                 "no published TSV exists; pin the md5 of your converted file if you need one.",
    },
    "HallusionBench": {
        "file": "HallusionBench.tsv",
        "rows": 951,
        "md5": "0c23ac0dc9ef46832d7a24504f2a0c7c",
        "url": "https://opencompass.openxlab.space/utils/VLMEval/HallusionBench.tsv",
        "source": {"md5": f"{_VLMEVALKIT}:vlmeval/dataset/image_yorn.py ImageYORNDataset.DATASET_MD5"
                          "['HallusionBench'] (unchanged since 2024-01-02)",
                   "url": f"{_VLMEVALKIT}:vlmeval/dataset/image_yorn.py ImageYORNDataset.DATASET_URL",
                   "rows": "../shared/reference/eval-scoring.md ('951 rows with images'); "
                           "open-compass/VLMEvalKit issues #471 and #1037 (951 evaluated vs 1,129 in "
                           "the HallusionBench release)"},
        "notes": "`rows` counts the rows that are evaluated, i.e. those WITH an image. VLMEvalKit's "
                 "ImageBaseDataset(skip_noimg=True) (vlmeval/dataset/image_base.py) drops rows whose "
                 "`image` is empty before anything else; per VLMEvalKit issues #471/#1037 that leaves 951 "
                 "of the release's 1,129 questions, so the file itself very likely holds 1,129 rows, 178 "
                 "of them text-only (not verified: the file was not available here; the md5 is that of "
                 "the whole file). registry.load_checked does the same (Bench.skip_noimg for "
                 "HallusionBench: load_tsv(skip_noimg=True) drops them before resolving image "
                 "references) and checks the 951 against the rows left.",
    },
    "CRPE_RELATION": {
        "file": "CRPE_RELATION.tsv",
        "rows": None,
        "md5": "bad7094cde0b572288f4b119c2d0c656",
        "url": "https://huggingface.co/datasets/petter12321/crpe_vlmevalkit/resolve/main/CRPE_RELATION.tsv",
        "source": {"md5": f"{_VLMEVALKIT}:vlmeval/dataset/image_vqa.py CRPE.DATASET_MD5['CRPE_RELATION'] "
                          "(unchanged since 2024-09-13)",
                   "url": f"{_VLMEVALKIT}:vlmeval/dataset/image_vqa.py CRPE.DATASET_URL",
                   "rows": "not found"},
        "notes": "Rows come in blocks of 4 circular variants (CRPE.evaluate asserts len % 4 == 0); the "
                 "total row count was not found. Rows that name their image in `image_path` instead of "
                 "carrying base64 in `image` (VLMEvalKit's meta-only form) are read from those files, "
                 "relative paths against the TSV's folder; missing files stop the stage with a list.",
    },
}


# --------------------------------------------------------------------------------------- Mantis-Eval

MANTIS_FIELDS = ("id", "question_type", "question", "images", "options", "answer")  # + data_source, category
MANTIS_TYPES = ("multi-choice", "short-answer")
_LETTERS = string.ascii_uppercase


def _find_release(src: Path) -> list[Path]:
    """The release's data files under `src` (or `src` itself): parquet shards, else JSON files.

    Old snapshots of TIGER-Lab/Mantis-Eval also hold other configs (nlvr2, birds-to-words, ...); when a
    `mantis_eval` folder exists only its files are used.
    """
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise ValueError(f"convert_mantis: {src} does not exist")
    for pattern in ("*.parquet", "*.json"):
        files = sorted(src.rglob(pattern))
        scoped = [f for f in files if "mantis_eval" in f.relative_to(src).parts[:-1]]
        if scoped or files:
            return scoped or files
    raise ValueError(f"convert_mantis: no .parquet or .json files under {src}; expected the Hugging Face "
                     "release of TIGER-Lab/Mantis-Eval (mantis_eval/test-00000-of-00001.parquet)")


def _read_release(files: list[Path]) -> list[tuple[dict, Path]]:
    """(record, folder that relative image paths are resolved against), in file order."""
    out: list[tuple[dict, Path]] = []
    for f in files:
        if f.suffix == ".parquet":
            records = pd.read_parquet(f).to_dict("records")
        elif f.suffix == ".json":
            data = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ValueError(f"convert_mantis: {f} is not a JSON list of records")
            records = data
        else:
            raise ValueError(f"convert_mantis: {f} is neither .parquet nor .json")
        out += [(r, f.parent) for r in records]
    if not out:
        raise ValueError(f"convert_mantis: {', '.join(map(str, files))} hold no records")
    return out


def _listify(value: Any, what: str, rid: Any) -> list:
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"convert_mantis: record {rid!r}: `{what}` is {type(value).__name__}, "
                         "expected a list")
    return list(value)


def _image_b64(item: Any, base: Path, rid: Any) -> str:
    """One released image (HF Image struct {bytes, path}, raw bytes, or a path) as base64 of its bytes."""
    data = None
    if isinstance(item, dict):
        data = item.get("bytes")
        if data is None and item.get("path"):
            item = item["path"]
    if isinstance(item, (bytes, bytearray)):
        data = bytes(item)
    elif data is None and isinstance(item, str):
        path = Path(item) if Path(item).is_absolute() else base / item
        if not path.is_file():
            raise ValueError(f"convert_mantis: record {rid!r}: image file {path} not found")
        data = path.read_bytes()
    if data is None:
        raise ValueError(f"convert_mantis: record {rid!r}: unreadable image entry {str(item)[:80]!r}")
    try:
        Image.open(io.BytesIO(data)).size  # header check only; the bytes are stored unchanged
    except (OSError, ValueError) as err:
        raise ValueError(f"convert_mantis: record {rid!r}: not an image ({err})") from None
    return base64.b64encode(data).decode("ascii")


def _option_texts(options: list[str]) -> list[str]:
    """Option texts without their labels, when every option carries its own ("(A) x", "A. x", "A: x", "A) x").

    The prompt (scorers.mantis_prompt) writes "(X) text" lines itself, so a labelled release option
    must not keep its label. Options are left as they are unless all of them are labelled in order,
    so an unlabelled text that merely starts like a label ("A. Lincoln") is not cut.
    """
    options = [str(o).strip() for o in options]
    pattern = [re.match(rf"^(?:\({k}\)|{k}[.:)])\s*", o) for k, o in zip(_LETTERS, options)]
    if options and all(pattern):
        return [o[m.end():].strip() for o, m in zip(options, pattern)]
    return options


def _mc_letter(answer: Any, n_options: int, rid: Any) -> str:
    """The answer letter, read as Mantis's own evaluator does: strip "()" and blanks, else first letter."""
    ref = str(answer).strip("()\n ")
    if len(ref) != 1:
        ref = next((c for c in ref if c.isalpha()), "")
    ref = ref.upper()
    if len(ref) != 1 or ref not in _LETTERS[:n_options]:
        raise ValueError(f"convert_mantis: record {rid!r}: answer {answer!r} is not one of the "
                         f"{n_options} option letters")
    return ref


def convert_mantis(src_dir: str | Path, out_path: str | Path) -> int:
    """Convert TIGER-Lab/Mantis-Eval's release into a VLMEvalKit-style TSV; returns the row count.

    Input: a snapshot of the Hugging Face dataset (config mantis_eval: parquet with columns id,
    question_type, question, images [list of HF Image structs {bytes, path}], options [list of str],
    answer, data_source, category), a single such parquet file, or Mantis's local JSON form (a list of
    those records with `images` as paths relative to the JSON file).

    Output columns: index (0.. in release order), id, image (base64 of the released bytes; a Python
    list literal of them for several images, as VLMEvalKit writes multi-image rows), question
    (verbatim, "<image>" tags kept), A, B, ... (option texts, labels removed, see `_option_texts`),
    answer (a letter for multi-choice rows; the released text for short-answer rows, which have no
    options), question_type, category, data_source.
    """
    src, rows = Path(src_dir), []
    for i, (rec, base) in enumerate(_read_release(_find_release(src))):
        missing = [k for k in MANTIS_FIELDS if k not in rec]
        if missing:
            raise ValueError(f"convert_mantis: record {i} lacks {missing}; this does not look like "
                             f"Mantis-Eval (expected fields {list(MANTIS_FIELDS)})")
        rid, qtype = rec["id"], rec["question_type"]
        if qtype not in MANTIS_TYPES:
            raise ValueError(f"convert_mantis: record {rid!r}: question_type {qtype!r} is not one of "
                             f"{list(MANTIS_TYPES)}")
        images = [_image_b64(x, base, rid) for x in _listify(rec["images"], "images", rid)]
        if not images:
            raise ValueError(f"convert_mantis: record {rid!r} has no images")
        row = {"index": i, "id": rid, "image": images[0] if len(images) == 1 else str(images),
               "question": str(rec["question"])}
        if qtype == "multi-choice":
            options = _option_texts(_listify(rec["options"], "options", rid))
            if not 2 <= len(options) <= len(_LETTERS):
                raise ValueError(f"convert_mantis: record {rid!r}: {len(options)} options")
            row.update(zip(_LETTERS, options))
            row["answer"] = _mc_letter(rec["answer"], len(options), rid)
        else:
            row["answer"] = str(rec["answer"]).strip()
        row.update(question_type=qtype, category=rec.get("category"), data_source=rec.get("data_source"))
        rows.append(row)
    letters = [k for k in _LETTERS if any(k in r for r in rows)]
    columns = ["index", "id", "image", "question", *letters, "answer", "question_type", "category",
               "data_source"]
    write_tsv(pd.DataFrame(rows, columns=columns), out_path)
    return len(rows)
