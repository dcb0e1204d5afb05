"""Where the synthesis model steps compute: in the stage's own process (default) or on a Ray cluster.

The DVC stage process is always the driver. It builds the requests and their item-cache keys, asks the
store which keys exist, and cuts the missing ones into fixed batches of `batch_size` (in input order, as
the in-process loop does). Only if something is missing does an executor run those batches:

- `local` (default): the batches run here, one after another (`runner.memoised`'s own loop).
- `ray` (`RAY_ADDRESS` set, or `VIPER_EXECUTOR=ray`): Ray Data `map_batches` over an actor pool; each actor
  loads the model once, computes its batches (a failing batch is redone item by item, as locally) and
  commits each batch to the item store itself, so work done before a driver dies is kept. The driver then
  reads the values back from the store.

Either way the outputs are assembled by the driver in input order from the same values, so DVC outputs are
byte-identical whichever executor ran and however many actors shared the work. The choice is made by the
environment, not by a DVC param, for that reason; the actors' resources come from the `ray` section of
params.yaml, which no stage depends on. Traps met on the way: ../shared/reference/ray.md.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

EXECUTOR_VAR = "VIPER_EXECUTOR"  # local | ray; unset: ray when RAY_ADDRESS is set
STORE_VARS = ("VIPER_CACHE_URL", "VIPER_CACHE_DIR")  # the actors must write where the driver reads


@dataclass
class Batched:
    """A model step's work in a form an actor can run: `fn(model, inputs)` for any batch of inputs.

    `model` is a `viper.models.Lazy` (it travels unloaded and loads on first use in the actor); `fn` is a
    module-level function (or a partial of one) returning one bytes value per input; `role` names the
    model's `ray` resources. Called with indices, it computes in this process (the local executor)."""
    role: str
    model: Any
    fn: Callable[[Any, list], list[bytes]]
    inputs: list

    def __call__(self, idx: list[int]) -> list[bytes]:
        return self.fn(self.model, [self.inputs[i] for i in idx])


def executor_name() -> str:
    name = os.environ.get(EXECUTOR_VAR) or ("ray" if os.environ.get("RAY_ADDRESS") else "local")
    if name not in ("local", "ray"):
        raise SystemExit(f"{EXECUTOR_VAR}={name!r}: expected local or ray")
    return name


@dataclass
class RemoteResult:
    failed: dict[int, tuple[str, str]]  # index into the step's keys -> (reason, detail), never cached
    model_calls: int
    seconds: dict[str, float]
    actors: dict[str, dict]  # actor id -> its node and the resources Ray assigned it

    batches: int = 0

    @staticmethod
    def metrics(runs: list["RemoteResult"]) -> dict:
        """One step's Ray figures over its runs (a VLM step runs once per sampling attempt)."""
        seconds: dict[str, float] = {}
        for r in runs:
            for k, v in r.seconds.items():
                seconds[k] = max(seconds.get(k, 0.0), v) if k == "load" else seconds.get(k, 0.0) + v
        actors = [a for r in runs for a in r.actors.values()]
        return {"runs": len(runs), "batches": sum(r.batches for r in runs),
                "seconds": {k: round(v, 3) for k, v in seconds.items()},
                "actor_nodes": sorted({a["node"] for a in actors}),
                "actor_resources": sorted({json.dumps(a["resources"], sort_keys=True) for a in actors})}


class _Actor:
    """One model actor: loads the model on its first batch, computes and commits each batch it is given."""

    def __init__(self, step: str, work: Batched, store_env: dict[str, str]):
        # Ray sets OMP_NUM_THREADS to the actor's CPU count; on CPU another thread count sums floats in
        # another order, and images come out with other bytes than in the stage's own process. So the actor
        # computes with the thread setting the driver has (the library default unless the user set one).
        os.environ.pop("OMP_NUM_THREADS", None)
        os.environ.update(store_env)
        import ray

        from viper.store.cache import open_cache

        self.step, self.work, self.store = step, work, open_cache()
        ctx = ray.get_runtime_context()
        self.me = {"actor": ctx.get_actor_id(), "node": ctx.get_node_id(),
                   "resources": {k: v for k, v in ctx.get_assigned_resources().items() if v}}

    def __call__(self, batch: dict) -> dict:
        from viper.synth.runner import Failed, StepStats, compute_batch

        out: dict[str, list] = {"result": []}
        for payload in batch["payload"]:
            index, keys, inputs = pickle.loads(payload)
            stats = StepStats(self.step)
            t0 = time.perf_counter()
            values = compute_batch(lambda idx: self.work.fn(self.work.model, [inputs[i] for i in idx]),
                                   list(range(len(keys))), stats, self.step)
            t1 = time.perf_counter()
            self.store.put_many(self.step, {k: v for k, v in zip(keys, values) if not isinstance(v, Failed)})
            failed = {str(index[j]): [v.reason, v.detail] for j, v in enumerate(values) if isinstance(v, Failed)}
            out["result"].append(json.dumps({
                "failed": failed, "model_calls": stats.model_calls, "compute": t1 - t0,
                "store": time.perf_counter() - t1, "load": vars(self.work.model).get("load_seconds", 0.0), **self.me}))
        return out


def _connect(settings: Any) -> float:
    """Join the cluster at RAY_ADDRESS, or start a local one; returns the seconds it took."""
    import ray

    start = time.perf_counter()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # A cluster of our own: logical CPUs beyond the physical ones, so that actors holding theirs cannot
        # starve Ray Data's own read and write tasks (which would hang the job; ../shared/reference/ray.md).
        own = {} if address else {"object_store_memory": settings.object_store_mib * 2**20,
                                  "num_cpus": (os.cpu_count() or 1) + 2 * settings.workers}
        # Actors on other nodes get the driver's own `viper` package, shipped by Ray, so those nodes need the
        # environment's libraries and the model files, not a checkout. (On the driver's node an actor starts
        # in the driver's directory, the repository, and imports the checkout's `viper`, as the driver does.)
        import viper

        ray.init(address=address or None, log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False, runtime_env={"py_modules": [str(Path(viper.__file__).parent)]}, **own)
    return time.perf_counter() - start


def _check_fits(step: str, name: str, role: Any) -> None:
    """Refuse at once when no node can host one actor (Ray would wait for such a node forever)."""
    import ray

    need = {"CPU": role.num_cpus, "GPU": role.num_gpus, **role.resources}
    need = {k: v for k, v in need.items() if v}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(all(n.get(k, 0) >= v for k, v in need.items()) for n in nodes):
        have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n.items()) if not k.startswith("node:")
                                   and "memory" not in k) for n in nodes)
        raise SystemExit(f"{step}: no node of the Ray cluster can host a {name} actor, which asks for "
                         f"{need} (params `ray.{name}`); the nodes have: {have or 'none'}")


def run_remote(step: str, work: Batched, keys: list[str], chunks: list[list[int]], settings: Any) -> RemoteResult:
    """Compute `chunks` (lists of indices into `keys`/`work.inputs`) on Ray actors that commit to the store."""
    import ray

    connect = _connect(settings)
    role = getattr(settings, work.role)
    _check_fits(step, work.role, role)
    rows = [{"payload": pickle.dumps((c, [keys[i] for i in c], [work.inputs[i] for i in c]))} for c in chunks]
    # One block per batch: Ray would otherwise put small inputs in one block, and one actor would get it all.
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    store_env = {k: os.environ[k] for k in (*STORE_VARS, "OMP_NUM_THREADS") if os.environ.get(k)}
    if "VIPER_CACHE_URL" not in store_env:  # SQLite: one machine only; the actors must find the same file
        from viper.store.cache import cache_dir

        store_env["VIPER_CACHE_DIR"] = str(cache_dir().resolve())
    unloaded = Batched(work.role, work.model, work.fn, [])  # the inputs travel per batch, not with the actor
    out = ds.map_batches(_Actor, fn_constructor_args=(step, unloaded, store_env), batch_size=1,
                         compute=ray.data.ActorPoolStrategy(size=min(settings.workers, len(chunks))),
                         num_cpus=role.num_cpus, num_gpus=role.num_gpus, resources=role.resources or None)
    result = RemoteResult({}, 0, {"cluster": connect, "load": 0.0, "compute": 0.0, "store": 0.0}, {})
    start = time.perf_counter()
    try:
        for row in out.iter_rows():
            r = json.loads(row["result"])
            result.failed.update({int(i): tuple(v) for i, v in r["failed"].items()})
            result.model_calls += r["model_calls"]
            for part in ("compute", "store"):
                result.seconds[part] += r[part]
            result.seconds["load"] = max(result.seconds["load"], r["load"] or 0.0)
            result.actors[r["actor"]] = {"node": r["node"], "resources": r["resources"]}
            result.batches += 1
    except Exception as exc:  # noqa: BLE001 - an actor's error arrives wrapped by Ray
        raise SystemExit(f"{step}: the Ray executor failed: {_root_cause(exc)}") from None
    result.seconds["wall"] = time.perf_counter() - start
    return result


def _root_cause(exc: BaseException) -> str:
    """The actor's own error, out of Ray's wrappers (RayTaskError > UserCodeException > ...)."""
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip()
    # A RayTaskError's text is the remote traceback; its last line names the original exception.
    last = text.splitlines()[-1].strip() if text else ""
    return last if ":" in last else f"{type(seen).__name__}: {last}"
