"""Stage `ivt_traces` (ivt/dvc.yaml): SFT data for IVT from the base model's own step-0 errors.

The base model predicts step 0 on the train split (ivt.traces.samples per item); boxes whose IoU with the truth
lies in [iou_low, iou_high] become trajectories whose T refinement targets walk evenly to the truth; the
teacher VLM (ivt.teacher) writes each step's one-sentence check. Each kept step is an SFT example that is
exactly the loop's refinement request with the check and target box as the reply (viper/ivt/traces.py)."""

import pandas as pd

from viper.config import ParamsError, load_stage_params
from viper.ivt.data import png, read_split
from viper.ivt.loop import frame_of
from viper.ivt.run import student, teacher
from viper.ivt.traces import sft_example, student_errors, teacher_checks
from viper.stage import run, setup, write_metrics
from viper.store.cache import open_cache
from viper.store.io import atomic_dir
from viper.synth.runner import StepStats

COLUMNS = ["id", "step", "image", "prompt", "completion", "iou0"]


def main() -> None:
    args = setup("ivt_traces", __doc__, ["data", "models", "out", "metrics"])
    p = load_stage_params("ivt_traces")
    ivt, cache = p.ivt, open_cache()
    samples = read_split(args.data, "train")
    vlm, identity = student(args.models, args.models, p)
    student_stats, teacher_stats = StepStats("ivt_step"), StepStats("ivt_teacher")
    errors = student_errors(vlm, identity, samples, ivt.traces, ivt, p.seed, cache, student_stats)
    kept = [e for e in errors if e["in_band"]]
    tvlm, tidentity = teacher(args.models, p)
    rows = teacher_checks(tvlm, tidentity, kept, ivt.steps, ivt.traces, ivt, cache, teacher_stats)
    examples = []
    for r in rows:
        if r["check"] is None:
            continue
        s = r["sample"]
        ex = sft_example(s["image"], s["expression"], r["prev"], r["next"], r["check"],
                         frame_of(s, ivt.min_pixels, ivt.max_pixels))
        examples.append({"id": f"{s['id']}/{r['trajectory']}", "step": r["step"], "image": png(ex["image"]),
                         "prompt": ex["prompt"], "completion": ex["completion"], "iou0": r["iou0"]})
    if not examples:
        raise ParamsError(f"no SFT traces: of {len(samples) * ivt.traces.samples} step-0 predictions "
                          f"{len(errors)} gave a box and {len(kept)} had an IoU in [{ivt.traces.iou_low}, "
                          f"{ivt.traces.iou_high}], and the teacher's check did not parse for "
                          f"{sum(r['check'] is None for r in rows)} of their {len(rows)} steps; widen the band, raise "
                          "ivt.traces.samples, or give the teacher more ivt.traces.max_new_tokens")
    with atomic_dir(args.out) as tmp:
        pd.DataFrame(examples, columns=COLUMNS).to_parquet(tmp / "traces.parquet", index=False)
    write_metrics(args.metrics, {
        "train_items": len(samples), "predictions": len(samples) * ivt.traces.samples,
        "with_box": len(errors), "in_band": len(kept), "examples": len(examples),
        "teacher_unparsable": sum(r["check"] is None for r in rows),
        "step0_iou_mean": round(sum(e["iou"] for e in errors) / len(errors), 4) if errors else None,
        "teacher": tidentity, "cache": {"student": student_stats.metrics(), "teacher": teacher_stats.metrics()}})


if __name__ == "__main__":
    run(main)
