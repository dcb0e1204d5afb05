"""What rl_stage1 and rl_stage2 train on, from which checkpoint, for how many steps.

Schedules (`rl.stage_order`), each with the same total budget stage1_steps + stage2_steps:
  two_stage       stage 1: base on caption_refining; stage 2: the stage-1 checkpoint on visual_operation
                  (the paper's coarse-to-fine curriculum).
  mixed           stage 1: base on both subsets shuffled together for the whole budget (paper Fig. 3);
  caption_only    stage 1: base on caption_refining only, whole budget (paper Fig. 5);
  operation_only  stage 1: base on visual_operation only, whole budget (paper Fig. 5).
For the single-phase schedules stage 2 passes the stage-1 checkpoint through unchanged (its metrics say
steps = 0), so `data/checkpoints/stage2` is always "the final model" and the benchmark compares like
with like.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from viper.rl import data
from viper.store.viper10k import Viper10K

log = logging.getLogger("viper")


def plan(stage: int, rl: Any, dataset: Viper10K, seed: int) -> tuple[list[dict], int]:
    """(examples, optimizer steps) for one stage of the schedule."""
    if rl.stage_order == "two_stage":
        if stage == 1:
            return data.caption_examples(dataset), rl.stage1_steps
        return data.operation_examples(dataset), rl.stage2_steps
    if stage == 2:
        return [], 0
    budget = rl.stage1_steps + rl.stage2_steps
    if rl.stage_order == "mixed":
        both = data.caption_examples(dataset) + data.operation_examples(dataset)
        return data.shuffled(both, seed), budget
    if rl.stage_order == "caption_only":
        return data.caption_examples(dataset), budget
    if rl.stage_order == "operation_only":
        return data.operation_examples(dataset), budget
    raise ValueError(f"unknown rl.stage_order {rl.stage_order!r}")


def dataset_summary(dataset: Viper10K) -> dict:
    """Which Viper10K a run trained on, for its metrics: a pulled release names its origin."""
    release = dataset.manifest.get("release") or {}
    return {"dir": str(dataset.root), **dataset.counts(),
            **{k: release[k] for k in ("git_revision", "license") if k in release}}


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(sum(values) / len(values), 6) if values else None


def drop_overlong(examples: list[dict], processor: Any, max_prompt_length: int) -> tuple[list[dict], int]:
    """TRL does not truncate prompts; like verl's filter_overlong_prompts we drop them (and count)."""
    kept = [e for e in examples if data.prompt_tokens(processor, e) <= max_prompt_length]
    return kept, len(examples) - len(kept)


def run_stage(stage: int, p: Any, init_path: str, dataset: Viper10K, models_dir: str,
              out_dir: str | Path, curves_dir: str | Path) -> dict:
    from viper.backends.vlm import load_processor
    from viper.models import dir_digest, load_embedder, resolve
    from viper.rl.reward import ViperReward
    from viper.rl.curves import write_curves
    from viper.rl.trl_backend import save_run_config, train
    from viper.store.cache import cache_dir
    from viper.store.io import atomic_dir
    from viper.synth.runner import derive_id

    start = time.perf_counter()
    examples, steps = plan(stage, p.rl, dataset, p.seed)
    metrics: dict[str, Any] = {"schedule": p.rl.stage_order, "steps": steps, "dataset": dataset_summary(dataset)}
    if steps == 0:
        log.info("stage %d of schedule %s trains nothing: passing %s through", stage, p.rl.stage_order, init_path)
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(init_path, tmp, dirs_exist_ok=True)
        write_curves(curves_dir, [])
        return {**metrics, "examples": 0, "dropped_overlong": 0}
    processor = load_processor(init_path, None, p.rl.min_pixels, p.rl.max_pixels)
    examples, dropped = drop_overlong(examples, processor, p.rl.max_prompt_length)
    if not examples:
        raise SystemExit(f"rl_stage{stage}: no training examples (schedule {p.rl.stage_order}, "
                         f"{dropped} dropped as longer than rl.max_prompt_length={p.rl.max_prompt_length}); "
                         "check the viper10k subsets and their metrics")
    # Trainer checkpoints live in the item cache, under a key of everything that determines the run, so
    # a killed stage resumes, and a changed run never resumes from a stale checkpoint.
    run_key = derive_id("rl", stage, dir_digest(Path(init_path)) if Path(init_path).is_dir() else init_path,
                        [e["key"] for e in examples], steps, p.rl.dump(), p.reward.dump(), p.seed)
    work_dir = cache_dir() / "rl" / run_key
    with atomic_dir(out_dir) as tmp:
        if p.rl.backend == "verl":  # the reward runs inside verl's workers (viper/rl/verl_reward.py)
            from viper.rl import verl_backend

            # the embedder at its pinned revision, on the TRL path's device (verl's workers see the GPUs)
            rows, resumed = verl_backend.train(init_path, examples, tmp, p.rl, p.reward, steps,
                                               embedder=resolve(models_dir, "embed"),
                                               embedder_device=p.models.device, work_dir=work_dir,
                                               experiment=f"stage{stage}")
            write_curves(curves_dir, rows)  # parsed from verl's log once it has finished
        else:
            reward = ViperReward(load_embedder(models_dir, p.models), p.reward.tau, p.reward.w_format,
                                 p.reward.w_correct)
            rows, resumed = train(init_path, examples, tmp, p.rl, reward, [p.reward.w_format, p.reward.w_correct],
                                  steps, p.seed, p.models.device, p.models.dtype, work_dir=work_dir,
                                  curves_dir=curves_dir)  # written while it trains
        save_run_config(tmp, {"stage": stage, "init": str(init_path), "rl": p.rl.dump(),
                              "reward": p.reward.dump(), "seed": p.seed, "examples": len(examples)})
    tasks = sorted({e["task"] for e in examples})
    metrics.update({
        "examples": len(examples), "dropped_overlong": dropped, "resumed_from_step": resumed,
        **{f"examples_{t}": sum(e["task"] == t for e in examples) for t in tasks},
        "logged_steps": len(rows),
        "reward_mean": _mean(rows, "reward"),
        "reward_last": round(rows[-1]["reward"], 6) if rows else None,
        "format_mean": _mean(rows, "format"),    # None on verl: its console log has the total only
        "correct_mean": _mean(rows, "correct"),
        "seconds": round(time.perf_counter() - start, 2),
    })
    return metrics
