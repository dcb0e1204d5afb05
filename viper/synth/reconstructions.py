"""reconstructions and edited_pairs: the two diffusion steps, batched, one seed per item, memoised.

Each image's generator is seeded from the item's id, so an image depends only on its own inputs,
never on which other items shared its batch. An item whose model call fails (in its batch, then
alone) is a reject with its reason; the other items go on (see `runner.memoised`).
"""

from __future__ import annotations

import io
import time
from functools import partial
from typing import Any

from PIL import Image

from viper.store.cache import ItemStore, image_digest, make_key
from viper.store.io import png_bytes
from viper.synth.executor import Batched
from viper.synth.runner import Failed, Reject, StepStats, derive_seed, memoised


def _collect(items: list[dict], values: list[bytes | Failed], key: str,
             stats: StepStats) -> tuple[list[tuple[dict, Image.Image]], list[Reject]]:
    """(item, image) for every computed item, in input order; a Reject for every failed one."""
    done, rejects = [], []
    for item, v in zip(items, values):
        if isinstance(v, Failed):
            rejects.append(Reject(item[key], v.reason, v.detail))
        else:
            done.append((item, Image.open(io.BytesIO(v)).convert("RGB")))
    stats.items_out += len(done)
    stats.rejects.update(r.reason for r in rejects)
    return done, rejects


# The model calls, as module-level functions of (model, batch of inputs): what a Ray actor runs (executor.py).
def _render(t2i: Any, inputs: list[tuple[str, int]], gen: dict) -> list[bytes]:
    prompts, seeds = zip(*inputs)
    return [png_bytes(img) for img in t2i.generate(list(prompts), list(seeds), **gen)]


def _edit(editor: Any, inputs: list[tuple[Image.Image, str, int]], gen: dict) -> list[bytes]:
    images, instructions, seeds = zip(*inputs)
    return [png_bytes(img) for img in editor.edit(list(images), list(instructions), list(seeds), **gen)]


def reconstruct(t2i: Any, captions: list[dict], params: Any, seed: int, cache: ItemStore, model: dict,
                stats: StepStats | None = None) -> tuple[list[tuple[dict, Image.Image]], list[Reject], StepStats]:
    """Render every caption: ([(caption row, image)] for the items that succeeded, rejects, stats). A
    streaming stage calls it per window with one `stats`, which adds up."""
    stats, start = stats or StepStats("reconstructions"), time.perf_counter()
    stats.items_in += len(captions)
    seeds = [derive_seed(seed, "reconstructions", c["id"]) for c in captions]
    gen = {"steps": params.steps, "guidance_scale": params.guidance_scale, "height": params.height,
           "width": params.width}
    keys = [make_key("reconstructions", model, {"prompt": c["caption"], "seed": s, **gen})
            for c, s in zip(captions, seeds)]

    compute = Batched("t2i", t2i, partial(_render, gen=gen), [(c["caption"], s) for c, s in zip(captions, seeds)])
    values = memoised(keys, compute, cache, "reconstructions", stats, params.batch_size,
                      params.max_reject_fraction)
    done, rejects = _collect(captions, values, "id", stats)
    stats.seconds += time.perf_counter() - start
    return done, rejects, stats


def apply_edits(editor: Any, plans: list[dict], originals: dict[str, Image.Image], params: Any, seed: int,
                cache: ItemStore, model: dict,
                stats: StepStats | None = None) -> tuple[list[tuple[dict, Image.Image]], list[Reject], StepStats]:
    """Edit every plan's original: ([(plan row, edited image)] for the items that succeeded, rejects, stats).
    A plan whose original is not among `originals` is a reject (`missing_original`), not a crash. A
    streaming stage calls it per window with one `stats`, which adds up."""
    stats, start = stats or StepStats("edited_pairs"), time.perf_counter()
    stats.items_in += len(plans)
    missing = [Reject(p["edit_id"], "missing_original", f"no seed image {p['id']}")
               for p in plans if p["id"] not in originals]
    plans = [p for p in plans if p["id"] in originals]
    seeds = [derive_seed(seed, "edited_pairs", p["edit_id"]) for p in plans]
    gen = {"steps": params.steps, "guidance_scale": params.guidance_scale,
           "image_guidance_scale": params.image_guidance_scale, "process_pixels": params.process_pixels}
    keys = [make_key("edited_pairs", model, {"image": image_digest(originals[p["id"]]),
                                             "instruction": p["instruction"], "seed": s, **gen})
            for p, s in zip(plans, seeds)]

    compute = Batched("edit", editor, partial(_edit, gen=gen),
                      [(originals[p["id"]], p["instruction"], s) for p, s in zip(plans, seeds)])
    values = memoised(keys, compute, cache, "edited_pairs", stats, params.batch_size,
                      params.max_reject_fraction)
    done, rejects = _collect(plans, values, "edit_id", stats)
    stats.rejects.update(r.reason for r in missing)
    stats.seconds += time.perf_counter() - start
    return done, missing + rejects, stats
