"""Publish a built Viper10K, pull a published one, verify either (`viper publish | pull | verify`).

A release is a DVC-tracked directory `releases/<name>/` in the publisher's git repository: the shards of
data/viper10k, its manifest extended with a `release` block (the git revision whose dvc.lock built the
data, the license, every synthesis stage's params as dvc.lock recorded them, the models), and the card
rendered from that manifest. `viper publish` pushes the files to the repository's DVC remote and commits
the `.dvc` file that addresses them, so a consumer needs only the git URL:

    dvc import <git url> releases/viper10k -o data/pulled/viper10k [--rev <tag or commit>]

`viper pull` runs that (or `dvc import-url` for a plain URL or directory), verifies what arrived and
points `dataset.dir` at it; `dvc repro` then trains from it and never reaches synthesis/dvc.yaml.

The git revision is added at publish time, not by the `viper10k` stage: a stage output naming its commit
would change with every commit and invalidate everything downstream of it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from viper.config import LOCK_FILES
from viper.store.io import atomic_dir, atomic_write_bytes, write_json
from viper.store.viper10k import SUBSETS, DatasetError, Viper10K, card

BUILT = "data/viper10k"            # where synthesis/dvc.yaml's `viper10k` stage writes
SYNTHESIS_TARGET = "synthesis/dvc.yaml:viper10k"
DEFAULT_PULL_DIR = "data/pulled/viper10k"
CODE_DIRS = ("viper", "stages", "synthesis")


class PublishError(Exception):
    """Publishing or pulling cannot go on; the message says why and what to do."""


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise PublishError(f"{what} failed: `{' '.join(cmd)}` said:\n{(proc.stdout + proc.stderr).strip()[-3000:]}")
    return proc.stdout


def _dvc(args: list[str], cwd: Path, what: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd, what)


def _git(args: list[str], cwd: Path, what: str = "git") -> str:
    return _run(["git", *args], cwd, what).strip()


def check_publishable(root: Path) -> str:
    """The built Viper10K matches its pipeline and that pipeline is committed; returns the revision."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        changed = sorted(repo.status(targets=[SYNTHESIS_TARGET], with_deps=True))
    if changed:
        raise PublishError(f"the built Viper10K is not up to date: {', '.join(changed)} changed since they ran. "
                           "Run `dvc repro synthesis/dvc.yaml` and commit dvc.lock and synthesis/dvc.lock first")
    untracked = [f for f in LOCK_FILES
                 if subprocess.run(["git", "ls-files", "--error-unmatch", f], cwd=root, capture_output=True).returncode]
    if untracked:
        raise PublishError(f"{' and '.join(untracked)} not committed: commit them first, so the revision the card "
                           "names records how the data were built")
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], root, "git status").splitlines()
    # new, unignored files where the stages' code lives change a build too, yet no revision holds them
    dirty += _run(["git", "status", "--porcelain", "--untracked-files=all", "--", *CODE_DIRS], root,
                  "git status").splitlines()
    if dirty:
        raise PublishError("uncommitted changes: " + ", ".join(sorted({d[3:] for d in dirty})[:10]) +
                           ". Commit them first: the card names the git revision that built the data, so that "
                           "revision must hold exactly this code, params and dvc.lock")
    return _git(["rev-parse", "HEAD"], root)


def locked_params(root: Path) -> dict[str, dict]:
    """Every synthesis stage's params (and the models stage's) as their dvc.lock files recorded them."""
    out: dict[str, dict] = {}
    for lock, wanted in ((root / "synthesis" / "dvc.lock", None), (root / "dvc.lock", {"models"})):
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
        for name, st in stages.items():
            if wanted is None or name in wanted:
                out[name] = st.get("params", {}).get("params.yaml", {})
    return dict(sorted(out.items()))


def _default_remote(root: Path, remote: str | None) -> str:
    """The DVC remote to push to; it must be in the committed .dvc/config, or consumers cannot pull."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        cfg = repo.config.load_one("repo")
    name = remote or cfg.get("core", {}).get("remote")
    if not name:
        raise PublishError("no DVC remote to push to: add one with `dvc remote add -d <name> <url>` and commit "
                           ".dvc/config (consumers read the remote from it), or pass --remote")
    if name not in cfg.get("remote", {}):
        raise PublishError(f"DVC remote {name!r} is not in the repository's .dvc/config (a remote in "
                           "config.local is invisible to consumers): `dvc remote add <name> <url>` and commit it")
    return name


def public_url(url: str) -> str:
    """A remote URL without any user:token@ part, fit to print in a published card."""
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return url


def release_manifest(root: Path, built: Viper10K, revision: str, license_name: str) -> dict:
    repository = public_url(subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True,
                                           text=True).stdout.strip()) or None
    models_manifest = root / "data" / "models" / "manifest.json"
    models = json.loads(models_manifest.read_text()) if models_manifest.exists() else {}
    return {**built.manifest, "release": {
        "git_revision": revision, "license": license_name, "repository": repository,
        "stage_params": locked_params(root),
        "models_manifest": {role: {k: m[k] for k in ("id", "revision")} for role, m in sorted(models.items())},
    }}


def publish(root: Path, name: str, license_name: str, remote: str | None = None, tag: str | None = None) -> dict:
    """Assemble releases/<name>, push it to the DVC remote, commit its .dvc file. Returns a summary."""
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
        raise PublishError(f"release name {name!r}: use letters, digits, '-', '_' and '.' (it names releases/<name>)")
    if not license_name.strip():
        raise PublishError("--license must name the dataset's license (it depends on your seed images' terms)")
    if tag and not subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/tags/{tag}"], cwd=root,
                                  capture_output=True).returncode:
        raise PublishError(f"tag {tag!r} already exists; pick a new one for a new release")
    revision = check_publishable(root)
    remote = _default_remote(root, remote)
    built = Viper10K(root / BUILT)          # checksums
    counts = built.check_all()              # members and records
    man = release_manifest(root, built, revision, license_name)

    rel = Path("releases") / name
    with atomic_dir(root / rel) as tmp:
        for subset in SUBSETS:
            (tmp / subset).mkdir()
            for e in man["subsets"][subset]["shards"]:
                shutil.copyfile(root / BUILT / subset / e["file"], tmp / subset / e["file"])
        write_json(tmp / "manifest.json", man)
        atomic_write_bytes(tmp / "README.md", card(man).encode())
    Viper10K(root / rel)  # the copy is what the manifest says

    staged = [f"{rel}.dvc", str(rel.parent / ".gitignore")]
    try:
        _dvc(["add", str(rel)], root, "dvc add")
        _dvc(["push", "-r", remote, f"{rel}.dvc"], root, f"dvc push to remote {remote!r}")
        _git(["add", *staged], root)
        _git(["commit", "-q", "-m", f"Publish Viper10K release {name} (built at {revision[:12]})"], root)
    except PublishError:
        # unstage, so a retry is not refused for "uncommitted changes"; the files stay for inspection
        subprocess.run(["git", "reset", "-q", "--", *staged], cwd=root, capture_output=True)
        raise
    commit = _git(["rev-parse", "HEAD"], root)
    if tag:
        _git(["tag", tag, commit], root)
    return {"release": str(rel), "built_at": revision, "commit": commit, "tag": tag, "remote": remote,
            "counts": counts, "import": f"dvc import <this repository's git URL> {rel} -o {DEFAULT_PULL_DIR}"
                                        f" --rev {tag or commit}"}


def set_dataset_dir(root: Path, value: str) -> None:
    """Point params.yaml's dataset.dir at `value`, keeping every other line as it was (viper.config.edit_params)."""
    from viper.config import edit_params

    edit_params(root / "params.yaml", lambda data: data.setdefault("dataset", {}).__setitem__("dir", value))


def pull(root: Path, source: str, path: str = "releases/viper10k", out: str = DEFAULT_PULL_DIR,
         rev: str | None = None, url: bool = False) -> dict:
    """Import a release into `out` with DVC (tracked, updatable), verify it, make training read it."""
    if not out or Path(out).is_absolute() or ".." in Path(out).parts or Path(out) == Path("."):
        raise PublishError(f"--out {out!r} must be a directory inside this repository (relative, no '..')")
    dvc_file = root / f"{out}.dvc"
    (root / out).parent.mkdir(parents=True, exist_ok=True)
    if dvc_file.exists() and imported_from(dvc_file) == (source, None if url else path):
        _dvc(["update", *(["--rev", rev] if rev and not url else []), str(dvc_file.relative_to(root))], root,
             "dvc update")
    else:
        if dvc_file.exists():  # an earlier import of another source: replace it
            _dvc(["remove", "--outs", str(dvc_file.relative_to(root))], root, "dvc remove")
        if url:
            _dvc(["import-url", source, out], root, "dvc import-url")
        else:
            _dvc(["import", source, path, "-o", out, *(["--rev", rev] if rev else [])], root, "dvc import")
    try:
        dataset = Viper10K(root / out)
        counts = dataset.check_all()
    except DatasetError as err:
        raise DatasetError(f"{err}\nThe import was left in {out} for inspection and params.yaml is unchanged; "
                           f"`dvc remove {out}.dvc` drops it.") from None
    set_dataset_dir(root, out)
    return {"dir": out, "counts": counts, "release": dataset.manifest.get("release") or {}}


def imported_from(dvc_file: Path) -> tuple[str, str | None]:
    """(source, path in the source repo or None for import-url) of an existing import's .dvc file."""
    dep = (yaml.safe_load(dvc_file.read_text()).get("deps") or [{}])[0]
    if "repo" in dep:
        return dep["repo"].get("url", ""), dep.get("path")
    return dep.get("path", ""), None


def verify(path: Path) -> dict:
    dataset = Viper10K(path)
    return {"dir": str(path), "counts": dataset.check_all(), "release": dataset.manifest.get("release") or {}}

