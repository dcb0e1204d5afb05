"""`viper paper`: the paper's experimental section as DVC experiments, and one report beside the paper's.

Experiments (each a `dvc exp run` of the whole pipeline with a few params changed, named `paper-<name>`):

    two_stage       the recipe (rl.stage_order two_stage)            Tables 1-2, Figure 4, baseline of 2, 3, 5
    mixed           both tasks blended in one RL run                  Figure 3
    caption_only    stage 1 alone                                     Figure 5
    operation_only  stage 2 alone                                     Figure 5
    cold_start      the recipe after the SFT warm-up                  Figure 2
    rounds          the recipe, then `paper.rounds` closed-loop       beyond the paper (its open question 1);
                    rounds (only when paper.rounds > 0)               not run when paper.rounds is 0

The first five run a single cycle (loop.rounds 0) whatever the workspace's loop says. Each is queued with
`dvc exp run --queue` from a workspace whose params.yaml holds the experiment's values (written, queued, put
back: DVC snapshots the workspace when it queues; `-S` cannot set loop.unrolled, whose keys are digit strings),
and one `dvc queue` worker runs them. Only two_stage also runs paper/dvc.yaml (Figure 4's analyses of the
recipe's models). An experiment already finished for the current commit with the same params is not queued
again, so the command resumes, and run twice it runs nothing. The report is then built from the experiments'
committed outputs (git refs under refs/exps), never from whatever the workspace holds: reports/paper.md,
reports/paper.html, reports/paper.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from viper.config import RUNTIME_SECTIONS, set_dotted

PREFIX = "paper-"
SINGLE = {"loop.rounds": 0}  # the paper's experiments are one cycle each
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "two_stage": {"rl.stage_order": "two_stage", "cold_start.enabled": False, **SINGLE},
    "mixed": {"rl.stage_order": "mixed", "cold_start.enabled": False, **SINGLE},
    "caption_only": {"rl.stage_order": "caption_only", "cold_start.enabled": False, **SINGLE},
    "operation_only": {"rl.stage_order": "operation_only", "cold_start.enabled": False, **SINGLE},
    "cold_start": {"rl.stage_order": "two_stage", "cold_start.enabled": True, **SINGLE},
}
ROUNDS = "rounds"  # the recipe + paper.rounds closed-loop rounds (overrides from params: see experiments())
NAMES = (*EXPERIMENTS, ROUNDS)
# the pipeline files each experiment runs: Figure 4's analyses only for the recipe (the report reads no other's)
TARGETS = {"two_stage": ("dvc.yaml", "paper/dvc.yaml")}
# params sections no stage of these experiments reads: a change there does not make a finished experiment stale
IGNORED = (*RUNTIME_SECTIONS, "ivt")
CURVE_KEYS = ("reward", "format", "correct")  # of viper.rl.curves.CURVES: what Figure 2 and the tables use


class PaperError(RuntimeError):
    pass


def _git(root: Path, *args: str, binary: bool = False) -> Any:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=not binary)
    if proc.returncode:
        raise PaperError(f"git {' '.join(args)} failed: {proc.stderr.strip() if not binary else proc.stderr[:300]}")
    return proc.stdout


def _dvc(root: Path, *args: str, env: dict | None = None) -> str:
    proc = subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise PaperError(f"dvc {' '.join(args)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def experiments(params: dict, names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """name -> the params it changes, for `names` (default: all that apply: rounds only with paper.rounds > 0)."""
    n = int((params.get("paper") or {}).get("rounds", 0))
    table = dict(EXPERIMENTS)
    if n > 0:
        table[ROUNDS] = {"rl.stage_order": "two_stage", "cold_start.enabled": False, "loop.rounds": n}
    if names is None:
        return table
    missing = [name for name in names if name not in table]
    if missing:
        raise PaperError(f"no experiment {', '.join(missing)} here" + (
            "; the rounds experiment runs when paper.rounds > 0 in params.yaml" if ROUNDS in missing else ""))
    return {name: table[name] for name in names}


def apply(data: Any, overrides: dict[str, Any]) -> Any:
    """Set each dotted key of `overrides` in a params mapping (plain or ruamel's), in place; loop.rounds also
    rewrites loop.unrolled, as `viper loop N` does. Returns `data`."""
    from viper.loop import set_rounds

    for dotted, value in overrides.items():
        if dotted == "loop.rounds":
            set_rounds(data, value)
        else:
            set_dotted(data, dotted, value)
    return data


def with_overrides(params: dict, overrides: dict[str, Any]) -> dict:
    return apply(json.loads(json.dumps(params)), overrides)


def relevant(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in IGNORED}


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


def plan(root: Path, names: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(to run: name -> its overrides, already done): an experiment is done when it exists for HEAD with the
    params it would run now (sections none of its stages reads aside)."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    done = finished(root)
    todo, kept = {}, []
    for name, overrides in experiments(params, names).items():
        want = relevant(with_overrides(params, overrides))
        sha = done.get(name)
        if sha and relevant(yaml.safe_load(_git(root, "show", f"{sha}:params.yaml"))) == want:
            kept.append(name)
        else:
            todo[name] = overrides
    return todo, kept


def queue(root: Path, name: str, overrides: dict[str, Any]) -> None:
    """Queue one experiment: params.yaml gets its values, DVC snapshots the workspace, the file is put back
    byte for byte (also when queueing fails)."""
    from viper.config import edit_params
    from viper.store.io import atomic_write_bytes

    path = root / "params.yaml"
    original = path.read_bytes()
    try:
        edit_params(path, lambda data: apply(data, overrides))
        _dvc(root, "exp", "run", "--queue", "-n", PREFIX + name, *TARGETS.get(name, ("dvc.yaml",)))
    finally:
        atomic_write_bytes(path, original)


def worker_env(root: Path) -> dict:
    """The queue worker's environment: the workspace's item cache, unless one is named already. Each experiment
    runs in a temporary copy without the (untracked) .viper_cache/, where every model call would miss: the base
    model's benchmark replies and the synthesis calls a round repeats are then computed once, not per run."""
    from viper.store.cache import ENV_VAR, URL_VAR

    env = dict(os.environ)
    if not env.get(ENV_VAR) and not env.get(URL_VAR):
        env[ENV_VAR] = str(root.resolve() / ".viper_cache")
    return env


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
    for name, overrides in todo.items():
        # no `dvc exp run --force`: it also means "rerun every stage"
        queue(root, name, overrides)
        log(f"paper-{name}: queued")
    _dvc(root, "queue", "start", "-j", "1", env=worker_env(root))
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
    return list(todo)


def read(root: Path, sha: str, path: str, binary: bool = False) -> Any:
    return _git(root, "show", f"{sha}:{path}", binary=binary)


def collect(root: Path, names: list[str]) -> dict[str, dict]:
    """What the report needs from each finished experiment's commit."""
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
            for key in CURVE_KEYS:
                try:
                    text = read(root, sha, f"reports/curves/{stage}/plots/metrics/{key}.tsv")
                except PaperError:  # a stage the experiment skipped (caption_only has no stage 2) has none
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
        if name == ROUNDS:
            from viper.loop import REPORTS_DIR, ROUND_FILE

            n = yaml.safe_load(read(root, sha, "params.yaml"))["loop"]["rounds"]
            entry["rounds"] = [json.loads(read(root, sha, f"{REPORTS_DIR}/{k}/{ROUND_FILE}")) for k in range(n + 1)]
        out[name] = entry
    return out
