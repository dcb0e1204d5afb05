"""`viper paper`: the paper's experimental section as DVC experiments, and one report beside the paper's.

Experiments (each a `dvc exp run` of the whole pipeline with a few params changed, named `paper-<name>`):

    two_stage       the recipe (rl.stage_order two_stage)            Tables 1-2, Figure 4, baseline of 2, 3, 5
    mixed           both tasks blended in one RL run                  Figure 3
    caption_only    stage 1 alone                                     Figure 5
    operation_only  stage 2 alone                                     Figure 5
    cold_start      the recipe after the SFT warm-up                  Figure 2

They are queued with `dvc exp run --queue` and run by one `dvc queue` worker. An experiment already finished for
the current commit with the same params is not queued again, so the command resumes, and run twice it runs
nothing. The report is then built from the experiments' committed outputs (git refs under refs/exps), never from
whatever the workspace holds: reports/paper.md, reports/paper.html, reports/paper.json.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

PREFIX = "paper-"
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "two_stage": {"rl.stage_order": "two_stage", "cold_start.enabled": False},
    "mixed": {"rl.stage_order": "mixed", "cold_start.enabled": False},
    "caption_only": {"rl.stage_order": "caption_only", "cold_start.enabled": False},
    "operation_only": {"rl.stage_order": "operation_only", "cold_start.enabled": False},
    "cold_start": {"rl.stage_order": "two_stage", "cold_start.enabled": True},
}


class PaperError(RuntimeError):
    pass


def _git(root: Path, *args: str, binary: bool = False) -> Any:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=not binary)
    if proc.returncode:
        raise PaperError(f"git {' '.join(args)} failed: {proc.stderr.strip() if not binary else proc.stderr[:300]}")
    return proc.stdout


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise PaperError(f"dvc {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def with_overrides(params: dict, overrides: dict[str, Any]) -> dict:
    out = json.loads(json.dumps(params))
    for dotted, value in overrides.items():
        node = out
        *path, last = dotted.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    return out


def finished(root: Path) -> dict[str, str]:
    """name -> commit of the paper experiments that exist for the current commit (HEAD)."""
    head = _git(root, "rev-parse", "HEAD").strip()
    # for-each-ref matches whole path components: list the baseline's folder, then pick our names
    refs = _git(root, "for-each-ref", f"refs/exps/{head[:2]}/{head[2:]}/", "--format=%(refname) %(objectname)")
    out = {}
    for ref, _, sha in (r.partition(" ") for r in refs.splitlines()):
        name = ref.rpartition("/")[2]
        if name.startswith(PREFIX):
            out[name.removeprefix(PREFIX)] = sha
    return out


def plan(root: Path, names: list[str]) -> tuple[list[str], list[str]]:
    """(to run, already done): an experiment is done when it exists for HEAD with the params it would run now."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    done = finished(root)
    todo, kept = [], []
    for name in names:
        want = with_overrides(params, EXPERIMENTS[name])
        sha = done.get(name)
        if sha and yaml.safe_load(_git(root, "show", f"{sha}:params.yaml")) == want:
            kept.append(name)
        else:
            todo.append(name)
    return todo, kept


def _value(v: Any) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def run(root: Path, names: list[str], poll: float = 10.0, log=print) -> list[str]:
    """Queue the experiments not done yet, run the queue with one worker, and wait. Returns those it ran."""
    todo, kept = plan(root, names)
    for name in kept:
        log(f"paper-{name}: done for this commit and these params, not rerun")
    if not todo:
        return []
    stale = [PREFIX + n for n in todo if n in finished(root)]  # same name, other params: replaced
    if stale:
        _dvc(root, "exp", "remove", *stale)
    for name in todo:
        sets = [a for k, v in EXPERIMENTS[name].items() for a in ("-S", f"{k}={_value(v)}")]
        # no --force: for `dvc exp run` it also means "rerun every stage"
        _dvc(root, "exp", "run", "--queue", "-n", PREFIX + name, "dvc.yaml", "paper/dvc.yaml", *sets)
        log(f"paper-{name}: queued")
    _dvc(root, "queue", "start", "-j", "1")
    while True:
        status = _dvc(root, "queue", "status")
        pending = [line for line in status.splitlines() if line.split()[-1:] in (["Queued"], ["Running"])
                   and any(PREFIX + n in line for n in todo)]
        if not pending:
            break
        time.sleep(poll)
    failed = [n for n in todo if any(PREFIX + n in line and "Failed" in line for line in status.splitlines())]
    if failed:
        logs = "\n".join(_dvc(root, "queue", "logs", PREFIX + n)[-2000:] for n in failed[:1])
        raise PaperError(f"experiments failed: {', '.join(PREFIX + n for n in failed)}\n{logs}")
    return todo


def read(root: Path, sha: str, path: str, binary: bool = False) -> Any:
    return _git(root, "show", f"{sha}:{path}", binary=binary)


def collect(root: Path, names: list[str]) -> dict[str, dict]:
    """What the report needs from each finished experiment's commit."""
    from viper.rl.curves import CURVES

    done = finished(root)
    missing = [n for n in names if n not in done]
    if missing:
        raise PaperError(f"no finished experiment for {', '.join(PREFIX + n for n in missing)} at this commit: "
                         "run `viper paper` (without --no-run)")
    out = {}
    for name in names:
        sha = done[name]
        curves = {}
        for stage in ("rl_stage1", "rl_stage2"):
            rows: dict[int, dict] = {}
            for key in ("reward", "format", "correct"):
                assert key in CURVES
                try:
                    text = read(root, sha, f"reports/curves/{stage}/plots/metrics/{key}.tsv")
                except PaperError:
                    continue
                for line in text.splitlines()[1:]:
                    step, value = line.split("\t")[:2]
                    rows.setdefault(int(step), {"step": int(step)})[key] = float(value)
            curves[stage] = [rows[s] for s in sorted(rows)]
        entry = {"commit": sha, "benchmark": json.loads(read(root, sha, "reports/benchmark.json")),
                 "curves": curves}
        if name == "two_stage":
            entry["words"] = json.loads(read(root, sha, "reports/analysis/words.json"))
            entry["attention"] = json.loads(read(root, sha, "reports/analysis/attention.json"))
            entry["attention_png"] = {r["key"]: read(root, sha, f"reports/analysis/attention/{r['key']}.png",
                                                     binary=True) for r in entry["attention"]}
        out[name] = entry
    return out
