"""The synthesis model steps on a real Ray cluster: two nodes on this machine (Ray's own test helper), the second
carrying a fake GPU resource that every model actor asks for. Outputs must equal the in-process build's bytes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest
from viper.sandbox import copy_repo, env, metrics, set_params, target

pytestmark = pytest.mark.e2e

MODEL_STEPS = ["captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]
ROLES = ("vlm", "t2i", "edit", "clip")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 256 * 2**20})
    c.add_node(num_cpus=2, resources={"fake_gpu": 2}, object_store_memory=256 * 2**20)
    yield c
    c.shutdown()  # by handle: `ray stop` would kill every Ray process of the user


def outputs(repo) -> dict[str, str]:
    """sha256 of every file the synthesis stages wrote."""
    return {str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest()
            for step in MODEL_STEPS for f in sorted((repo / "data" / step).rglob("*")) if f.is_file()}


def ray_env(cluster, store) -> dict:
    return {**env(), "RAY_ADDRESS": cluster.address, "VIPER_CACHE_URL": f"file://{store}"}


def repro(repo, steps, extra_env, force=True) -> str:
    out = ""
    for step in steps:  # each stage alone (-s): forcing the pipeline would rebuild the models too
        proc = subprocess.run(["dvc", "repro", "-s", *(["-f"] if force else []), target(step)], cwd=repo,
                              env=extra_env, capture_output=True, text=True)
        out += proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-4000:]
    return out


def step_parts(repo, step) -> list[dict]:
    m = metrics(repo, step)
    return [m["clip_filter"], m["judge"]] if step == "viper10k" else [m]


@pytest.fixture(scope="module")
def on_ray(built_repo, cluster, tmp_path_factory) -> dict:
    """The built project's synthesis recomputed on the cluster by 2 actors per step, into an empty object store."""
    base = tmp_path_factory.mktemp("ray")
    repo = copy_repo(built_repo["path"], base / "repo")
    local = outputs(repo)
    set_params(repo, {**{f"ray.{r}.resources": {"fake_gpu": 1} for r in ROLES}, "ray.workers": 2})
    store = base / "store"
    repro(repo, MODEL_STEPS, ray_env(cluster, store))
    return {"repo": repo, "local": local, "store": store, "base": base}


def test_synthesis_on_ray_writes_the_in_process_bytes_with_actors_on_the_gpu_node(on_ray):
    repo = on_ray["repo"]
    assert outputs(repo) == on_ray["local"]
    for step in MODEL_STEPS:
        for part in step_parts(repo, step):
            assert part["cache_hits"] == 0 and part["cache_misses"] > 0, step  # computed, not read back
            ray = part["ray"]
            assert ray["batches"] >= 1 and ray["actor_resources"] == ['{"CPU": 1.0, "fake_gpu": 1.0}'], step
            assert len(ray["actor_nodes"]) == 1, step  # only the fake-GPU node can host them


def test_one_worker_and_cached_reruns_at_other_batch_sizes_give_the_same_bytes(on_ray, cluster):
    repo = on_ray["repo"]
    set_params(repo, {"ray.workers": 1})
    one = on_ray["base"] / "store-one-worker"
    repro(repo, ["captions", "reconstructions"], ray_env(cluster, one))
    assert outputs(repo) == on_ray["local"]
    assert metrics(repo, "captions")["ray"]["batches"] == 2  # 16 seeds in batches of 8, one actor

    # Other batch sizes (params: the stages rerun) over the first run's store: every value is read back,
    # so no actor starts and no model loads, and the bytes stay the same.
    for size in (4, 16):
        set_params(repo, {"vlm.batch_size": size, "reconstructions.batch_size": size,
                          "edited_pairs.batch_size": size})
        repro(repo, MODEL_STEPS, ray_env(cluster, on_ray["store"]), force=False)
        assert outputs(repo) == on_ray["local"], size
        for step in MODEL_STEPS:
            for part in step_parts(repo, step):
                assert part["cache_misses"] == 0 and "ray" not in part, (size, step)
        assert metrics(repo, "captions")["model_loaded"] is False


def test_a_killed_driver_keeps_what_actors_committed_and_the_rerun_computes_only_the_rest(on_ray, cluster):
    from viper.store.cache import ObjectStore

    repo, store = on_ray["repo"], on_ray["base"] / "store-killed"
    set_params(repo, {"ray.workers": 1, "vlm.batch_size": 2})  # 8 batches of 2, one after another
    proc = subprocess.Popen(["dvc", "repro", "-s", "-f", target("captions")], cwd=repo, env=ray_env(cluster, store),
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    done = 0
    while done < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
        done = ObjectStore(f"file://{store}").counts().get("captions", 0) if store.exists() else 0
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 6 <= done < 16, f"the kill came too late or too early: {done} of 16 captions committed"

    repro(repo, ["captions"], ray_env(cluster, store))
    m = metrics(repo, "captions")
    assert m["cache_hits"] >= done and m["cache_hits"] + m["cache_misses"] == 16
    assert m["ray"]["batches"] == m["model_calls"] < 8  # only batches of missing keys were sent out
    assert ObjectStore(f"file://{store}").temporary() == []
    assert outputs(repo)["data/captions/captions.parquet"] == on_ray["local"]["data/captions/captions.parquet"]


def test_more_seeds_on_ray_compute_only_the_new_items(built_repo, on_ray, cluster, tmp_path):
    import shutil

    import yaml

    repo = copy_repo(built_repo["path"], tmp_path / "repo")
    store = tmp_path / "store"
    shutil.copytree(on_ray["store"], store)  # every value of the 16-seed build, computed on the cluster
    before = {s: metrics(repo, s) for s in ("captions", "reconstructions")}
    n = yaml.safe_load((repo / "params.yaml").read_text())["seeds"]["n_synthetic"]
    set_params(repo, {**{f"ray.{r}.resources": {"fake_gpu": 1} for r in ROLES}, "seeds.n_synthetic": n + 2})
    repro(repo, ["seeds", "captions", "reconstructions"], ray_env(cluster, store), force=False)  # +12 % seeds
    for step in ("captions", "reconstructions"):
        b, a = before[step], metrics(repo, step)
        assert a["items_in"] == b["items_in"] + 2, step
        assert a["cache_hits"] == b["cache_misses"], step  # every old value read back from the object store
        assert 2 <= a["cache_misses"] <= 2 * 3, step       # the new items only (3 attempts at most each)
        assert a["ray"]["batches"] == 1 and a["model_calls"] <= 3, step  # one batch of 2 new items went out


def test_two_drivers_racing_on_the_same_keys_corrupt_nothing(built_repo, on_ray, cluster, tmp_path):
    from viper.store.cache import ObjectStore

    store = tmp_path / "store"
    repos = [copy_repo(built_repo["path"], tmp_path / f"repo{i}") for i in range(2)]
    for repo in repos:  # one actor each: both drivers compute every key at the same time
        set_params(repo, {**{f"ray.{r}.resources": {"fake_gpu": 1} for r in ROLES}, "ray.workers": 1})
    procs = [subprocess.Popen(["dvc", "repro", "-s", "-f", target("captions")], cwd=repo,
                              env=ray_env(cluster, store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for repo in repos]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    local = on_ray["local"]["data/captions/captions.parquet"]
    for repo in repos:
        assert outputs(repo)["data/captions/captions.parquet"] == local
    objects = ObjectStore(f"file://{store}")
    assert objects.temporary() == [] and objects.counts() == {"captions": metrics(built_repo["path"], "captions")[
        "cache_misses"]}


def test_an_actor_that_no_node_can_host_is_refused_at_once(on_ray, cluster):
    repo = on_ray["repo"]
    set_params(repo, {"ray.vlm.resources": {"fake_gpu": 8}})
    proc = subprocess.run(["dvc", "repro", "-s", "-f", target("captions")], cwd=repo, capture_output=True, text=True,
                          env=ray_env(cluster, on_ray["base"] / "store-empty"), timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "no node of the Ray cluster can host a vlm actor" in out
    assert "fake_gpu=2" in out and "Traceback" not in out
