"""A throwaway copy of this project as its own git + DVC repository, for tests and benchmarks.

The copy has what a fresh clone has (tracked and untracked-but-not-ignored files), minus built
artifacts, so runs in it start cold and never touch the working tree's data or item cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from viper.config import IVT_FILE, PAPER_FILE, PIPELINE_FILES, ROUNDS_FILE, set_dotted

ROOT = Path(__file__).resolve().parent.parent  # the project checkout this module lives in


def env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "VIPER_LOG": "WARNING", "TQDM_DISABLE": "1"}


def run(cmd: list[str], cwd: Path, extra_env: dict | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-6000:]}")
    return out


def ran_stages(output: str) -> set[str]:
    """Stage names DVC ran, without the file prefix of synthesis/ and rounds/ stages (`round_captions@2`)."""
    return set(re.findall(r"Running stage '(?:[\w/.-]+:)?([\w@]+)'", output))


def target(stage: str) -> str:
    """The `dvc repro` target of a stage, whichever pipeline file holds it (`round_captions@2`: rounds/)."""
    for f in (*PIPELINE_FILES, ROUNDS_FILE, IVT_FILE, PAPER_FILE):
        if stage.partition("@")[0] in yaml.safe_load((ROOT / f).read_text())["stages"]:
            return stage if f == "dvc.yaml" else f"{f}:{stage}"
    raise KeyError(f"stage {stage!r} is in none of {PIPELINE_FILES + (ROUNDS_FILE, IVT_FILE, PAPER_FILE)}")


def project_files(root: Path = ROOT) -> list[str]:
    """The project as a fresh clone has it, minus built artifacts and the lock of our own last build."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True, check=True).stdout.split()

    def wanted(f: str) -> bool:
        if f.startswith(("data/seed_images/", "data/ivt_sources/")) or f == "reports/rounds/README.md":  # inputs
            return True
        return not f.startswith(("data/", "reports/", "releases/")) and not f.endswith("dvc.lock")

    return [f for f in listed if (root / f).is_file() and wanted(f)]


def make_repo(dest: Path, params: dict | None = None) -> Path:
    """Copy the project into `dest`, apply param overrides {"section.key": value}, git-commit it."""
    for f in project_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    if params:
        set_params(dest, params)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@t"], ["git", "config", "user.name", "t"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):
        run(cmd, dest)
    return dest


def copy_repo(src: Path, dest: Path) -> Path:
    """A working copy of a built repository: git history, DVC cache, item cache, outputs and all.

    DVC keys its state by the repository's path, so the copy rehashes its outputs once (seconds at tiny
    size) and then sees them as up to date: nothing reruns that did not rerun in `src`."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def set_params(repo: Path, params: dict) -> None:
    data = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in params.items():
        set_dotted(data, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def metrics(repo: Path, stage: str) -> dict:
    return json.loads((repo / "reports" / "metrics" / f"{stage}.json").read_text())


def add_evaluated_models(repo: Path, vlm_dir: Path) -> None:
    """What `predictions` reads, without training: the tiny VLM as the base (with its manifest entry),
    cold start off, and stage-1/stage-2 checkpoints that are copies of it in directories of their own."""
    from viper.models import TINY_CLASSES, dir_digest
    from viper.rl.cold_start import INIT_FILE
    from viper.store.io import write_json

    shutil.copytree(vlm_dir, repo / "data/models/vlm")
    write_json(repo / "data/models/manifest.json",
               {"vlm": {"path": "vlm", "id": "tiny-vlm", "revision": "sha256:" + dir_digest(vlm_dir),
                        "class": TINY_CLASSES["vlm"]}})
    ckpt = repo / "data/checkpoints"
    (ckpt / "cold_start").mkdir(parents=True)
    (ckpt / "cold_start" / INIT_FILE).write_text('{"init": "base"}\n')
    for stage in ("stage1", "stage2"):
        shutil.copytree(vlm_dir, ckpt / stage)
