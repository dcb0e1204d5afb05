"""Stage `viper10k`: CLIP filter + VLM judge on the edited pairs; package both subsets as shards.

Streamed: both model steps work a window of pairs at a time, and the subsets are written a sample at a
time, decoding each image when it is written."""

from collections import Counter
from pathlib import Path

from viper.config import load_stage_params
from viper.models import load_clip, model_identity, round_vlm, synthesis_vlm, vlm_metrics
from viper.records import ShardImages, load_refinements
from viper.stage import run, setup, write_metrics
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, atomic_write_bytes, write_json, write_table
from viper.store.viper10k import build_manifest, card
from viper.synth import viper10k as v10k
from viper.synth.judge import JudgeTask
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task
from viper.synth.stream import window_size, windows


def main() -> None:
    args = setup("viper10k", __doc__, ["seeds", "refinements", "edited_pairs", "models", "out", "metrics"],
                 optional=("vlm",))
    p = load_stage_params("viper10k")
    seeds, edited = ShardImages(args.seeds), ShardImages(args.edited_pairs)
    pairs = [edited.meta(k) for k in edited]

    cache = open_cache()
    clip, clip_model = load_clip(args.models, p.models), model_identity(args.models, "clip")
    clip_stats, sims = StepStats("clip_filter"), []
    for window in windows(pairs, window_size(v10k.CLIP_BATCH), "clip_filter"):
        sims += v10k.clip_similarities(clip, window, {q["id"]: seeds.image(q["id"]) for q in window},
                                       {q["edit_id"]: edited.image(q["edit_id"]) for q in window}, cache,
                                       clip_model, clip_stats, p.viper10k.clip_max_reject_fraction)
    check_reject_fraction(clip_stats, p.viper10k.clip_max_reject_fraction)
    decisions = v10k.clip_decisions(sims, pairs, p.viper10k.clip_min, p.viper10k.clip_max)

    vlm, vlm_model = synthesis_vlm(args.models, p, args.vlm)  # --vlm: a closed-loop round's checkpoint
    task = JudgeTask(p.viper10k.judge_max_new_tokens)
    judge_stats, verdicts, unparsable = StepStats("judge"), [], []
    kept_pairs = [q for d, q in zip(decisions, pairs) if d["kept"]]
    for window in windows(kept_pairs, window_size(p.vlm.batch_size), "judge"):
        candidates = [{"key": q["edit_id"], "image": seeds.image(q["id"]), "edited": edited.image(q["edit_id"]),
                       "instruction": q["instruction"]} for q in window]
        out, bad = run_vlm_task(task, candidates, vlm, seed=p.seed, temperature=p.vlm.temperature,
                                max_retries=p.vlm.max_retries, cache=cache, model=vlm_model, stats=judge_stats)
        verdicts += out
        unparsable += bad
    check_reject_fraction(judge_stats, p.vlm.max_reject_fraction)
    v10k.apply_verdicts(decisions, verdicts, unparsable)
    valid = sorted(d["edit_id"] for d in decisions if d["kept"])
    kept = set(valid[:p.viper10k.max_visual_operation])  # None keeps all

    refinements = load_refinements(f"{args.refinements}/refinements.parquet")[:p.viper10k.max_caption_refining]
    out = Path(args.out)
    entries = {}
    with atomic_dir(out / "caption_refining") as tmp:
        entries["caption_refining"] = v10k.write_subset(tmp, v10k.caption_samples(refinements, seeds.image),
                                                        p.viper10k.shard_size)
    with atomic_dir(out / "visual_operation") as tmp:
        entries["visual_operation"] = v10k.write_subset(
            tmp, v10k.operation_samples([q for q in pairs if q["edit_id"] in kept], seeds.image, edited.image),
            p.viper10k.shard_size)
    models = {role: model_identity(args.models, role) for role in ("vlm", "t2i", "edit", "clip")}
    if args.vlm:  # the judge (and the captions, critiques and plans before it) came from a round's checkpoint
        models["vlm"] = {"id": vlm_model["id"], "revision": vlm_model["revision"], "path": args.vlm}
    man = build_manifest(entries, models=models, params={"viper10k": p.viper10k.dump(), "seed": p.seed})
    write_json(out / "manifest.json", man)
    atomic_write_bytes(out / "README.md", card(man).encode())
    write_table(out / "decisions.parquet", decisions, v10k.DECISION_COLUMNS)

    reasons = Counter(d["reason"] for d in decisions if not d["kept"])
    write_metrics(args.metrics, {
        "edits_in": len(pairs), "edits_valid": len(valid), "edits_kept": len(kept),
        "survival": round(len(kept) / len(pairs), 4) if pairs else 0.0,
        "rejects": dict(sorted(reasons.items())), "clip_filter": clip_stats.metrics(),
        "judge": {**judge_stats.metrics(), **vlm_metrics(vlm), **round_vlm(vlm_model, args.vlm)},
        "caption_refining": man["subsets"]["caption_refining"]["count"],
        "visual_operation": man["subsets"]["visual_operation"]["count"],
    })


if __name__ == "__main__":
    run(main)
