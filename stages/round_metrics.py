"""Stage `round_metrics` (rounds/dvc.yaml): what one closed-loop round achieved and made, for rounds 0..N.

Benchmark scores of its stage-1 and stage-2 models (its saved predictions, scored like the `benchmark`
stage), its RL reward / format / correctness, how much of its synthesis survived the judge, refinements per
caption, the edit-category histogram, and collapse indicators of its own data: distinct-1/2 of captions and
of edit instructions, caption length, and the mean pairwise similarity of its captions under the project's
embedder (`caption_spread` = 1 - that). Written as DVC metrics (reports/rounds/<k>/round.json), so
`dvc exp show` lists them per round; the `benchmark` stage puts them side by side and flags regressions.
"""

import json
from pathlib import Path

import pandas as pd

from viper.config import load_stage_params
from viper.eval.registry import check_files, load_checked
from viper.eval.run import score_all
from viper.loop import dataset_measures, judge_acceptance, mean_pairwise_similarity
from viper.models import load_embedder
from viper.stage import run, setup, write_metrics
from viper.store.viper10k import Viper10K

RL_KEYS = ("reward_mean", "reward_last", "format_mean", "correct_mean")


def main() -> None:
    args = setup("round_metrics", __doc__, ["round", "bench", "models", "own", "predictions", "stage_metrics",
                                            "out"])
    p = load_stage_params("round_metrics")
    b = p.benchmark
    frames = {name: load_checked(path, name, b.suite, decode=False)
              for name, path in check_files(args.bench, b.suite, list(b.names)).items()}
    results, _ = score_all(frames, args.predictions, ["stage1", "stage2"])

    own = Viper10K(args.own)
    captions, refinements, instructions, categories = [], [], [], []
    for sample in own.samples("caption_refining"):
        captions.append(sample["json"]["caption"])
        refinements.append(sample["json"]["refinements"])
    for sample in own.samples("visual_operation"):
        instructions.append(sample["json"]["instruction"])
        categories.append(sample["json"]["category"])
    measures = dataset_measures(captions, refinements, instructions, categories)
    similarity = mean_pairwise_similarity(load_embedder(args.models, p.models).encode(captions))
    decisions = Path(args.own) / "decisions.parquet"  # a built dataset has it; a pulled release may not
    acceptance = judge_acceptance(pd.read_parquet(decisions).to_dict("records")) if decisions.exists() else None

    rl = {}
    for stage in ("rl_stage1", "rl_stage2"):
        m = json.loads((Path(args.stage_metrics) / f"{stage}.json").read_text())
        rl[stage] = {k: m.get(k) for k in RL_KEYS}
    measures["diversity"].update(caption_similarity=similarity, caption_spread=round(1 - similarity, 4))
    write_metrics(args.out, {
        "round": int(args.round),
        "overall": round(results["stage2"]["Overall"], 4),
        "overall_stage1": round(results["stage1"]["Overall"], 4),
        "benchmarks": {name: round(results["stage2"][name], 4) for name in frames},
        "rl": rl,
        "judge_acceptance": acceptance,
        **measures,
        "synthesis_vlm": own.manifest.get("models", {}).get("vlm"),
    })


if __name__ == "__main__":
    run(main)
