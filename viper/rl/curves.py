"""Per-optimizer-step training curves of an RL stage, written with DVCLive (DVC's own logger).

Layout (DVCLive's): `<dir>/plots/metrics/<name>.tsv`, columns `step` and `<name>`, one row per optimizer step,
for each name in CURVES. DVC reads these as the stage's plots, so `dvc plots show` / `dvc plots diff <exps>`
compare runs, and the files grow while training runs (watch them, or `dvc plots show`, for progress).

Rows are appended as training logs them (viper.rl.trl_backend adds a Trainer callback); `add` skips steps
already written, so replaying a resumed run's restored history never duplicates a step.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

CURVES = ["reward", "reward_std", "format", "correct", "completion_length"]


class CurveLog:
    def __init__(self, out_dir: str | Path):
        from dvclive import Live

        self.dir = Path(out_dir)
        # Only the metric files: no dvc.yaml edits, no experiment saving, no report (the pipeline owns those).
        self.live = Live(dir=str(self.dir), save_dvc_exp=False, dvcyaml=False, report=None)
        self.last_step = 0

    def add(self, rows: list[dict]) -> None:
        """Append the rows of steps not written yet, in step order."""
        for row in sorted(rows, key=lambda r: r["step"]):
            if row["step"] <= self.last_step:
                continue
            self.live.step = int(row["step"])
            for name in CURVES:
                value = row.get(name)
                if value is not None:
                    self.live.log_metric(name, float(value))
            self.last_step = int(row["step"])


def write_curves(out_dir: str | Path, rows: list[dict]) -> None:
    """All rows at once (verl's parsed log, or a stage that trains nothing: the directory exists, empty)."""
    CurveLog(out_dir).add(rows)
    Path(out_dir).mkdir(parents=True, exist_ok=True)


def read_curves(out_dir: str | Path) -> list[dict]:
    """The curves back as rows {"step": int, name: float, ...}, steps in order ([] if none were written)."""
    by_step: dict[int, dict[str, Any]] = {}
    for name in CURVES:
        path = Path(out_dir) / "plots" / "metrics" / f"{name}.tsv"
        if not path.exists():
            continue
        with open(path, newline="") as f:
            for rec in csv.DictReader(f, delimiter="\t"):
                step = int(rec["step"])
                value = float(rec[name])
                by_step.setdefault(step, {"step": step})[name] = None if math.isnan(value) else value
    return [by_step[s] for s in sorted(by_step)]
