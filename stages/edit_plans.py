"""Stage `edit_plans`: the VLM picks an edit category and entity and writes one instruction (RL stage-2 truth).

Streamed: a window of seed images is decoded at a time."""

from viper.config import load_stage_params
from viper.models import round_vlm, synthesis_vlm, vlm_metrics
from viper.records import ShardImages, load_refinements
from viper.stage import run, setup, write_metrics, write_rejects
from viper.store.cache import open_cache
from viper.store.io import atomic_dir, write_table
from viper.synth.edit_plans import EditPlanTask, planning_context
from viper.synth.runner import StepStats, check_reject_fraction, run_vlm_task
from viper.synth.stream import window_size, windows

COLUMNS = ["id", "edit_id", "category", "entity", "instruction", "analysis"]


def main() -> None:
    args = setup("edit_plans", __doc__, ["seeds", "refinements", "models", "out", "metrics"], optional=("vlm",))
    p = load_stage_params("edit_plans")
    seeds = ShardImages(args.seeds)
    refinements = load_refinements(f"{args.refinements}/refinements.parquet")
    vlm, model = synthesis_vlm(args.models, p, args.vlm)  # --vlm: a closed-loop round's checkpoint
    task = EditPlanTask(p.edit_plans.max_new_tokens, p.edit_plans.max_instruction_chars)
    cache = open_cache()
    stats, rows, rejects = StepStats("edit_plans"), [], []
    for window in windows(refinements, window_size(p.vlm.batch_size), "edit_plans"):
        items = [{"key": r["id"], "image": seeds.image(r["id"]), "caption": planning_context(r)} for r in window]
        out, bad = run_vlm_task(task, items, vlm, seed=p.seed, temperature=p.vlm.temperature,
                                max_retries=p.vlm.max_retries, cache=cache, model=model, stats=stats)
        rows += out
        rejects += bad
    check_reject_fraction(stats, p.vlm.max_reject_fraction)
    with atomic_dir(args.out) as tmp:
        write_table(tmp / "edit_plans.parquet", rows, COLUMNS)
        write_rejects(tmp / "rejects.parquet", rejects)
    metrics = {**stats.metrics(), **vlm_metrics(vlm), **round_vlm(model, args.vlm)}
    metrics["categories"] = {c: sum(r["category"] == c for r in rows) for c in sorted({r["category"] for r in rows})}
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
