"""Where the synthesis model steps compute: in the stage's own process (default) or on a Ray cluster.

The DVC stage process is always the driver. It builds the requests and their item-cache keys, asks the
store which keys exist, and cuts the missing ones into fixed batches of `batch_size` (in input order, as
the in-process loop does). Only if something is missing does an executor run those batches:

- `local` (default): the batches run here, one after another (`runner.memoised`'s own loop).
- `ray` (`RAY_ADDRESS` set, or `VIPER_EXECUTOR=ray`): a pool of model actors per step. Each actor loads
  the model once, runs a job per batch (a failing batch is redone item by item, as locally; a VLM batch
  runs all its sampling attempts, so parse retries happen in the worker) and commits every value to the
  item store itself, so work done before a driver dies is kept. The driver then reads the values back.

Either way the outputs are assembled by the driver in input order from the same values, so DVC outputs are
byte-identical whichever executor ran and however many actors shared the work. The choice is made by the
environment, not by a DVC param, for that reason; the actors' resources come from the `ray` section of
params.yaml, which no stage depends on.

Why plain actors rather than Ray Data's `map_batches`: a streaming stage (see viper/synth/stream.py) hands
its work over window by window, and a Ray Data actor pool lives for one dataset execution, so every window
would start actors and load the model again. A pool here lives for its step and feeds each actor one batch
at a time, which keeps one model load per actor and at most one batch per actor in flight (the driver's
memory stays bounded). It also avoids Ray Data's read/write tasks, which actors holding every CPU can starve.
Traps met on the way: ../shared/reference/ray.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

EXECUTOR_VAR = "VIPER_EXECUTOR"  # local | ray; unset: ray when RAY_ADDRESS is set
STORE_VARS = ("VIPER_CACHE_URL", "VIPER_CACHE_DIR")  # the actors must write where the driver reads

log = logging.getLogger("viper")


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
    """What one hand-over of batches to the pool did. A job returns {"failed": {key: [reason, detail]},
    "model_calls": n, "computed": n, "store": seconds} (failed values are never cached; `computed` counts
    the committed ones; `store` is the time spent reading and committing them)."""
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)
    model_calls: int = 0
    computed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    actors: dict[str, dict] = field(default_factory=dict)  # actor id -> its node and the resources Ray gave it
    batches: int = 0

    @staticmethod
    def metrics(runs: list["RemoteResult"]) -> dict:
        """One step's Ray figures over its hand-overs (a streaming step hands work over once per window)."""
        seconds: dict[str, float] = {}
        for r in runs:
            for k, v in r.seconds.items():
                seconds[k] = max(seconds.get(k, 0.0), v) if k == "load" else seconds.get(k, 0.0) + v
        actors = {k: a for r in runs for k, a in r.actors.items()}
        return {"runs": len(runs), "batches": sum(r.batches for r in runs), "actors": len(actors),
                "seconds": {k: round(v, 3) for k, v in sorted(seconds.items())},
                "actor_nodes": sorted({a["node"] for a in actors.values()}),
                "actor_resources": sorted({json.dumps(a["resources"], sort_keys=True) for a in actors.values()})}


def batch_job(model: Any, store: Any, step: str, payload: tuple) -> dict:
    """The job of a `Batched` step: compute one batch (item by item if the batch call raises), commit it."""
    from viper.synth.runner import Failed, StepStats, compute_batch

    keys, fn, inputs = payload
    stats = StepStats(step)
    values = compute_batch(lambda idx: fn(model, [inputs[i] for i in idx]), list(range(len(keys))), stats, step)
    start = time.perf_counter()
    store.put_many(step, {k: v for k, v in zip(keys, values) if not isinstance(v, Failed)})
    return {"failed": {k: [v.reason, v.detail] for k, v in zip(keys, values) if isinstance(v, Failed)},
            "model_calls": stats.model_calls, "computed": sum(not isinstance(v, Failed) for v in values),
            "store": time.perf_counter() - start}


class _Actor:
    """One model actor: loads the model on its first job, then runs the jobs it is given one at a time."""

    def __init__(self, step: str, model: Any, store_env: dict[str, str]):
        # Ray sets OMP_NUM_THREADS to the actor's CPU count; on CPU another thread count sums floats in
        # another order, and images come out with other bytes than in the stage's own process. So the actor
        # computes with the thread setting the driver has (the library default unless the user set one).
        os.environ.pop("OMP_NUM_THREADS", None)
        os.environ.update(store_env)
        os.environ[EXECUTOR_VAR] = "local"  # the actor is the executor: what it runs must not go remote again
        import ray

        from viper.store.cache import open_cache

        self.step, self.model, self.store = step, model, open_cache()
        ctx = ray.get_runtime_context()
        self.me = {"actor": ctx.get_actor_id(), "node": ctx.get_node_id(),
                   "resources": {k: v for k, v in ctx.get_assigned_resources().items() if v}}

    def run(self, job: Callable, payload: Any) -> dict:
        loaded = vars(self.model).get("_obj") is not None
        start = time.perf_counter()
        out = job(self.model, self.store, self.step, payload)
        load = 0.0 if loaded else vars(self.model).get("load_seconds", 0.0)  # the first job loads the model
        return {**out, **self.me, "compute": time.perf_counter() - start - load, "load": load}


def _connect(settings: Any) -> float:
    """Join the cluster at RAY_ADDRESS, or start a local one; returns the seconds it took."""
    import ray

    start = time.perf_counter()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        own = {} if address else {"object_store_memory": settings.object_store_mib * 2**20,
                                  "num_cpus": max(os.cpu_count() or 1, settings.workers)}
        # Actors on other nodes get the driver's own `viper` package, shipped by Ray, so those nodes need the
        # environment's libraries and the model files, not a checkout. (On the driver's node an actor starts
        # in the driver's directory, the repository, and imports the checkout's `viper`, as the driver does.)
        import viper

        ray.init(address=address or None, log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False, runtime_env={"py_modules": [str(Path(viper.__file__).parent)]}, **own)
    return time.perf_counter() - start


def _capacity(step: str, name: str, role: Any) -> int:
    """How many actors of `role` the cluster's live nodes can host together; refuse at once when no node can
    host one (Ray would wait for such a node forever, and so would a batch given to an actor beyond this)."""
    import ray

    need = {"CPU": role.num_cpus, "GPU": role.num_gpus, **role.resources}
    need = {k: v for k, v in need.items() if v}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    fits = sum(min((int(n.get(k, 0) // v) for k, v in need.items()), default=1 << 10) for n in nodes)
    if not fits:
        have = "; ".join(", ".join(f"{k}={v:g}" for k, v in sorted(n.items()) if not k.startswith("node:")
                                   and "memory" not in k) for n in nodes)
        raise SystemExit(f"{step}: no node of the Ray cluster can host a {name} actor, which asks for "
                         f"{need} (params `ray.{name}`); the nodes have: {have or 'none'}")
    return fits


class _Pool:
    """The model actors of one step, started on first need (at most `workers`), killed when the step ends."""

    def __init__(self, step: str, role: str, model: Any, settings: Any):
        self.step, self.role, self.model, self.settings = step, role, model, settings
        self.actors: list = []
        self.capacity = 0

    def _grow(self, wanted: int) -> None:
        import ray

        spec = getattr(self.settings, self.role)
        if not self.capacity:
            self.capacity = _capacity(self.step, self.role, spec)
            if self.capacity < self.settings.workers:
                log.warning("%s: the cluster can host %d %s actor(s), fewer than ray.workers=%d", self.step,
                            self.capacity, self.role, self.settings.workers)
        store_env = {k: os.environ[k] for k in (*STORE_VARS, "OMP_NUM_THREADS") if os.environ.get(k)}
        if "VIPER_CACHE_URL" not in store_env:  # SQLite: one machine only; the actors must find the same file
            from viper.store.cache import cache_dir

            store_env["VIPER_CACHE_DIR"] = str(cache_dir().resolve())
        cls = ray.remote(_Actor).options(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus,
                                         resources=spec.resources or None, max_concurrency=1)
        while len(self.actors) < min(wanted, self.settings.workers, self.capacity):
            self.actors.append(cls.remote(self.step, self.model, store_env))

    def run(self, job: Callable, payloads: list) -> RemoteResult:
        """Run `job` on every payload, one per free actor at a time; the results in no particular order."""
        import ray

        result = RemoteResult(seconds={"cluster": _connect(self.settings), "load": 0.0, "compute": 0.0,
                                       "store": 0.0})
        self._grow(len(payloads))
        start, todo, running = time.perf_counter(), iter(payloads), {}
        free = list(self.actors)
        try:
            while True:
                while free:
                    payload = next(todo, None)
                    if payload is None:
                        break
                    actor = free.pop()
                    running[actor.run.remote(job, payload)] = actor
                if not running:
                    break
                [ref], _ = ray.wait(list(running), num_returns=1)
                free.append(running.pop(ref))
                r = ray.get(ref)
                result.failed.update({k: tuple(v) for k, v in r["failed"].items()})
                result.model_calls += r["model_calls"]
                result.computed += r["computed"]
                result.seconds["compute"] += r["compute"]
                result.seconds["store"] += r["store"]
                result.seconds["load"] = max(result.seconds["load"], r["load"] or 0.0)
                result.actors[r["actor"]] = {"node": r["node"], "resources": r["resources"]}
                result.batches += 1
        except Exception as exc:  # noqa: BLE001 - an actor's error arrives wrapped by Ray
            close_pools()
            raise SystemExit(f"{self.step}: the Ray executor failed: {_root_cause(exc)}") from None
        result.seconds["wall"] = time.perf_counter() - start
        return result

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)  # frees its GPU for the next step's actors
        self.actors = []


_pools: dict[tuple, _Pool] = {}


def pool(step: str, role: str, model: Any) -> _Pool:
    """The pool of `step`'s `role` model. Opening another step's pool closes the others first: one step runs
    at a time in a stage process, and its actors must not hold the GPUs the next step's actors need."""
    key = (step, role, id(model))
    if key not in _pools:
        from viper.config import load_params

        close_pools()
        _pools[key] = _Pool(step, role, model, load_params().ray)
    return _pools[key]


def close_pools() -> None:
    for p in _pools.values():
        p.close()
    _pools.clear()


def run_remote(step: str, work: Batched, keys: list[str], chunks: list[list[int]]) -> RemoteResult:
    """Compute `chunks` (lists of indices into `keys`/`work.inputs`) on the step's actors; they commit."""
    payloads = [([keys[i] for i in c], work.fn, [work.inputs[i] for i in c]) for c in chunks]
    return pool(step, work.role, work.model).run(batch_job, payloads)


def _root_cause(exc: BaseException) -> str:
    """The actor's own error, out of Ray's wrappers (RayTaskError > UserCodeException > ...)."""
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip()
    # A RayTaskError's text is the remote traceback; its last line names the original exception.
    last = text.splitlines()[-1].strip() if text else ""
    return last if ":" in last else f"{type(seen).__name__}: {last}"
