"""The benchmarks the report knows: file, expected size and checksum, prompt builder, scorer.

Two suites share every prompt and scorer: `paper` (the seven VLMEvalKit TSVs of the ViPER paper, pinned
by row count and md5) and `tiny` (small generated files in the same formats, for the embedded default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from viper.eval import scorers
from viper.eval.paper_files import PAPER_FILES
from viper.eval.prompts import mc_prompt
from viper.eval.score import score_mc
from viper.eval.tsv import BenchmarkDataError, load_tsv, md5_file


def _mc(df: pd.DataFrame, predictions: dict[str, str]) -> dict:
    result = score_mc(df, predictions)
    return {**result, "score": result["accuracy"]}


@dataclass(frozen=True)
class Bench:
    name: str
    prompt: Callable[[Any], str]
    score: Callable[[pd.DataFrame, dict[str, str]], dict]
    max_new_tokens: int | None = None  # a benchmark's own cap (Mantis: 50), applied below the global one
    skip_noimg: bool = False  # drop image-less rows as VLMEvalKit does (HallusionBench's text-only rows)


BENCHMARKS: dict[str, Bench] = {b.name: b for b in (
    Bench("MMStar", mc_prompt, _mc),
    Bench("RealWorldQA", mc_prompt, _mc),
    Bench("MME-RealWorld", scorers.mme_prompt, scorers.score_mme),
    Bench("BLINK", mc_prompt, _mc),
    Bench("Mantis-Eval", scorers.mantis_prompt, scorers.score_mantis, max_new_tokens=50),
    Bench("HallusionBench", scorers.hallusion_prompt, scorers.score_hallusion, skip_noimg=True),
    Bench("CRPE_RELATION", scorers.crpe_prompt, scorers.score_crpe),
)}


def tiny_file(name: str) -> str:
    return f"{name}.tsv"


def expected(name: str, suite: str) -> dict:
    """{"file", "rows", "md5"} for a benchmark in a suite (rows/md5 None when not pinned)."""
    if suite == "paper":
        entry = PAPER_FILES[name]
        return {"file": entry["file"], "rows": entry.get("rows"), "md5": entry.get("md5")}
    return {"file": tiny_file(name), "rows": None, "md5": None}


def check_files(data_dir: str | Path, suite: str, names: list[str]) -> dict[str, Path]:
    """Paths of every benchmark file, or one error that lists everything missing or mismatching."""
    data_dir = Path(data_dir)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise BenchmarkDataError(f"unknown benchmarks {unknown}; known: {sorted(BENCHMARKS)}")
    problems, paths = [], {}
    for name in names:
        exp = expected(name, suite)
        path = data_dir / exp["file"]
        paths[name] = path
        if not path.exists():
            problems.append(f"  {name}: {path} is missing")
        elif exp["md5"] and md5_file(path) != exp["md5"]:
            problems.append(f"  {name}: {path} has md5 {md5_file(path)}, expected {exp['md5']} "
                            "(a different release, or a damaged download)")
    if problems:
        hint = ("Put VLMEvalKit's TSVs (the files VLMEvalKit downloads for these dataset names) in "
                f"{data_dir}/; convert Mantis-Eval's release with viper.eval.paper_files.convert_mantis."
                if suite == "paper" else "Run `dvc repro bench_data` to generate the tiny benchmarks.")
        raise BenchmarkDataError(f"benchmark data not ready for suite {suite!r}:\n" + "\n".join(problems)
                                 + "\n" + hint)
    return paths


def load_checked(path: Path, name: str, suite: str, *, decode: bool = True) -> pd.DataFrame:
    """The rows that are evaluated, checked against the expected count (after dropping image-less rows
    where the benchmark does, so HallusionBench's 1,129-row file gives its 951 evaluated rows).

    decode=False keeps images as base64 (`image_b64`) for callers that decode them batch by batch."""
    df = load_tsv(path, decode=decode, skip_noimg=BENCHMARKS[name].skip_noimg)
    rows = expected(name, suite)["rows"]
    if rows is not None and len(df) != rows:
        dropped = " with an image (text-only rows are not evaluated)" if BENCHMARKS[name].skip_noimg else ""
        raise BenchmarkDataError(f"{name}: {path} has {len(df)} rows{dropped}, expected {rows}")
    return df
