"""Streaming: a synthesis stage works through its items one window at a time.

A stage keeps in memory the index of its inputs (keys, captions, shard offsets) and the small text results,
but decodes images only for the window it is computing and writes image outputs as it goes (`ShardWriter`),
so its peak memory is bounded by the window and a shard's member, not by the number of items (DESIGN.md §6).

The window is a multiple of the step's batch size, so a fresh run cuts the same model batches as one pass
over all items would: the window changes how much is held at once, never what is computed. It is the
`stream.window` runtime param, on which no stage depends.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

from viper.store.io import atomic_write_bytes

T = TypeVar("T")
PROGRESS_DIR = Path(".viper_progress")  # in the repository (git-ignored): what `viper status` shows as running


def window_size(batch_size: int) -> int:
    """`stream.window` items, rounded up to a whole number of batches."""
    from viper.config import load_params

    want = load_params().stream.window
    return max(1, -(-want // batch_size)) * batch_size


def windows(items: Iterable[T], size: int, step: str | None = None) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), in input order.

    With `step` (and items of known length) the step's progress is kept in `.viper_progress/<step>.json`
    while it runs, so `viper status` can show it; the file goes when the step ends or fails."""
    total = len(items) if step and isinstance(items, Sequence) else None
    path = PROGRESS_DIR / f"{progress_name(step)}.json"
    done = 0
    try:
        window: list[T] = []
        for item in items:
            window.append(item)
            if len(window) == size:
                _report(path, total, done)
                yield window
                done += len(window)
                window = []
        if window:
            _report(path, total, done)
            yield window
    finally:
        if total is not None:
            path.unlink(missing_ok=True)


def _report(path: Path, total: int | None, done: int) -> None:
    if total is not None:
        atomic_write_bytes(path, json.dumps({"done": done, "total": total, "pid": os.getpid(),
                                             "host": socket.gethostname(), "updated": time.time()}).encode())


def progress_name(step: str | None) -> str:
    """`captions`, or `captions@2` when DVC runs it as closed-loop round 2's stage (round_captions@2)."""
    stage = os.environ.get("DVC_STAGE", "")
    return f"{step}@{stage.rpartition('@')[2]}" if "@" in stage else str(step)


def running(step: str) -> dict | None:
    """The progress of `step` if a live process on this machine (or any process elsewhere) is running it."""
    try:
        info = json.loads((PROGRESS_DIR / f"{step}.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("host") == socket.gethostname():
        try:
            os.kill(int(info["pid"]), 0)
        except (ProcessLookupError, ValueError, KeyError):
            return None  # a killed run left it behind
        except PermissionError:
            pass  # alive, another user's
    return info
