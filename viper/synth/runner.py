"""The shared runner of model-call steps: seeding, retries, rejects and statistics.

A step only says how to turn an item into a request and how to parse the reply (see
captions.py, refinements.py, ...). Everything else about running it lives here, once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from tqdm import tqdm

from viper.backends.requests import VLMRequest
from viper.models import ModelLoadError
from viper.prompts.parse import ParseError
from viper.store.cache import ItemStore, make_key, request_payload
from viper.store.io import canonical_json
from viper.synth.executor import Batched, RemoteResult, executor_name, pool, run_remote

log = logging.getLogger("viper")

MODEL_ERROR = "model_error"  # the reject reason of an item whose model call raised, in its batch and alone


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts: same parts, same seed, on every machine."""
    return int.from_bytes(hashlib.sha256(canonical_json(list(parts)).encode()).digest()[:8], "big") >> 1


def derive_id(*parts: Any) -> str:
    return hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:16]


@dataclass
class Reject:
    key: str
    reason: str
    detail: str = ""
    raw: str = ""

    def row(self) -> dict:
        return {"key": self.key, "reason": self.reason, "detail": self.detail, "raw": self.raw}


REJECT_COLUMNS = ["key", "reason", "detail", "raw"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")             # "<_io.BytesIO object at 0x7f3a...>"
_HEX = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")              # any other pointer-sized hex number
_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/<>()\[\],;:]+){2,}[\\/]?")  # absolute paths


def clean_message(text: str, limit: int = 200) -> str:
    """The first line of an error message, without what differs between identical runs: object
    addresses, pointer values and absolute (often temporary) paths. Reject tables stay byte-identical."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    line = _PATH.sub("<path>", _HEX.sub("0x?", _ADDRESS.sub("", line)))
    return line[:limit]


def error_detail(exc: BaseException, limit: int = 200) -> str:
    """`ExceptionClass: first line of its message`, deterministic (see `clean_message`)."""
    msg = clean_message(str(exc), limit)
    return f"{type(exc).__name__}: {msg}"[:limit] if msg else type(exc).__name__


@dataclass(frozen=True)
class Failed:
    """What `memoised` returns for an item whose model call raised in its batch and again alone.
    It is never cached, so the next run tries the item again."""
    reason: str
    detail: str


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@dataclass
class StepStats:
    step: str
    items_in: int = 0
    items_out: int = 0
    rejects: Counter = field(default_factory=Counter)
    model_calls: int = 0
    attempts: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    store_seconds: float = 0.0  # reading and committing item-store values (in this process)
    remote: list = field(default_factory=list)  # what the Ray executor did (executor.RemoteResult per run)

    def metrics(self) -> dict:
        return {
            "items_in": self.items_in,
            "items_out": self.items_out,
            "survival": round(self.items_out / self.items_in, 4) if self.items_in else 0.0,
            "rejects": dict(sorted(self.rejects.items())),
            "model_calls": self.model_calls,
            "attempts": self.attempts,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items_in / self.seconds, 3) if self.seconds else 0.0,
            "store_seconds": round(self.store_seconds, 3),
            "peak_rss_mib": peak_rss_mib(),  # of this (driver) process so far: what streaming bounds
            **({"ray": RemoteResult.metrics(self.remote)} if self.remote else {}),
        }


def _attempt(compute: Callable[[list[int]], list[bytes]], idx: list[int], stats: StepStats,
             step: str) -> list[bytes] | Exception:
    """One model call; its exception is returned, except those no other item could escape."""
    stats.model_calls += 1
    try:
        values = list(compute(idx))
    except ModelLoadError:  # systemic: the model itself is unavailable, every item would fail
        raise
    except Exception as exc:  # noqa: BLE001 - a single item may break a model call in any way
        log.warning("%s: a model call over %d item(s) raised %s", step, len(idx), error_detail(exc))
        return exc
    if len(values) != len(idx):
        raise RuntimeError(f"{step}: the model returned {len(values)} results for {len(idx)} items")
    return values


def compute_batch(compute: Callable[[list[int]], list[bytes]], idx: list[int], stats: StepStats,
                  step: str) -> list[bytes | Failed]:
    """Values for one batch; a batch whose call raises is redone item by item, so one bad item cannot sink
    the others, and an item that raises alone too becomes a `Failed`."""
    values = _attempt(compute, idx, stats, step)
    if not isinstance(values, Exception):
        return values
    out: list[bytes | Failed] = []
    for i in idx:
        one = _attempt(compute, [i], stats, step)
        out.append(Failed(MODEL_ERROR, error_detail(one)) if isinstance(one, Exception) else one[0])
    return out


def _too_many_failed(failed: dict[int, Failed], n: int, step: str, max_reject_fraction: float | None) -> None:
    if max_reject_fraction is not None and len(failed) > max_reject_fraction * n:
        first = failed[min(failed)]
        raise SystemExit(
            f"{step}: the model call failed for {len(failed)} of {n} items so far, above the "
            f"limit of {max_reject_fraction:.0%}; first error: {first.detail}. This is systemic (the "
            f"model, its device or the installed libraries), not a bad item: fix it and rerun "
            f"(finished items are cached), or raise the limit.")


def memoised(keys: list[str], compute: Callable[[list[int]], list[bytes]], cache: ItemStore, step: str,
             stats: StepStats, batch_size: int, max_reject_fraction: float | None = None,
             known_failed: dict[str, Failed] | None = None) -> list[bytes | Failed]:
    """Values for every key: cached ones read back, the rest computed in batches of `batch_size`
    (indices into `keys`) and committed batch by batch, so a kill loses at most one batch.

    A batch whose call raises is redone item by item (`compute_batch`); an item that raises alone too
    comes back as a `Failed` (reason `model_error`, detail = exception class and first message line) and
    is not cached. Once more than `max_reject_fraction` of the keys have failed the step stops: the cause
    is systemic, and calling the model for the rest would only repeat it. A model that cannot load
    (`ModelLoadError`) fails the step at once. `known_failed` are keys whose call already failed in this
    run (on a Ray actor): they are not tried again.

    Under the Ray executor (see executor.py) a `Batched` compute runs the same batches on model actors,
    which commit to the store; the values are then read back here, so the result is the same."""
    known_failed = known_failed or {}
    t0 = time.perf_counter()
    found = cache.get_many(step, keys)
    stats.store_seconds += time.perf_counter() - t0
    failed: dict[int, Failed] = {i: known_failed[k] for i, k in enumerate(keys) if k in known_failed}
    missing = [i for i, k in enumerate(keys) if k not in found and i not in failed]
    stats.cache_hits += len(keys) - len(missing) - len(failed)
    stats.cache_misses += len(missing) + len(failed)
    chunks = [missing[s:s + batch_size] for s in range(0, len(missing), batch_size)]
    if chunks and isinstance(compute, Batched) and executor_name() == "ray":
        remote = run_remote(step, compute, keys, chunks)
        stats.model_calls += remote.model_calls
        stats.remote.append(remote)
        failed.update({i: Failed(*remote.failed[keys[i]]) for i in missing if keys[i] in remote.failed})
        _too_many_failed(failed, len(keys), step, max_reject_fraction)
        t0 = time.perf_counter()
        found.update(cache.get_many(step, [keys[i] for i in missing if i not in failed]))
        stats.store_seconds += time.perf_counter() - t0
        chunks = []
    for chunk in tqdm(chunks, desc=step, unit="batch", disable=len(chunks) < 2):
        values = compute_batch(compute, chunk, stats, step)
        fresh = {}
        for i, v in zip(chunk, values):
            if isinstance(v, Failed):
                failed[i] = v
            else:
                fresh[keys[i]] = v
        t0 = time.perf_counter()
        cache.put_many(step, fresh)
        stats.store_seconds += time.perf_counter() - t0
        found.update(fresh)
        _too_many_failed(failed, len(keys), step, max_reject_fraction)
    lost = [k for i, k in enumerate(keys) if i not in failed and k not in found]
    if lost:  # an actor said it committed a value the store does not have: a store that drops writes
        raise SystemExit(f"{step}: {len(lost)} value(s) computed on the cluster are not in the item store "
                         f"({cache.location}); first key {lost[0]}. Do all nodes write the same store?")
    return [failed[i] if i in failed else found[k] for i, k in enumerate(keys)]


def _generate(vlm: Any, requests: list[VLMRequest]) -> list[bytes]:
    return [t.encode() for t in vlm.generate(requests)]


class VlmTask(Protocol):
    name: str

    def request(self, item: dict) -> VLMRequest: ...

    def parse(self, text: str, item: dict) -> dict: ...


class Generator(Protocol):
    batch_size: int

    def generate(self, requests: list[VLMRequest]) -> list[str]: ...


def _requests(task: VlmTask, items: list[dict], attempt: int, seed: int, temperature: float,
              model: dict) -> tuple[list[VLMRequest], list[str]]:
    """The requests of one sampling attempt and their item-cache keys. Attempt 0 is greedy when
    temperature == 0; retries always sample (at 1.0 if 0 was asked), since a greedy retry would repeat itself."""
    temp = temperature if attempt == 0 or temperature > 0 else 1.0
    reqs = [replace(task.request(it), temperature=temp or 1.0,
                    seed=None if temp == 0 else derive_seed(seed, task.name, it["key"], attempt)) for it in items]
    return reqs, [make_key(task.name, model, request_payload(r)) for r in reqs]


@dataclass
class _Attempts:
    """Where a VLM task's items ended up after its sampling attempts."""
    done: dict[str, dict] = field(default_factory=dict)              # item key -> parsed output
    unparsed: dict[str, tuple[ParseError, str]] = field(default_factory=dict)  # out of attempts: last error, reply
    errors: dict[str, tuple[str, Failed]] = field(default_factory=dict)  # the call raised: (request key, Failed)


def _attempt_loop(task: VlmTask, items: list[dict], vlm: Generator, seed: int, temperature: float,
                  max_retries: int, cache: ItemStore, model: dict, stats: StepStats,
                  known_failed: dict[str, Failed]) -> _Attempts:
    out = _Attempts()
    pending = list(items)
    for attempt in range(max_retries + 1):
        if not pending:
            break
        reqs, keys = _requests(task, pending, attempt, seed, temperature, model)
        replies = memoised(keys, Batched("vlm", vlm, _generate, reqs), cache, task.name, stats, vlm.batch_size,
                           known_failed=known_failed)
        stats.attempts += len(reqs)
        failed = []
        for it, key, raw in zip(pending, keys, replies):
            if isinstance(raw, Failed):
                out.errors[it["key"]] = (key, raw)
                continue
            text = raw.decode()
            try:
                out.done[it["key"]] = task.parse(text, it)
            except ParseError as err:
                out.unparsed[it["key"]] = (err, text)
                failed.append(it)
        pending = failed
    for it in out.done:
        out.unparsed.pop(it, None)
    return out


def unresolved(task: VlmTask, items: list[dict], seed: int, temperature: float, max_retries: int,
               cache: ItemStore, model: dict) -> list[int]:
    """Indices of the items whose attempts the store cannot finish: replaying them from cached replies meets
    a missing one before a parsable reply or the last attempt."""
    out, pending = [], list(range(len(items)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        _, keys = _requests(task, [items[i] for i in pending], attempt, seed, temperature, model)
        found = cache.get_many(task.name, keys)
        retry = []
        for i, key in zip(pending, keys):
            if key not in found:
                out.append(i)
                continue
            try:
                task.parse(found[key].decode(), items[i])
            except ParseError:
                retry.append(i)
        pending = retry
    return sorted(out)


def vlm_job(vlm: Generator, store: ItemStore, step: str, payload: tuple) -> dict:
    """The job of a VLM step (in this process, or on a Ray actor): every sampling attempt of one batch of
    items, each reply committed. A retry is one call over the batch's unparsable items."""
    task, items, seed, temperature, max_retries, model = payload
    stats = StepStats(step)
    res = _attempt_loop(task, items, vlm, seed, temperature, max_retries, store, model, stats, {})
    return {"failed": {key: [f.reason, f.detail] for key, f in res.errors.values()},
            "model_calls": stats.model_calls, "computed": stats.cache_misses - len(res.errors),
            "store": stats.store_seconds}


def _compute_unresolved(task: VlmTask, items: list[dict], vlm: Generator, seed: int, temperature: float,
                        max_retries: int, cache: ItemStore, model: dict,
                        stats: StepStats) -> tuple[dict[str, Failed], int]:
    """Compute what the store cannot answer: the unresolved items, in fixed batches of `vlm.batch_size` (input
    order), each batch running all its sampling attempts (`vlm_job`: a retry batches the batch's own
    unparsable items) and committing every reply. Here one batch after another, or on the step's Ray actors:
    the same batches either way, so the same replies. Returns the request keys whose call failed (never
    cached: the reading pass must not call them again) and how many replies were committed."""
    idx = unresolved(task, items, seed, temperature, max_retries, cache, model)
    todo = [items[i] for i in idx]
    payloads = [(task, todo[s:s + vlm.batch_size], seed, temperature, max_retries, model)
                for s in range(0, len(todo), vlm.batch_size)]
    if not payloads:
        return {}, 0
    if executor_name() == "ray":
        remote = pool(task.name, "vlm", vlm).run(vlm_job, payloads)
        stats.remote.append(remote)
        failed, computed, calls = remote.failed, remote.computed, remote.model_calls
    else:
        failed, computed, calls = {}, 0, 0
        for payload in tqdm(payloads, desc=task.name, unit="batch"):
            r = vlm_job(vlm, cache, task.name, payload)
            failed.update(r["failed"])
            computed += r["computed"]
            calls += r["model_calls"]
            stats.store_seconds += r["store"]
    stats.model_calls += calls
    return {k: Failed(*v) for k, v in failed.items()}, computed


def run_vlm_task(task: VlmTask, items: list[dict], vlm: Generator, *, seed: int, temperature: float,
                 max_retries: int, cache: ItemStore, model: dict,
                 stats: StepStats | None = None) -> tuple[list[dict], list[Reject]]:
    """Run `task` on every item (each has a unique "key"); retry unparsable replies with a new seed
    (`_requests` says how each attempt samples). Every reply goes through the item cache under a key of
    (step, `model`, request).

    Returns (outputs in input order, rejects). What the store lacks is computed first
    (`_compute_unresolved`, here or on Ray actors); the pass here then reads every reply back, so the result
    does not depend on where the replies were computed.
    """
    stats = stats or StepStats(task.name)
    start = time.perf_counter()
    stats.items_in += len(items)
    failed, computed = _compute_unresolved(task, items, vlm, seed, temperature, max_retries, cache, model, stats)
    res = _attempt_loop(task, items, vlm, seed, temperature, max_retries, cache, model, stats, failed)
    # The replies computed above were read back here as hits: count them as the misses they were.
    stats.cache_hits -= computed
    stats.cache_misses += computed
    keys = [it["key"] for it in items]
    rejects = [Reject(k, res.errors[k][1].reason, res.errors[k][1].detail) if k in res.errors else
               Reject(k, res.unparsed[k][0].reason, res.unparsed[k][0].detail, res.unparsed[k][1])
               for k in keys if k in res.errors or k in res.unparsed]
    outputs = [res.done[k] for k in keys if k in res.done]
    stats.items_out += len(outputs)
    stats.rejects.update(r.reason for r in rejects)
    stats.seconds += time.perf_counter() - start
    return outputs, rejects


def check_reject_fraction(stats: StepStats, limit: float) -> None:
    """Fail the stage when rejects are systemic rather than per-item noise."""
    rejected = stats.items_in - stats.items_out
    if stats.items_in and rejected / stats.items_in > limit:
        top = ", ".join(f"{r} ({n})" for r, n in stats.rejects.most_common(3))
        raise SystemExit(f"{stats.step}: {rejected} of {stats.items_in} items rejected "
                         f"({rejected / stats.items_in:.0%}), above the limit of {limit:.0%}; top reasons: "
                         f"{top or 'none recorded'}. Check the model and the inputs, or raise the limit.")
