"""Closed-loop rounds: round k synthesises with round k-1's final model, then trains on what it made.

Round 0 is the pipeline of dvc.yaml + synthesis/dvc.yaml. Rounds 1..N are the stages of rounds/dvc.yaml,
DVC `foreach` groups over tables in `loop.unrolled`. DVC cannot turn a number into stages (dvc.yaml has no
arithmetic and no "previous item", and foreach members run in no set order), so the tables list each round
with the paths of its previous round, and order comes from those paths (outs -> deps). `viper loop N` writes
`loop.rounds` and the tables together; `check_unrolled` fails every stage, naming the fix, when they disagree
(e.g. after `-S loop.rounds=3` alone). Round k's stage names and paths depend on k only, so growing N keeps
earlier rounds cached.

Layout of round k >= 1 (round 0's is the same with `data/` and `reports/` as prefixes):
    data/rounds/k/{seeds,captions,...,viper10k}   its synthesis, as in synthesis/dvc.yaml
    data/rounds/k/train                            what it trains on (loop.data: replace | window | accumulate)
    data/rounds/k/checkpoints/{stage1,stage2}      its two RL stages
    data/rounds/k/predictions                      its benchmark replies
    reports/rounds/k/{metrics,curves}/...          its stage metrics and RL curves
    reports/rounds/k/round.json                    its measurements (round_metrics; also for k = 0)
"""

from __future__ import annotations

from pathlib import Path


ROUNDS_DIR = "data/rounds"
REPORTS_DIR = "reports/rounds"
ROUND_FILE = "round.json"  # round_metrics' output in reports/rounds/<k>/


def data_dir(k: int) -> str:
    return "data" if k == 0 else f"{ROUNDS_DIR}/{k}"


def reports_dir(k: int) -> str:
    return "reports" if k == 0 else f"{REPORTS_DIR}/{k}"


def own_dataset(k: int, dataset_dir: str) -> str:
    """The Viper10K round k synthesised (round 0: what dataset.dir points at, built or pulled)."""
    return dataset_dir if k == 0 else f"{ROUNDS_DIR}/{k}/viper10k"


def train_dataset(k: int, dataset_dir: str) -> str:
    """The Viper10K round k trained on."""
    return dataset_dir if k == 0 else f"{ROUNDS_DIR}/{k}/train"


def unroll(rounds: int, dataset_dir: str) -> dict[str, dict]:
    """The foreach tables of rounds/dvc.yaml for `rounds` rounds after round 0.

    `rounds`: round k -> the paths of round k-1 it reads (its model, its own data, its training data).
    `measured`: round k (0..N) -> where that round's data, predictions and reports are, for round_metrics.
    With 0 rounds both are empty, so rounds/dvc.yaml has no stages and round 0 is exactly the old pipeline."""
    if rounds == 0:
        return {"rounds": {}, "measured": {}}
    # String keys: DVC's interpolation context drops integer mapping keys (the stages would silently vanish).
    table = {str(k): {"prev": data_dir(k - 1), "prev_own": own_dataset(k - 1, dataset_dir),
                      "prev_train": train_dataset(k - 1, dataset_dir)} for k in range(1, rounds + 1)}
    measured = {str(k): {"own": own_dataset(k, dataset_dir), "data": data_dir(k), "reports": reports_dir(k)}
                for k in range(rounds + 1)}
    return {"rounds": table, "measured": measured}


def check_unrolled(rounds: int, unrolled: dict, dataset_dir: str) -> None:
    """Raise ValueError (naming the command that fixes it) unless the tables are what `viper loop` writes."""
    want = unroll(rounds, dataset_dir)
    if unrolled != want:  # int keys differ too: DVC would not see those rounds
        have = len((unrolled or {}).get("rounds") or {})
        raise ValueError(
            f"loop.rounds is {rounds} but loop.unrolled describes {have} round(s) (or other paths, e.g. after "
            f"a dataset.dir change). DVC makes stages from lists, not from a number, so both keys must change "
            f"together: run `viper loop {rounds}` (it rewrites them in params.yaml), then `dvc exp run` or "
            "`dvc repro`")


def round_seed(seed: int, k: int) -> int:
    """The seed of round k's own randomness (its fresh scenes), independent per round."""
    from viper.synth.runner import derive_seed

    return derive_seed("viper-round", seed, k)


def kept_seed_ids(ids: list[str], fresh_fraction: float, seed: int, k: int) -> list[str]:
    """Which of round 0's seeds round k reuses: all but round(fraction * n), picked by a per-round hash so
    that each round keeps a different subset (sorted, as the shards store them)."""
    from viper.synth.runner import derive_id

    n_keep = len(ids) - n_fresh(len(ids), fresh_fraction)
    rank = sorted(ids, key=lambda i: derive_id("viper-round-keep", seed, k, i))
    return sorted(rank[:n_keep])


def n_fresh(n: int, fresh_fraction: float) -> int:
    return round(n * fresh_fraction)


def set_rounds(data, rounds: int) -> dict:
    """Set loop.rounds and loop.unrolled in a loaded params mapping (ruamel's round-trip one keeps the existing
    mappings' comments: they are refilled, not replaced). Returns the tables."""
    if "loop" not in data:
        raise ValueError("the params have no `loop` section; copy it from the project's params.yaml")
    tables = unroll(rounds, data["dataset"]["dir"])
    data["loop"]["rounds"] = rounds
    for name, table in tables.items():
        data["loop"]["unrolled"][name].clear()
        data["loop"]["unrolled"][name].update(table)
    return tables


def write_unrolled(params_path: str | Path, rounds: int) -> dict:
    """Set loop.rounds and loop.unrolled in a params file; every other line stays as it was (comments,
    flow mappings, `null`s), so `viper loop 0` gives back the file it started from."""
    from viper.config import edit_params

    try:
        return edit_params(params_path, lambda data: set_rounds(data, rounds))
    except ValueError as err:
        raise ValueError(f"{params_path}: {err}") from None


# ---- measurements of a round (stages/round_metrics.py) and the report's flags (stages/benchmark.py) ----

DIVERSITY_KEYS = ("caption_distinct_1", "caption_distinct_2", "instruction_distinct_1", "instruction_distinct_2",
                  "caption_spread")


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the corpus (lower-cased word tokens): 1.0 = nothing repeats."""
    import re

    grams = [tuple(words[i:i + n]) for t in texts for words in [re.findall(r"\w+", t.lower())]
             for i in range(len(words) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def mean_pairwise_similarity(vecs) -> float:
    """Mean cosine similarity over all pairs of distinct rows of L2-normalised `vecs`, in O(n d):
    sum over i != j of v_i . v_j = |sum v|^2 - sum |v_i|^2."""
    import numpy as np

    n = len(vecs)
    if n < 2:
        return 0.0
    total = np.asarray(vecs, dtype=np.float64).sum(axis=0)
    return round(float((total @ total - n) / (n * (n - 1))), 4)


def dataset_measures(captions: list[str], refinements: list[list[str]], instructions: list[str],
                     categories: list[str]) -> dict:
    """What a round's own data says about collapse; `diversity` lacks the embedding measures (the caller's)."""
    from collections import Counter

    from viper.prompts.templates import EDIT_CATEGORIES

    hist = Counter(categories)
    return {
        "captions": len(captions),
        "refinements_per_caption": round(sum(map(len, refinements)) / len(refinements), 3) if refinements else 0.0,
        "edits": len(instructions),
        "edit_categories": {c: hist.get(c, 0) for c in EDIT_CATEGORIES},
        "diversity": {"caption_distinct_1": distinct_n(captions, 1), "caption_distinct_2": distinct_n(captions, 2),
                      "instruction_distinct_1": distinct_n(instructions, 1),
                      "instruction_distinct_2": distinct_n(instructions, 2),
                      "caption_length": round(sum(len(c.split()) for c in captions) / len(captions), 2)
                      if captions else 0.0},
    }


def judge_acceptance(decisions: list[dict]) -> float | None:
    """Share of the edits the judge saw (past the CLIP filter) that it kept; None when none reached it."""
    seen = [d for d in decisions if d["kept"] or str(d["reason"]).startswith("judge_")]
    return round(sum(bool(d["kept"]) for d in seen) / len(seen), 4) if seen else None


def round_flags(rounds: list[dict], margin: float) -> list[str]:
    """Warnings between consecutive rounds: benchmark Overall below the previous round's, or a diversity
    indicator down by more than `margin` of its previous value (signs of the loop collapsing)."""
    flags = []
    for prev, cur in zip(rounds, rounds[1:]):
        k = cur["round"]
        if cur["overall"] < prev["overall"]:
            flags.append(f"round {k}: Overall {cur['overall']:.2f} < round {k - 1}'s {prev['overall']:.2f}")
        for key in DIVERSITY_KEYS:
            before, now = prev["diversity"][key], cur["diversity"][key]
            if before > 0 and (before - now) / before > margin:
                flags.append(f"round {k}: {key} fell {100 * (before - now) / before:.0f}% ({before:.3f} -> "
                             f"{now:.3f}), more than loop.diversity_margin {margin:g}")
    return flags


def report_sections(rounds: list[dict], flags: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """The closed-loop part of the benchmark report: (markdown, HTML sections) with one row per round."""
    import html

    from viper.eval import html as H
    from viper.eval.report import markdown_table

    header = ["round", "Overall (stage 2)", "Overall (stage 1)", "RL reward s1", "RL reward s2", "judge acceptance",
              "refinements / caption", "caption distinct-2", "instruction distinct-2", "caption spread",
              "caption words", "synthesis VLM"]

    def vlm(r: dict) -> str:
        m = r.get("synthesis_vlm") or {}
        return m.get("path") or m.get("id") or "-"

    rows = [[r["round"], r["overall"], r["overall_stage1"], r["rl"]["rl_stage1"]["reward_mean"],
             r["rl"]["rl_stage2"]["reward_mean"], r["judge_acceptance"], r["refinements_per_caption"],
             r["diversity"]["caption_distinct_2"], r["diversity"]["instruction_distinct_2"],
             r["diversity"]["caption_spread"], r["diversity"]["caption_length"], vlm(r)] for r in rounds]
    cats = list(rounds[0]["edit_categories"])
    cat_rows = [[r["round"], *[r["edit_categories"][c] for c in cats]] for r in rounds]
    bench_names = list(rounds[0]["benchmarks"])
    bench_rows = [[r["round"], *[r["benchmarks"][n] for n in bench_names]] for r in rounds]

    def md_table(head: list, body: list[list]) -> list[str]:
        cell = lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        return markdown_table([str(h) for h in head], [[cell(v) for v in row] for row in body])

    md = ["", "## Closed-loop rounds", "",
          "Round k synthesised its data with round k-1's stage-2 model (round 0: the base model). Measured by "
          "the `round_metrics` stages (reports/rounds/<k>/round.json).", "",
          *md_table(header, rows), "", "Benchmarks per round (stage 2):", "", *md_table(["round", *bench_names],
                                                                                       bench_rows),
          "", "Edit categories per round:", "", *md_table(["round", *cats], cat_rows), "",
          "Flags:" if flags else "Flags: none (no round fell below the previous one or lost diversity beyond the "
                                 "margin).", *[f"- {f}" for f in flags], ""]
    curve = [{"step": r["round"], "overall": r["overall"] / 100, "judge_acceptance": r["judge_acceptance"] or 0.0,
              **{k: r["diversity"][k] for k in ("caption_spread", "caption_distinct_2", "instruction_distinct_2")}}
             for r in rounds]
    sections = [
        ("Closed-loop rounds", H.table(header, rows)),
        ("Benchmarks per round (stage 2)", H.table(["round", *bench_names], bench_rows)),
        ("Per round: Overall / 100, judge acceptance, diversity",
         H.line_chart("per round (x: round 0..N)", curve, keys=("overall", "judge_acceptance", "caption_spread",
                                                                "caption_distinct_2", "instruction_distinct_2"))),
        ("Edit categories per round", H.table(["round", *cats], cat_rows)),
        ("Round flags", "<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in flags) + "</ul>" if flags
         else "<p>none</p>"),
    ]
    return "\n".join(md), sections
