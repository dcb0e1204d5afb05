"""Generate answers for the benchmarks (predictions stage) and score them into the report (benchmark stage)."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any

import pandas as pd

from viper.backends.requests import VLMRequest
from viper.eval import html as H
from viper.eval.registry import BENCHMARKS, Bench
from viper.eval.report import MMSTAR_CATEGORIES, PAPER_PAIRS, PAPER_RESULTS, render_markdown
from viper.eval.score import overall
from viper.eval.tsv import BenchmarkDataError, decode_image

PREDICTION_COLUMNS = ["index", "prediction"]
PREDICTION_STEP = "predictions"  # the item-cache step of benchmark replies


def b64_digest(b64: str) -> str:
    """Content hash of one base64 image, without decoding it (same file bytes, same digest)."""
    return hashlib.sha256(b64.encode()).hexdigest()


def image_digests(df: pd.DataFrame) -> list[list[str]]:
    """Per row, the digests of its images (`image_b64`); a reused image (back-reference) is hashed once."""
    seen: dict[int, str] = {}  # id() of the shared string -> digest; the frame keeps the strings alive
    out = []
    for imgs in df["image_b64"]:
        row = []
        for b in imgs:
            if id(b) not in seen:
                seen[id(b)] = b64_digest(b)
            row.append(seen[id(b)])
        out.append(row)
    return out


def max_images(frames: dict[str, pd.DataFrame]) -> int:
    """The most images one row of these benchmarks carries (the VLM engine sizes its memory for it)."""
    return max((len(imgs) for df in frames.values() for imgs in df["image_b64"]), default=1) or 1


def prediction_keys(bench: Bench, df: pd.DataFrame, max_new_tokens: int, model: dict, request: dict,
                    digests: list[list[str]] | None = None) -> tuple[list[str], list[str], int]:
    """(item-cache keys, prompt texts, the reply cap) for every row of `df`, without decoding an image.

    A key hashes the evaluated model's identity (`model`: weights and backend) and the full request:
    prompt text, image content digests, max_new_tokens and `request` (pixel bounds, dtype)."""
    from viper.store.cache import make_key

    cap = min(max_new_tokens, bench.max_new_tokens or max_new_tokens)
    prompts = [bench.prompt(row) for row in df.to_dict("records")]
    digests = image_digests(df) if digests is None else digests
    keys = [make_key(PREDICTION_STEP, model, {**request, "text": text, "images": d, "max_new_tokens": cap})
            for text, d in zip(prompts, digests)]
    return keys, prompts, cap


def predict(vlm: Any, bench: Bench, df: pd.DataFrame, max_new_tokens: int, *, cache: Any, model: dict,
            request: dict, stats: Any, batch_size: int, digests: list[list[str]] | None = None,
            ) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Greedy replies to every row (all images first, then the prompt), keyed by `index` as text, and
    the rows whose model call failed [(index, detail)].

    Rows go through the item cache (`memoised`): cached replies are read back, the rest are decoded
    and generated `batch_size` rows at a time, each batch committed when it finishes. So only one
    batch of decoded images is ever held, a killed run resumes after its last finished batch, and a
    benchmark whose rows are all cached never touches `vlm` (so never loads it)."""
    from viper.synth.runner import Failed, memoised

    keys, prompts, cap = prediction_keys(bench, df, max_new_tokens, model, request, digests)
    b64s, index = df["image_b64"].tolist(), [str(i) for i in df["index"]]

    def compute(idx: list[int]) -> list[bytes]:
        reqs = []
        for i in idx:
            try:
                images = tuple(decode_image(b) for b in b64s[i])
            except (ValueError, OSError) as err:  # bad base64 or not an image
                raise BenchmarkDataError(f"{bench.name}: row {index[i]}: undecodable image ({err})") from None
            reqs.append(VLMRequest(prompts[i], images, max_new_tokens=cap))
        return [text.encode() for text in vlm.generate(reqs)]

    values = memoised(keys, compute, cache, PREDICTION_STEP, stats, batch_size)
    replies, failed = {}, []
    for i, v in zip(index, values):
        if isinstance(v, Failed):  # the call raised in its batch and again alone; not cached
            failed.append((i, v.detail))
        else:
            replies[i] = bytes(v).decode()
    return replies, failed


def prediction_file(pred_dir: str | Path, model: str, bench: str) -> Path:
    return Path(pred_dir) / f"{model}__{bench}.parquet"


def load_predictions(pred_dir: str | Path, model: str, bench: str) -> dict[str, str]:
    df = pd.read_parquet(prediction_file(pred_dir, model, bench))
    return dict(zip(df["index"].astype(str), df["prediction"]))


def score_all(frames: dict[str, pd.DataFrame], pred_dir: str | Path, models: list[str]) -> tuple[dict, dict]:
    """(results {model: {bench: score, "MMStar/<cat>": ..., "Overall": ...}}, details {(model, bench): scorer output})."""
    results, details = {}, {}
    for model in models:
        scores: dict[str, float] = {}
        for name, df in frames.items():
            out = BENCHMARKS[name].score(df, load_predictions(pred_dir, model, name))
            details[(model, name)] = out
            scores[name] = out["score"]
            for cat, v in (out.get("per_category") or {}).items():
                scores[f"{name}/{cat}"] = v
            for key in ("aAcc", "fAcc", "qAcc"):
                if key in out:
                    scores[f"{name}/{key}"] = out[key]
        scores["Overall"] = overall({n: scores[n] for n in frames})
        results[model] = scores
    return results, details


def metrics_json(results: dict) -> dict:
    out: dict[str, Any] = {m: {k: round(v, 4) for k, v in s.items()} for m, s in results.items()}
    models = list(results)
    for m in models[1:]:
        out[f"delta_{m}_vs_{models[0]}"] = round(results[m]["Overall"] - results[models[0]]["Overall"], 4)
    return out


def categories_markdown(results: dict, bench: str = "MMStar") -> str:
    cats = sorted({k.split("/", 1)[1] for s in results.values() for k in s if k.startswith(f"{bench}/")
                   and k.split("/", 1)[1] not in ("aAcc", "fAcc", "qAcc")})
    if not cats:
        return ""
    lines = [f"## {bench} per category", "", "| model | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|"]
    lines += ["| " + m + " | " + " | ".join(f"{s.get(f'{bench}/{c}', float('nan')):.1f}" for c in cats) + " |"
              for m, s in results.items()]
    return "\n".join(lines) + "\n"


def examples(frames: dict[str, pd.DataFrame], details: dict, models: list[str], per_bench: int = 1) -> list[dict]:
    out = []
    for name, df in frames.items():
        for row in df.head(per_bench).to_dict("records"):
            preds = {}
            for m in models:
                rec = next(r for r in details[(m, name)]["rows"] if str(r["index"]) == str(row["index"]))
                preds[m] = (str(rec["prediction"]), rec.get("extracted", rec.get("normalised")))
            images = row["images"] if "images" in row else [decode_image(b) for b in row["image_b64"]]
            out.append({"benchmark": name, "question": str(row["question"]), "images": images,
                        "answer": row["answer"], "predictions": preds})
    return out


def html_report(results: dict, frames: dict, details: dict, models: list[str], plots: dict[str, list[dict]],
                notes: list[str], extra: list[tuple[str, str]] = ()) -> str:
    """The report page; `extra` sections (closed-loop rounds) go before the example predictions."""
    names = list(frames)
    header = ["model", *names, "Overall"]
    rows = [[m, *[results[m].get(n) for n in names], results[m]["Overall"]] for m in models]
    rows += [[f"Δ {m} − {models[0]}", *[results[m][n] - results[models[0]][n] for n in names],
              results[m]["Overall"] - results[models[0]]["Overall"]] for m in models[1:]]
    paper = []
    for base, viper in PAPER_PAIRS:
        for label in (base, viper):
            r = PAPER_RESULTS[label]
            paper.append([f"paper: {label}", *[r.get(n) for n in names], r["Overall"]])
    cats = [c for c in MMSTAR_CATEGORIES if any(f"MMStar/{c}" in results[m] for m in models)]
    sections = [
        ("Results (this run)", H.table(header, rows)),
        ("The paper's reported numbers (Tables 1-2; not rerun here)", H.table(header, paper, cls="paper")),
        ("Per benchmark", H.bar_chart("score (%) per benchmark", names, {m: [results[m].get(n) for n in names]
                                                                         for m in models})),
    ]
    if cats:
        sections.append(("MMStar per category", H.table(["model", *cats], [[m, *[results[m].get(f"MMStar/{c}")
                                                                                 for c in cats]] for m in models])))
    for stage, rows_ in plots.items():
        sections.append((f"RL reward curve: {stage}", H.line_chart(f"{stage}: reward, format, correctness per step",
                                                                   rows_)))
    sections += list(extra)
    sections.append(("Example predictions", H.examples_table(examples(frames, details, models))))
    sections.append(("Notes", "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"))
    return H.page("ViPER benchmark report", sections)


def markdown_report(results: dict, names: list[str], notes: list[str]) -> str:
    return render_markdown(results, names, notes) + "\n" + categories_markdown(results)
