"""Publish and pull Viper10K with real git, a real local DVC remote and real `dvc import`.

A publisher repository (a copy of the session's built project, whose build is not yet committed) runs
`dvc repro synthesis/dvc.yaml` (nothing to do), commits, and runs `viper publish`; its DVC cache is then
deleted, so the shards can only come from the remote. A second repository runs `viper pull`
(`dvc import` + verification) and a plain `dvc repro`: DVC's own output must show training, evaluation and
no synthesis stage.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from viper.sandbox import copy_repo, make_repo, metrics, ran_stages, run
from viper.store.viper10k import SCHEMA, SUBSETS

pytestmark = pytest.mark.e2e

SYNTHESIS = {"seeds", "captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"}
TRAIN_EVAL = {"models", "cold_start", "rl_stage1", "rl_stage2", "bench_data", "predictions", "benchmark"}


def fails(cmd, cwd) -> str:
    with pytest.raises(AssertionError) as err:
        run(cmd, cwd)
    return str(err.value)


def synthesis_outputs(repo) -> list[str]:
    """Files under any synthesis stage's output directory (DVC may leave an empty directory behind)."""
    outs = ("seeds", "captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k")
    return sorted(str(p.relative_to(repo)) for out in outs for p in (repo / "data" / out).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def world(built_repo, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("publish")
    remote = base / "remote"
    remote.mkdir()
    pub = copy_repo(built_repo["path"], base / "publisher")
    build = run(["dvc", "repro", "synthesis/dvc.yaml"], pub)
    refusals = {"uncommitted_build": fails(["viper", "publish", "--license", "CC-BY-4.0"], pub)}
    run(["git", "add", "-A"], pub)
    run(["git", "commit", "-qm", "build Viper10K"], pub)
    refusals["no_remote"] = fails(["viper", "publish", "--license", "CC-BY-4.0"], pub)
    run(["dvc", "remote", "add", "-d", "storage", str(remote)], pub)
    run(["git", "commit", "-qam", "DVC remote"], pub)
    (pub / "README.md").write_text("edited\n")
    refusals["dirty"] = fails(["viper", "publish", "--license", "CC-BY-4.0"], pub)
    run(["git", "checkout", "README.md"], pub)
    built_at = run(["git", "rev-parse", "HEAD"], pub).strip()
    published = run(["viper", "publish", "--license", "CC-BY-4.0", "--tag", "viper10k-v1"], pub)
    shutil.rmtree(pub / ".dvc" / "cache")  # from here on the shards exist only in the remote (and pub's workspace)

    con = make_repo(base / "consumer")
    pulled = run(["viper", "pull", str(pub), "--rev", "viper10k-v1"], con)
    # what matters here is which stages run: a short RL budget keeps each run quick
    # (a text edit: the params' comments, the pulled dataset's among them, must survive)
    params = con / "params.yaml"
    text = params.read_text()
    for key, value in (("stage1_steps", 2), ("stage2_steps", 2)):
        text, n = re.subn(rf"(?m)^(  {key}:)\s*\d+", rf"\g<1> {value}", text)
        assert n == 1, key
    params.write_text(text)
    run(["git", "add", "-A"], con)
    run(["git", "commit", "-qm", "train on the published Viper10K"], con)
    repro = run(["dvc", "repro"], con)
    trained = {stage: metrics(con, stage) for stage in ("rl_stage1", "rl_stage2")}
    synthesised = synthesis_outputs(con)
    again = run(["dvc", "repro"], con)
    ablation = run(["dvc", "exp", "run", "-S", "rl.stage_order=mixed"], con)
    return {"pub": pub, "con": con, "remote": remote, "build": build, "refusals": refusals, "built_at": built_at,
            "published": published, "pulled": pulled, "repro": repro, "trained": trained,
            "synthesised": synthesised, "again": again, "ablation": ablation}


def test_publishing_refuses_without_a_shared_remote_or_with_uncommitted_changes(world):
    assert ran_stages(world["build"]) == set()  # the shared build already made Viper10K
    assert "uncommitted changes: " in world["refusals"]["uncommitted_build"]
    assert "synthesis/dvc.lock" in world["refusals"]["uncommitted_build"]
    assert "no DVC remote to push to" in world["refusals"]["no_remote"]
    assert "uncommitted changes: README.md" in world["refusals"]["dirty"]
    assert not any("Traceback" in r for r in world["refusals"].values())


def test_the_release_carries_a_full_card_and_is_committed_and_pushed(world):
    pub = world["pub"]
    built = json.loads((pub / "data/viper10k/manifest.json").read_text())
    man = json.loads((pub / "releases/viper10k/manifest.json").read_text())
    rel = man.pop("release")
    assert man == built  # the shards' checksums, counts, schema, models and params, unchanged
    assert rel["git_revision"] == world["built_at"] and rel["license"] == "CC-BY-4.0"
    assert set(rel["stage_params"]) == SYNTHESIS | {"models"}
    assert rel["stage_params"]["captions"]["captions"]["max_new_tokens"] == 48
    assert rel["models_manifest"]["vlm"]["revision"].startswith("sha256:")
    card = (pub / "releases/viper10k/README.md").read_text()
    assert f"`{world['built_at']}`" in card and "License: CC-BY-4.0" in card
    assert all(e["sha256"] in card for s in SUBSETS for e in man["subsets"][s]["shards"])
    log = run(["git", "log", "-1", "--format=%s", "viper10k-v1"], pub)
    assert log.startswith("Publish Viper10K release viper10k")
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], pub) == ""
    assert "dvc import" in world["published"] and "viper10k-v1" in world["published"]
    shards = sum(len(man["subsets"][s]["shards"]) for s in SUBSETS)
    assert sum(1 for p in world["remote"].rglob("*") if p.is_file()) == shards + 3  # + manifest, card, .dir


def test_the_consumer_imports_from_the_remote_and_trains_without_synthesis(world):
    con, pub = world["con"], world["pub"]
    assert "verified" in world["pulled"]
    dvc_file = yaml.safe_load((con / "data/pulled/viper10k.dvc").read_text())
    assert dvc_file["deps"][0]["repo"]["rev_lock"] == run(["git", "rev-parse", "viper10k-v1"], pub).strip()
    params = (con / "params.yaml").read_text()
    assert "dir: data/pulled/viper10k" in params and "# what training reads" in params  # comments kept

    ran = ran_stages(world["repro"])
    assert ran == TRAIN_EVAL and not ran & SYNTHESIS
    assert "synthesis/dvc.yaml" not in world["repro"]
    assert world["synthesised"] == []

    man = json.loads((con / "data/pulled/viper10k/manifest.json").read_text())
    counts = {s: man["subsets"][s]["count"] for s in SUBSETS}
    for stage in ("rl_stage1", "rl_stage2"):
        m = world["trained"][stage]
        assert m["dataset"] == {"dir": "data/pulled/viper10k", **counts, "git_revision": world["built_at"],
                                "license": "CC-BY-4.0"}
    assert world["trained"]["rl_stage1"]["examples_caption_refining"] == counts["caption_refining"]
    assert world["trained"]["rl_stage2"]["examples_visual_operation"] == counts["visual_operation"]
    assert (con / "reports/benchmark.json").exists()
    assert ran_stages(world["again"]) == set()


def test_an_ablation_on_pulled_data_reruns_only_rl_and_evaluation(world):
    assert ran_stages(world["ablation"]) == {"rl_stage1", "rl_stage2", "predictions", "benchmark"}
    assert metrics(world["con"], "rl_stage1")["schedule"] == "mixed"
    assert synthesis_outputs(world["con"]) == []


def test_the_pulled_shards_load_with_hf_datasets_as_the_manifest_says(world, tmp_path):
    from datasets import load_dataset

    root = world["con"] / "data/pulled/viper10k"
    man = json.loads((root / "manifest.json").read_text())
    for subset in SUBSETS:
        files = sorted(str(p) for p in (root / subset).glob("*.tar"))
        ds = load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path))
        assert len(ds) == man["subsets"][subset]["count"]
        assert set(ds.column_names) - {"__key__", "__url__"} == {"json", *SCHEMA[subset]["images"]}
        for row in ds:
            assert set(row["json"]) == set(SCHEMA[subset]["json"]["properties"])
