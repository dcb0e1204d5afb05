"""Stage `benchmark`: score the saved predictions; write the markdown and HTML reports and the metrics.

With closed-loop rounds (loop.rounds > 0) it also lays the rounds side by side from their `round_metrics`
(reports/rounds/<k>/round.json, a dependency through the reports/rounds directory) and flags a round whose
Overall fell or whose diversity dropped beyond loop.diversity_margin."""

import json
from pathlib import Path

from viper.config import load_stage_params
from viper.eval.models import evaluated_models
from viper.eval.registry import check_files, load_checked
from viper.eval.run import html_report, markdown_report, metrics_json, score_all
from viper.loop import ROUND_FILE, report_sections, round_flags
from viper.rl.curves import read_curves
from viper.stage import run, setup, write_metrics
from viper.store.io import atomic_write_bytes


def main() -> None:
    args = setup("benchmark", __doc__, ["data", "models", "cold_start", "stage1", "stage2", "predictions",
                                        "curves1", "curves2", "rounds", "report", "html", "metrics"])
    p = load_stage_params("benchmark")
    b = p.benchmark
    # Images stay base64: scoring reads no pixels, and the report decodes only its example rows.
    frames = {name: load_checked(path, name, b.suite, decode=False)
              for name, path in check_files(args.data, b.suite, list(b.names)).items()}
    models = list(evaluated_models(args.models, args.cold_start, args.stage1, args.stage2))
    results, details = score_all(frames, args.predictions, models)
    notes = [f"Suite: {b.suite}. Greedy decoding, max_new_tokens={b.max_new_tokens} (Mantis-Eval: 50); "
             f"Qwen2.5-VL pixel bounds min_pixels={b.min_pixels}, max_pixels={b.max_pixels}.",
             "Scored with VLMEvalKit's exact-matching rules (no LLM judge); Overall = unweighted mean.",
             "Only deltas measured in one harness are comparable; reruns of the paper's baselines land 1-3 "
             "points from its table."]
    rounds = [json.loads((Path(args.rounds) / str(k) / ROUND_FILE).read_text())
              for k in range(p.loop.rounds + 1)] if p.loop.rounds else []
    flags = round_flags(rounds, p.loop.diversity_margin)
    rounds_md, rounds_html = report_sections(rounds, flags) if rounds else ("", [])
    atomic_write_bytes(args.report, (markdown_report(results, list(frames), notes) + rounds_md).encode())
    plots = {"rl_stage1": read_curves(args.curves1), "rl_stage2": read_curves(args.curves2)}
    atomic_write_bytes(args.html, html_report(results, frames, details, models, plots, notes, rounds_html).encode())
    metrics = metrics_json(results)
    if rounds:  # per-round Overall and flags beside round 0's table (dvc exp show lists them)
        metrics["rounds"] = {"overall": [r["overall"] for r in rounds], "flags": flags}
    write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    run(main)
