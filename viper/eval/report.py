"""The paper's reported numbers and a markdown report that sets ours beside them.

Independent reruns of the baselines land 1-3 points from the paper, so the report leads with
deltas measured in our own harness; the paper's absolute numbers are context, not a target.
"""

from __future__ import annotations

from typing import Mapping

from viper.eval.score import overall

PAPER_BENCHMARKS = ("MMStar", "RealWorldQA", "MME-RealWorld", "BLINK", "Mantis-Eval",
                    "HallusionBench", "CRPE_RELATION")
MMSTAR_CATEGORIES = ("coarse perception", "fine-grained perception", "instance reasoning",
                     "logical reasoning", "math", "science & technology")


def _paper_row(benchmarks: tuple[float, ...], overall_: float, mmstar: tuple[float, ...]) -> dict[str, float]:
    row = dict(zip(PAPER_BENCHMARKS, benchmarks), Overall=overall_)
    row.update({f"MMStar/{c}": v for c, v in zip(MMSTAR_CATEGORIES, mmstar)})
    return row


# ViPER paper, Table 1 (benchmarks; MME-RealWorld is the English subset, BLINK the val split,
# HallusionBench the (aAcc+fAcc+qAcc)/3 average, CRPE the relation split) and Table 2 (MMStar
# categories, keyed "MMStar/<category>"). "Overall" is the paper's unweighted mean of the seven.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "Qwen2.5-VL-3B": _paper_row((55.9, 65.4, 53.1, 47.6, 68.7, 46.3, 73.6), 58.7,
                                (68.8, 48.4, 62.4, 56.4, 62.0, 37.2)),
    "Qwen-Viper-3B": _paper_row((57.8, 67.7, 54.6, 49.2, 70.0, 49.1, 74.3), 60.4,
                                (70.0, 52.8, 64.4, 57.6, 62.8, 39.2)),
    "Qwen2.5-VL-7B": _paper_row((63.9, 68.5, 57.4, 56.4, 75.1, 52.9, 76.4), 64.4,
                                (73.6, 55.6, 73.2, 69.6, 66.8, 44.4)),
    "Qwen-Viper-7B": _paper_row((66.2, 71.4, 59.0, 57.6, 75.6, 54.4, 77.6), 66.0,
                                (75.2, 61.6, 74.8, 70.4, 67.2, 48.0)),
}
PAPER_PAIRS = (("Qwen2.5-VL-3B", "Qwen-Viper-3B"), ("Qwen2.5-VL-7B", "Qwen-Viper-7B"))
MISSING = "–"


def _cells(scores: Mapping[str, float], benchmarks: list[str]) -> list[float | None]:
    """Scores in column order plus Overall; Overall only when every column is present, since a mean
    over a subset would not be comparable with one over all of them."""
    vals = [scores.get(b) for b in benchmarks]
    vals.append(overall(dict(zip(benchmarks, vals))) if vals and None not in vals else None)
    return vals


def _delta(a: list[float | None], b: list[float | None]) -> list[float | None]:
    return [None if x is None or y is None else y - x for x, y in zip(a, b)]


def _fmt(vals: list[float | None], signed: bool = False) -> list[str]:
    return [MISSING if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}") for v in vals]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def render_markdown(results: dict[str, dict[str, float]], benchmarks: list[str], notes: list[str]) -> str:
    """Our models (in the given order) with deltas vs the first, then the paper's numbers beside ours."""
    header = ["model", *benchmarks, "Overall"]
    ours = {m: _cells(s, benchmarks) for m, s in results.items()}
    models = list(ours)
    rows = [[m, *_fmt(v)] for m, v in ours.items()]
    rows += [[f"Δ {m} − {models[0]}", *_fmt(_delta(ours[models[0]], ours[m]), signed=True)]
             for m in models[1:]]
    out = ["## Results (this run)", "", *markdown_table(header, rows), ""]

    paper_rows = [[f"ours: {m}", *_fmt(v)] for m, v in ours.items()]
    for base, viper in PAPER_PAIRS:
        b, v = _cells(PAPER_RESULTS[base], benchmarks), _cells(PAPER_RESULTS[viper], benchmarks)
        paper_rows += [[f"paper: {base}", *_fmt(b)], [f"paper: {viper}", *_fmt(v)],
                       [f"paper: Δ {viper} − {base}", *_fmt(_delta(b, v), signed=True)]]
    out += ["## Beside the paper's reported numbers (ViPER Tables 1-2; not rerun here)", "",
            *markdown_table(header, paper_rows), "",
            "Overall is the unweighted mean of the columns shown, and only when all are present; the "
            "paper's own Overall over its seven benchmarks is "
            + ", ".join(f"{m} {r['Overall']:.1f}" for m, r in PAPER_RESULTS.items()) + ".", ""]
    if notes:
        out += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(out)
