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
from viper.synth.executor import Batched, RemoteResult, executor_name, run_remote

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
             stats: StepStats, batch_size: int,
             max_reject_fraction: float | None = None) -> list[bytes | Failed]:
    """Values for every key: cached ones read back, the rest computed in batches of `batch_size`
    (indices into `keys`) and committed batch by batch, so a kill loses at most one batch.

    A batch whose call raises is redone item by item (`compute_batch`); an item that raises alone too
    comes back as a `Failed` (reason `model_error`, detail = exception class and first message line) and
    is not cached. Once more than `max_reject_fraction` of the keys have failed the step stops: the cause
    is systemic, and calling the model for the rest would only repeat it. A model that cannot load
    (`ModelLoadError`) fails the step at once.

    Under the Ray executor (see executor.py) a `Batched` compute runs the same batches on model actors,
    which commit to the store; the values are then read back here, so the result is the same."""
    found = cache.get_many(step, keys)
    missing = [i for i, k in enumerate(keys) if k not in found]
    stats.cache_hits += len(keys) - len(missing)
    stats.cache_misses += len(missing)
    failed: dict[int, Failed] = {}
    chunks = [missing[s:s + batch_size] for s in range(0, len(missing), batch_size)]
    if chunks and isinstance(compute, Batched) and executor_name() == "ray":
        from viper.config import load_params

        remote = run_remote(step, compute, keys, chunks, load_params().ray)
        stats.model_calls += remote.model_calls
        stats.remote.append(remote)
        failed = {i: Failed(*v) for i, v in remote.failed.items()}
        _too_many_failed(failed, len(keys), step, max_reject_fraction)
        found.update(cache.get_many(step, [keys[i] for i in missing if i not in failed]))
        chunks = []
    for chunk in tqdm(chunks, desc=step, unit="batch", disable=not chunks):
        values = compute_batch(compute, chunk, stats, step)
        fresh = {}
        for i, v in zip(chunk, values):
            if isinstance(v, Failed):
                failed[i] = v
            else:
                fresh[keys[i]] = v
        cache.put_many(step, fresh)
        found.update(fresh)
        _too_many_failed(failed, len(keys), step, max_reject_fraction)
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


def run_vlm_task(task: VlmTask, items: list[dict], vlm: Generator, *, seed: int, temperature: float,
                 max_retries: int, cache: ItemStore, model: dict,
                 stats: StepStats | None = None) -> tuple[list[dict], list[Reject]]:
    """Run `task` on every item (each has a unique "key"); retry unparsable replies with a new seed.

    Returns (outputs in input order, rejects). Attempt 0 is greedy when temperature == 0; retries
    always sample (at temperature 1.0 if 0 was asked), since a greedy retry would repeat itself.
    Every reply goes through the item cache under a key of (step, `model`, request).
    """
    stats = stats or StepStats(task.name)
    start = time.perf_counter()
    stats.items_in += len(items)
    done: dict[str, dict] = {}
    last: dict[str, tuple[ParseError, str]] = {}
    errors: dict[str, Failed] = {}  # the model call itself raised: rejected, not resampled
    pending = list(items)
    for attempt in range(max_retries + 1):
        if not pending:
            break
        temp = temperature if attempt == 0 or temperature > 0 else 1.0
        reqs = [replace(task.request(it), temperature=temp or 1.0,
                        seed=None if temp == 0 else derive_seed(seed, task.name, it["key"], attempt))
                for it in pending]
        keys = [make_key(task.name, model, request_payload(r)) for r in reqs]
        replies = memoised(keys, Batched("vlm", vlm, _generate, reqs), cache, task.name, stats, vlm.batch_size)
        stats.attempts += len(reqs)
        failed = []
        for it, raw in zip(pending, replies):
            if isinstance(raw, Failed):
                errors[it["key"]] = raw
                continue
            text = raw.decode()
            try:
                done[it["key"]] = task.parse(text, it)
            except ParseError as err:
                last[it["key"]] = (err, text)
                failed.append(it)
        pending = failed
    unparsed = {it["key"] for it in pending}
    rejects = [Reject(k, errors[k].reason, errors[k].detail) if k in errors else
               Reject(k, last[k][0].reason, last[k][0].detail, last[k][1])
               for k in (it["key"] for it in items) if k in errors or k in unparsed]
    outputs = [done[it["key"]] for it in items if it["key"] in done]
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
