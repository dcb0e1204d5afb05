"""Stage `analysis`: the paper's Figure 4 on our models, for every run (so each experiment carries its own).

(a) The policy's reasoning before and after stage 1: the base and stage-1 models answer the same caption-refining
prompts (the RL prompt, greedy); words, phrases and operation verbs of their <think> text are counted
(viper/analysis/words.py). (b) Where the model looks: attention from its answer to the image tokens, base vs
the final (stage-2) model, on the same inputs, drawn over the images (viper/analysis/attention.py).
"""

import json

from PIL import Image

from viper.analysis.attention import attention_map, concentration, overlay
from viper.analysis.words import count
from viper.backends.requests import VLMRequest
from viper.config import load_stage_params
from viper.models import resolve
from viper.rl import data
from viper.rl.cold_start import start_model
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_dir
from viper.store.viper10k import Viper10K

PANEL = 160  # pixels per image in the attention panels


def replies(path: str, examples: list[dict], p) -> list[str]:
    from viper.backends.vlm import TransformersVLM

    vlm = TransformersVLM(path, None, device=p.models.device, dtype=p.models.dtype, min_pixels=p.rl.min_pixels,
                          max_pixels=p.rl.max_pixels, batch_size=8)
    reqs = [VLMRequest(e["prompt"][0]["content"], tuple(e["images"]), max_new_tokens=p.analysis.max_new_tokens)
            for e in examples]
    return vlm.generate(reqs)


def maps(path: str, examples: list[dict], p) -> list[dict]:
    from transformers import AutoModelForImageTextToText

    from viper.backends.vlm import DTYPES, load_processor

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=DTYPES[p.models.dtype],
                                                        attn_implementation="eager").to(p.models.device).eval()
    processor = load_processor(path, None, p.rl.min_pixels, p.rl.max_pixels)
    return [attention_map(model, processor, e["images"][0], e["prompt"][0]["content"], p.analysis.max_new_tokens)
            for e in examples]


def panel(img: Image.Image, before, after) -> Image.Image:
    img = img.convert("RGB").resize((PANEL, PANEL))
    out = Image.new("RGB", (3 * PANEL + 8, PANEL), "white")
    for i, tile in enumerate((img, overlay(img, before), overlay(img, after))):
        out.paste(tile, (i * (PANEL + 4), 0))
    return out


def main() -> None:
    args = setup("analysis", __doc__, ["dataset", "models", "cold_start", "stage1", "stage2", "out", "metrics"])
    p = load_stage_params("analysis")
    examples = data.caption_examples(Viper10K(args.dataset))
    examples = sorted(examples, key=lambda e: e["key"])
    base, _ = resolve(args.models, "vlm")
    start = start_model(args.cold_start)  # what stage 1 started from: the base, or the cold-start model
    words = {"start": count(replies(start, examples[:p.analysis.examples], p)),
             "stage1": count(replies(args.stage1, examples[:p.analysis.examples], p))}
    chosen = examples[:p.analysis.attention_examples]
    before, after = maps(base, chosen, p), maps(args.stage2, chosen, p)
    with atomic_dir(args.out) as tmp:
        (tmp / "words.json").write_text(json.dumps(words, indent=2) + "\n")
        (tmp / "attention").mkdir()
        rows = []
        for e, b, a in zip(chosen, before, after):
            panel(e["images"][0], b["heat"], a["heat"]).save(tmp / "attention" / f"{e['key']}.png")
            rows.append({"key": e["key"], "grid": list(b["grid"]), "base": b["heat"].round(5).tolist(),
                         "final": a["heat"].round(5).tolist(), "base_answer": b["answer"],
                         "final_answer": a["answer"], "base_focus": concentration(b["heat"]),
                         "final_focus": concentration(a["heat"])})
        (tmp / "attention.json").write_text(json.dumps(rows, indent=2) + "\n")

    def mean(rows_, model, key):
        return round(sum(r[f"{model}_focus"][key] for r in rows_) / len(rows_), 4) if rows_ else None

    write_metrics(args.metrics, {
        "examples": len(examples[:p.analysis.examples]),
        "operations_per_1k_words": {m: sum(w["operations_per_1k_words"].values()) for m, w in words.items()},
        "think_replies": {m: w["with_think"] for m, w in words.items()},
        "attention_examples": len(rows),
        "attention_focus": {"base": mean(rows, "base", "focus"), "final": mean(rows, "final", "focus")},
        "attention_peak_share": {"base": mean(rows, "base", "peak_share"), "final": mean(rows, "final", "peak_share")},
        "attention": "answer tokens -> image tokens, mean over all layers, heads and answer tokens"})


if __name__ == "__main__":
    run(main)
