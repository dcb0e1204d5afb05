"""reports/paper.{md,html,json}: the paper's Tables 1-2 and Figures 2-5 from our experiments (viper/paper.py).

Where the paper's text gives numbers (Tables 1-2) they stand beside ours; its figures' values are not in the
text, so Figures 2, 3, 4 and 5 show ours alone, and say so. The rounds experiment, when there is one, comes last
under "beyond the paper", laid out as the benchmark report lays out closed-loop rounds. Every number here was read
from an experiment's committed outputs (reports/benchmark.json, the RL curves, reports/analysis/,
reports/rounds/<k>/round.json).
"""

from __future__ import annotations

import html
import io

from PIL import Image

from viper.eval.report import MISSING, MMSTAR_CATEGORIES, PAPER_BENCHMARKS, PAPER_RESULTS, markdown_table

OPERATION_NOTE = ("The paper names 'scan', 'zoom in', 'look closely at' and 'focus on' as the operation verbs that "
                  "appear after stage 1; counted here in the <think> text only.")
ROUNDS_TITLE = "closed-loop rounds (ours alone)"
ROUNDS_NOTE = ("The paper runs one cycle of synthesis and training; whether further rounds, each synthesising with "
               "the previous round's final model, keep improving is its open question 1. The `rounds` experiment "
               "(params paper.rounds) runs the recipe and then that many rounds.")
TINY_NOTE = ("On the embedded default (tiny random models, a few generated seed images, tens of RL steps) every "
             "figure below is a pipeline check: the numbers say nothing about the method.")


def _f(v: float | None, signed: bool = False) -> str:
    return MISSING if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")


def _scores(exp: dict, model: str, keys: list[str]) -> list[float | None]:
    return [exp["benchmark"].get(model, {}).get(k) for k in keys]


def _beside_paper(results: dict, keys: list[str]) -> list[list[str]]:
    """Our base and two-stage final model on `keys`, their difference, then the paper's four models."""
    two = results["two_stage"]
    base, ours = _scores(two, "base", keys), _scores(two, "stage2", keys)
    rows = [["ours: base", *map(_f, base)], ["ours: ViPER (two-stage)", *map(_f, ours)],
            ["ours: Δ", *(_f(None if a is None or b is None else b - a, True) for a, b in zip(base, ours))]]
    for name in ("Qwen2.5-VL-7B", "Qwen-Viper-7B", "Qwen2.5-VL-3B", "Qwen-Viper-3B"):
        rows.append([f"paper: {name}", *(_f(PAPER_RESULTS[name].get(k)) for k in keys)])
    return rows


def table1(results: dict) -> tuple[list[str], list[list[str]]]:
    cols = [*PAPER_BENCHMARKS, "Overall"]
    return ["model", *cols], _beside_paper(results, cols)


def table2(results: dict) -> tuple[list[str], list[list[str]]]:
    return ["model", *MMSTAR_CATEGORIES], _beside_paper(results, [f"MMStar/{c}" for c in MMSTAR_CATEGORIES])


def figure3(results: dict) -> dict:
    """Two-stage minus mixed per MMStar domain (the final model of each)."""
    keys = [f"MMStar/{c}" for c in MMSTAR_CATEGORIES]
    two, mixed = _scores(results["two_stage"], "stage2", keys), _scores(results["mixed"], "stage2", keys)
    return {c: {"two_stage": a, "mixed": b, "delta": None if a is None or b is None else round(a - b, 4)}
            for c, a, b in zip(MMSTAR_CATEGORIES, two, mixed)}


def figure5(results: dict) -> dict:
    """Each single-stage ablation and both stages, per benchmark and Overall; deltas against both stages."""
    cols = [*PAPER_BENCHMARKS, "Overall"]
    both = _scores(results["two_stage"], "stage2", cols)
    out = {}
    for name in ("caption_only", "operation_only"):
        own = _scores(results[name], "stage2", cols)
        out[name] = {c: {"score": s, "delta_vs_both": None if s is None or b is None else round(s - b, 4)}
                     for c, s, b in zip(cols, own, both)}
    out["two_stage"] = {c: {"score": b} for c, b in zip(cols, both)}
    return out


def figure2(results: dict) -> dict:
    """Stage-1 reward per step with and without the cold start."""
    def last(rows: list[dict]) -> float | None:
        return rows[-1].get("reward") if rows else None

    with_cs, without = results["cold_start"]["curves"]["rl_stage1"], results["two_stage"]["curves"]["rl_stage1"]
    return {"with_cold_start": with_cs, "without_cold_start": without,
            "final_reward": {"with_cold_start": last(with_cs), "without_cold_start": last(without)}}


def summary(results: dict) -> dict:
    """reports/paper.json: what `dvc exp show` / a reader compares."""
    two = results["two_stage"]
    words = two.get("words", {})
    cols = [*PAPER_BENCHMARKS, "Overall"]
    return {
        "experiments": {n: {"commit": e["commit"], "overall_base": e["benchmark"].get("base", {}).get("Overall"),
                            "overall_final": e["benchmark"].get("stage2", {}).get("Overall")}
                        for n, e in results.items()},
        "table1": {"base": dict(zip(cols, _scores(two, "base", cols))),
                   "viper": dict(zip(cols, _scores(two, "stage2", cols)))},
        "figure2": figure2(results)["final_reward"],
        "figure3": figure3(results),
        "figure5": figure5(results),
        "figure4a": {m: {"words": w.get("words"), "with_think": w.get("with_think"), "operations": w.get("operations")}
                     for m, w in words.items()},
        "figure4b": [{"key": r["key"], "base_focus": r["base_focus"], "final_focus": r["final_focus"]}
                     for r in two.get("attention", [])],
        **({"rounds": {"overall": [r["overall"] for r in results["rounds"]["rounds"]],
                       "flags": results["rounds"]["benchmark"].get("rounds", {}).get("flags", [])}}
           if "rounds" in results else {}),
    }


def markdown(results: dict) -> str:
    f3, f5, f2 = figure3(results), figure5(results), figure2(results)
    words = results["two_stage"].get("words", {})
    lines = ["# ViPER: the paper's experiments, reproduced", "", TINY_NOTE, "",
             "Experiments: " + ", ".join(f"`paper-{n}` ({e['commit'][:8]})" for n, e in results.items()), "",
             "## Table 1: seven benchmarks, base vs ViPER", "", *markdown_table(*table1(results)), "",
             "## Table 2: MMStar domains", "", *markdown_table(*table2(results)), "",
             "## Figure 2: stage-1 reward with and without cold start (ours alone: the paper gives no values)", "",
             f"Final stage-1 reward: with cold start {_f3(f2['final_reward']['with_cold_start'])}, without "
             f"{_f3(f2['final_reward']['without_cold_start'])}. Curves in reports/paper.html.", "",
             "## Figure 3: two-stage minus mixed RL per MMStar domain (ours alone)", "",
             *markdown_table(["domain", "two-stage", "mixed", "Δ"],
                             [[c, _f(v["two_stage"]), _f(v["mixed"]), _f(v["delta"], True)] for c, v in f3.items()]),
             "", "## Figure 4a: the words of the policy's reasoning, before and after stage 1 (ours alone)", "",
             OPERATION_NOTE, ""]
    if words:
        ops = list(next(iter(words.values()))["operations"])
        lines += markdown_table(["model", "replies with <think>", "words", *ops],
                                [[m, str(w["with_think"]), str(w["words"]), *(str(w["operations"][o]) for o in ops)]
                                 for m, w in words.items()])
        for m, w in words.items():
            lines += ["", f"Top words ({m}): " + (", ".join(f"{t} ({c})" for t, c in w["top_words"][:15]) or "none")]
    lines += ["", "## Figure 4b: attention from the answer to the image, base vs final model (ours alone)", "",
              "Mean over all layers, heads and answer tokens, normalised over the image tokens; panels in "
              "reports/paper.html (image, base, final).", ""]
    lines += markdown_table(["input", "base focus", "final focus", "base peak share", "final peak share"],
                            [[r["key"], f"{r['base_focus']['focus']:.3f}", f"{r['final_focus']['focus']:.3f}",
                              f"{r['base_focus']['peak_share']:.3f}", f"{r['final_focus']['peak_share']:.3f}"]
                             for r in results["two_stage"].get("attention", [])])
    cols = [*PAPER_BENCHMARKS, "Overall"]
    lines += ["", "## Figure 5: single-stage ablations vs both stages (ours alone)", "",
              *markdown_table(["run", *cols], [
                  [name, *(_f(f5[name][c]["score"]) for c in cols)] for name in ("caption_only", "operation_only",
                                                                                   "two_stage")]
                  + [[f"{name} − both", *(_f(f5[name][c]["delta_vs_both"], True) for c in cols)]
                     for name in ("caption_only", "operation_only")]), ""]
    if "rounds" in results:
        md, _ = rounds_sections(results["rounds"])
        lines += [f"## Beyond the paper: {ROUNDS_TITLE}", "", ROUNDS_NOTE, md.replace("## Closed-loop rounds", "###"
                                                                                      " Closed-loop rounds")]
    return "\n".join(lines) + "\n"


def rounds_sections(exp: dict) -> tuple[str, list[tuple[str, str]]]:
    """The rounds experiment's round-by-round tables, as the benchmark report lays them out (viper/loop.py)."""
    from viper.loop import report_sections

    return report_sections(exp["rounds"], exp["benchmark"].get("rounds", {}).get("flags", []))


def _f3(v: float | None) -> str:
    return MISSING if v is None else f"{v:.3f}"


def html_page(results: dict) -> str:
    from viper.eval import html as H

    f2, f3, f5 = figure2(results), figure3(results), figure5(results)
    two = results["two_stage"]
    cols = [*PAPER_BENCHMARKS, "Overall"]
    curve_rows: dict[int, dict] = {}
    for key, rows in (("with_cold_start", f2["with_cold_start"]), ("without_cold_start", f2["without_cold_start"])):
        for r in rows:
            curve_rows.setdefault(r["step"], {"step": r["step"]})[key] = r.get("reward")
    fig2 = H.line_chart("Stage-1 reward per step", [curve_rows[s] for s in sorted(curve_rows)],
                        keys=("with_cold_start", "without_cold_start"))
    fig3 = H.bar_chart("MMStar domains: two-stage vs mixed (final model)", list(f3),
                       {"two-stage": [v["two_stage"] for v in f3.values()], "mixed": [v["mixed"] for v in f3.values()]})
    fig5 = H.bar_chart("Single-stage ablations vs both stages", cols,
                       {name: [f5[name][c]["score"] for c in cols] for name in ("caption_only", "operation_only",
                                                                                 "two_stage")})
    words = two.get("words", {})
    vocab = []
    for w in words.values():
        vocab += [t for t, _ in w["top_words"][:10] if t not in vocab]
    fig4a = H.bar_chart("Top reasoning words, % of the words of each model's <think> text", vocab or ["(none)"],
                        {m: [100 * dict(w["top_words"]).get(t, 0) / w["words"] if w["words"] else 0.0 for t in vocab]
                         or [None] for m, w in words.items()})
    clouds = "".join(H.word_cloud(f"{m}: top words of <think>", w["top_words"], colour=H.BAR_COLOURS[i],
                                  empty=f"no <think> text in its {w['replies']} replies")
                     for i, (m, w) in enumerate(words.items()))
    ops_table = H.table(["model", "replies with <think>", "words", *(next(iter(words.values()))["operations"]
                                                                      if words else [])],
                        [[m, w["with_think"], w["words"], *w["operations"].values()] for m, w in words.items()])
    def panel(r: dict) -> str:
        img = Image.open(io.BytesIO(two["attention_png"][r["key"]]))
        return (f"<figure><figcaption>{html.escape(r['key'])}: image, base, final (focus "
                f"{r['base_focus']['focus']:.3f} → {r['final_focus']['focus']:.3f})</figcaption>"
                f"{H.image_tag(img, size=520)}</figure>")

    panels = "".join(panel(r) for r in two.get("attention", []))
    sections = [
        ("About", f"<p>{html.escape(TINY_NOTE)}</p><p>Experiments: " + ", ".join(
            f"paper-{html.escape(n)} ({e['commit'][:8]})" for n, e in results.items()) + "</p>"),
        ("Table 1: seven benchmarks, base vs ViPER", H.table(*table1(results))),
        ("Table 2: MMStar domains", H.table(*table2(results))),
        ("Figure 2: stage-1 reward with and without cold start (ours alone)", fig2),
        ("Figure 3: two-stage vs mixed RL per MMStar domain (ours alone)", fig3 + H.table(
            ["domain", "two-stage", "mixed", "Δ"],
            [[c, v["two_stage"], v["mixed"], v["delta"]] for c, v in f3.items()])),
        ("Figure 4a: words of the policy's reasoning before and after stage 1 (ours alone)",
         f"<p>{html.escape(OPERATION_NOTE)}</p>" + f"<div class='clouds'>{clouds}</div>" + fig4a + ops_table),
        ("Figure 4b: attention from the answer to the image, base vs final (ours alone)",
         "<p>Mean over all layers, heads and answer tokens, normalised over the image tokens.</p>" + panels),
        ("Figure 5: single-stage ablations vs both stages (ours alone)", fig5),
    ]
    if "rounds" in results:
        sections.append((f"Beyond the paper: {ROUNDS_TITLE}", f"<p>{html.escape(ROUNDS_NOTE)}</p>"))
        sections += rounds_sections(results["rounds"])[1]
    return H.page("ViPER: the paper's experiments, reproduced", sections)
