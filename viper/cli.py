"""`viper`: where a pipeline stands, the item cache, and publishing / pulling Viper10K.

    viper status          per stage: DVC state (or progress while running), items in/out, rejects, cache
                          hits/misses, cached calls (live: counted in the item store)
    viper cache info      cached model calls per step, and where the cache lives
    viper cache clear     delete the item cache (always safe: it only costs recomputation)
    viper loop N          set N closed-loop rounds after round 0 (loop.rounds + the tables rounds/dvc.yaml
                          unrolls, in params.yaml); then `dvc exp run` or `dvc repro`
    viper publish --license L [--name viper10k] [--remote R] [--tag T]
                          copy the built data/viper10k into releases/<name> with a full card, push it to the
                          DVC remote and commit its .dvc file (see viper/publish.py)
    viper pull SOURCE [--rev REV] [--path releases/viper10k] [--out data/pulled/viper10k] [--url]
                          `dvc import` a release, verify it, and set dataset.dir so training uses it
    viper verify DIR      check a Viper10K directory: checksums, tar members, every record
    viper paper [--no-run] [--only NAME ...]
                          the paper's experiments as DVC experiments (queued, resumable) and
                          reports/paper.{md,html,json} beside the paper's numbers (see viper/paper.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from viper.config import (IVT_FILE, IVT_LOCK, LOCK_FILES, ROUNDS_FILE, ROUNDS_LOCK, ParamsError, load_params,
                          pipeline_stages)
from viper.store.cache import cache_exists, clear_cache, open_cache

# The cache step names each stage writes (viper10k runs two model steps).
CACHE_STEPS = {"viper10k": ("clip_filter", "judge")}


def round_stage_names(root: Path) -> list[str]:
    """The closed-loop round stages params.yaml unrolls, round by round (rounds/dvc.yaml's groups)."""
    loop = (yaml.safe_load((root / "params.yaml").read_text()) or {}).get("loop") or {}
    tables = loop.get("unrolled") or {}
    groups = list(yaml.safe_load((root / ROUNDS_FILE).read_text())["stages"]) if (root / ROUNDS_FILE).exists() else []
    names = [f"{g}@{k}" for k in (tables.get("rounds") or {}) for g in groups if g != "round_metrics"]
    return names + [f"round_metrics@{k}" for k in (tables.get("measured") or {})]


def ivt_stage_names(root: Path) -> list[str]:
    """The stages of ivt/dvc.yaml, a foreach group expanded (`ivt_eval@base`)."""
    if not (root / IVT_FILE).exists():
        return []
    names = []
    for name, spec in yaml.safe_load((root / IVT_FILE).read_text())["stages"].items():
        names += [f"{name}@{k}" for k in spec["foreach"]] if "foreach" in spec else [name]
    return names


def stage_states(root: Path) -> dict[str, str]:
    """done (matches its dvc.lock), changed (deps/params/outs differ), or new (never run)."""
    from dvc.repo import Repo

    locked: set[str] = set()
    for f in (*LOCK_FILES, ROUNDS_LOCK, IVT_LOCK):
        lock = root / f
        if lock.exists():
            locked |= set((yaml.safe_load(lock.read_text()) or {}).get("stages", {}))
    with Repo(str(root)) as repo:
        changed = {name.rpartition(":")[2] for name in repo.status()}  # "synthesis/dvc.yaml:captions"
    names = [*pipeline_stages(root), *round_stage_names(root), *ivt_stage_names(root)]
    return {s: "new" if s not in locked else "changed" if s in changed else "done" for s in names}


def _total(parts: list[dict], key: str) -> int | None:
    found = [p[key] for p in parts if key in p]
    return sum(found) if found else None


def status_rows(root: Path) -> list[dict]:
    from viper.synth.stream import running

    cached = open_cache().counts() if cache_exists() else {}
    rows = []
    for stage, state in stage_states(root).items():
        group, _, k = stage.partition("@")  # a round's stage runs round 0's script: same steps, its own files
        if group.startswith("ivt_"):  # IVT (ivt/dvc.yaml): metrics in reports/ivt/metrics, cache stats under "cache"
            rows.append(ivt_status_row(root, stage, state, cached))
            continue
        base = group.removeprefix("round_") if k else stage
        live = [(s, info) for s in CACHE_STEPS.get(base, (base,)) if (info := running(f"{s}@{k}" if k else s))]
        if live:  # a driver is streaming through it now (items done before its current window)
            state = "running " + ", ".join(f"{s} {i['done']}/{i['total']}" for s, i in live)
        path = (root / "reports" / "rounds" / k / "metrics" / f"{base}.json" if k
                else root / "reports" / "metrics" / f"{stage}.json")
        m = json.loads(path.read_text()) if path.exists() else {}
        parts = [m.get(s) or {} for s in CACHE_STEPS.get(base, ())] or [m]
        rows.append({
            "stage": stage, "state": state,
            "in": m.get("items_in", m.get("edits_in", m.get("examples"))),
            "out": m.get("items_out", m.get("edits_kept", m.get("steps"))),
            "rejects": sum((m.get("rejects") or {}).values()) if "rejects" in m else None,
            "cache_hits": _total(parts, "cache_hits"),
            "cache_misses": _total(parts, "cache_misses"),
            "cached_calls": sum(cached.get(s, 0) for s in CACHE_STEPS.get(base, (base,))) or None,
        })
    return rows


IVT_CACHE_STEPS = {"ivt_eval": ("ivt_step",), "ivt_traces": ("ivt_step", "ivt_teacher")}


def ivt_status_row(root: Path, stage: str, state: str, cached: dict) -> dict:
    group, _, k = stage.partition("@")
    name = group.removeprefix("ivt_") + (f"_{k}" if k else "")
    path = root / "reports" / "ivt" / "metrics" / f"{name}.json"
    m = json.loads(path.read_text()) if path.exists() else {}
    parts = [c for c in (m.get("cache") or {}).values() if isinstance(c, dict)] if group == "ivt_traces" else \
        [m.get("cache") or {}]
    steps = IVT_CACHE_STEPS.get(group, ())
    return {"stage": stage, "state": state,
            "in": m.get("samples", m.get("predictions", m.get("examples"))),
            "out": m.get("complete", m.get("examples", m.get("steps"))), "rejects": None,
            "cache_hits": _total(parts, "cache_hits"), "cache_misses": _total(parts, "cache_misses"),
            "cached_calls": sum(cached.get(s, 0) for s in steps) or None}


def print_table(rows: list[dict]) -> None:
    cols = list(rows[0])
    cells = [[("-" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="viper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="per-stage state of the pipeline in this repository")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cache = sub.add_parser("cache", help="the item cache")
    cache.add_argument("action", choices=["info", "clear"])
    pub = sub.add_parser("publish", help="publish the built Viper10K (DVC remote + committed .dvc file)")
    pub.add_argument("--license", required=True, help="license of the dataset, e.g. CC-BY-4.0")
    pub.add_argument("--name", default="viper10k", help="release directory under releases/")
    pub.add_argument("--remote", help="DVC remote (default: the repository's default remote)")
    pub.add_argument("--tag", help="also tag the publishing commit")
    pl = sub.add_parser("pull", help="import a published Viper10K and train from it")
    pl.add_argument("source", help="git URL or path of the publishing repository (with --url: a plain URL/dir)")
    pl.add_argument("--path", default="releases/viper10k", help="the release's path in that repository")
    pl.add_argument("--rev", help="git tag, branch or commit of the release")
    pl.add_argument("--out", default="data/pulled/viper10k", help="where it lands here")
    pl.add_argument("--url", action="store_true", help="SOURCE is a plain URL or directory (dvc import-url)")
    ver = sub.add_parser("verify", help="check a Viper10K directory")
    ver.add_argument("dir")
    lp = sub.add_parser("loop", help="set the number of closed-loop rounds in params.yaml")
    lp.add_argument("rounds", type=int, help="rounds after round 0 (0 = the single-cycle pipeline)")
    lp.add_argument("--params", default="params.yaml", help="the params file to change")
    pp = sub.add_parser("paper", help="run the paper's experiments and write reports/paper.{md,html,json}")
    pp.add_argument("--no-run", action="store_true", help="only render the report from finished experiments")
    pp.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments (the report needs all)")
    args = parser.parse_args(argv)

    if args.command == "paper":
        return _paper_command(args)
    if args.command == "loop":
        return _loop_command(args)

    if args.command in ("publish", "pull", "verify"):
        return _dataset_command(args)

    if args.command == "status":
        root = Path.cwd()
        if not (root / "dvc.yaml").exists():
            print("viper status: no dvc.yaml here; run it from the repository root", file=sys.stderr)
            return 2
        rows = status_rows(root)
        print(json.dumps(rows, indent=2)) if args.json else print_table(rows)
    elif args.action == "info":
        store = open_cache() if cache_exists() else None
        print(f"item cache: {store.location if store else 'empty'}")
        for step, n in (store.counts() if store else {}).items():
            print(f"  {step}: {n} cached calls")
        unfinished = store.temporary() if store else []
        if unfinished:
            print(f"  ({len(unfinished)} unfinished writes of killed workers: never read; `viper cache clear` removes them)")
    else:
        print(f"cleared the item cache in {clear_cache()}")
    return 0


def _paper_command(args: argparse.Namespace) -> int:
    from viper import paper, paper_report
    from viper.store.io import atomic_write_bytes

    root = Path.cwd()
    if not (root / "dvc.yaml").exists():
        print("viper paper: no dvc.yaml here; run it from the repository root", file=sys.stderr)
        return 2
    unknown = [n for n in args.only or [] if n not in paper.NAMES]
    if unknown:
        print(f"viper paper: unknown experiments {unknown}; known: {list(paper.NAMES)}", file=sys.stderr)
        return 2
    try:
        load_params(root / "params.yaml")  # validated first: a bad value fails here, not in a queued run
        names = list(paper.experiments(yaml.safe_load((root / "params.yaml").read_text())))
        if not args.no_run:
            ran = paper.run(root, args.only or names)
            print(f"ran {len(ran)} experiment(s): {', '.join(ran) or 'none (all done for this commit)'}")
        waiting = [n for n in names if n not in paper.finished(root)]
        if args.only and waiting:  # a partial run is not a failure: the report waits for the rest
            print(f"the report needs every experiment; not finished yet: {', '.join(waiting)} (run `viper paper`)")
            return 0
        results = paper.collect(root, names)
    except (paper.PaperError, ParamsError) as err:
        print(f"viper paper: {err}", file=sys.stderr)
        return 1
    reports = root / "reports"
    atomic_write_bytes(reports / "paper.md", paper_report.markdown(results).encode())
    atomic_write_bytes(reports / "paper.html", paper_report.html_page(results).encode())
    summary = json.dumps(paper_report.summary(results), indent=2) + "\n"
    atomic_write_bytes(reports / "paper.json", summary.encode())
    print("wrote reports/paper.md, reports/paper.html, reports/paper.json")
    return 0


def _loop_command(args: argparse.Namespace) -> int:
    from viper.loop import write_unrolled

    if args.rounds < 0:
        print("viper loop: the number of rounds must be 0 or more", file=sys.stderr)
        return 2
    if not Path(args.params).exists():
        print(f"viper loop: {args.params} not found; run it from the repository root", file=sys.stderr)
        return 2
    try:
        tables = write_unrolled(args.params, args.rounds)
    except (ValueError, KeyError) as err:
        print(f"viper loop: {err}", file=sys.stderr)
        return 1
    stages = [f"round_*@{k}" for k in tables["rounds"]]
    print(f"{args.params}: loop.rounds = {args.rounds}"
          + (f"; rounds/dvc.yaml now has the stages {', '.join(stages)} (and round_metrics@0..{args.rounds})"
             if stages else "; rounds/dvc.yaml has no stages (the single-cycle pipeline)")
          + "\nnext: `dvc exp run` (an experiment; add -S loop.data=window etc. as you like) or `dvc repro`")
    return 0


def _dataset_command(args: argparse.Namespace) -> int:
    from viper import publish as pub
    from viper.store.viper10k import DatasetError

    root = Path.cwd()
    if args.command != "verify" and not (root / "dvc.yaml").exists():
        print(f"viper {args.command}: no dvc.yaml here; run it from the repository root", file=sys.stderr)
        return 2
    try:
        if args.command == "publish":
            out = pub.publish(root, args.name, args.license, args.remote, args.tag)
            print(f"published {out['release']} (built at {out['built_at'][:12]}) to DVC remote {out['remote']!r} "
                  f"in commit {out['commit'][:12]}: {out['counts']}\n"
                  f"push the commit{' and tag' if out['tag'] else ''} to your git remote; consumers run:\n"
                  f"  {out['import']}")
        elif args.command == "pull":
            out = pub.pull(root, args.source, args.path, args.out, args.rev, args.url)
            rel = out["release"]
            print(f"pulled Viper10K into {out['dir']}: {out['counts']}, verified"  # a release has both fields
                  + (f"; built at {rel['git_revision'][:12]}, license {rel['license']}" if rel else "")
                  + f"\nparams.yaml: dataset.dir = {out['dir']}; `dvc repro` now trains from it (no synthesis). "
                  f"Commit {out['dir']}.dvc and params.yaml to record the choice.")
        else:
            out = pub.verify(Path(args.dir))
            print(f"{out['dir']}: OK {out['counts']}")
    except (pub.PublishError, DatasetError) as err:
        print(f"viper {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
