"""Streaming: a synthesis stage works through its items one window at a time.

A stage keeps in memory the index of its inputs (keys, captions, shard offsets) and the small text results,
but decodes images only for the window it is computing and writes image outputs as it goes (`ShardWriter`),
so its peak memory is bounded by the window and a shard's member, not by the number of items (DESIGN.md §6).

The window is a multiple of the step's batch size, so a fresh run cuts the same model batches as one pass
over all items would: the window changes how much is held at once, never what is computed. It is the
`stream.window` runtime param, on which no stage depends.
"""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def window_size(batch_size: int) -> int:
    """`stream.window` items, rounded up to a whole number of batches."""
    from viper.config import load_params

    want = load_params().stream.window
    return max(1, -(-want // batch_size)) * batch_size


def windows(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of `size` items (the last may be shorter), in input order."""
    window: list[T] = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window
