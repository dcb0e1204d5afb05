"""viper10k: validate the edited pairs (CLIP filter, then VLM judge) and package both subsets.

Caption-refining items: (image, caption, refinements). Visual-operation items: (original, edited,
instruction). The on-disk format (schema, manifest, card, verified reading) is viper/store/viper10k.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from PIL import Image

from viper.store.cache import ItemStore, image_digest, make_key
from viper.store.io import ShardWriter, png_bytes, sha256_file
from viper.synth.executor import Batched
from viper.synth.runner import Failed, StepStats, memoised

DECISION_COLUMNS = ["edit_id", "id", "clip_similarity", "kept", "reason", "detail"]
CLIP_BATCH = 64


def _similarity(clip: Any, pairs: list[tuple[Image.Image, Image.Image]]) -> list[bytes]:
    a, b = zip(*pairs)
    return [repr(float(v)).encode() for v in clip.image_similarity(list(a), list(b))]


def clip_similarities(clip: Any, pairs: list[dict], originals: dict[str, Image.Image],
                      edited: dict[str, Image.Image], cache: ItemStore, model: dict, stats: StepStats,
                      max_reject_fraction: float | None = None) -> list[float | Failed]:
    """Cosine of CLIP image embeddings, original vs edited, memoised per image pair.

    A pair whose CLIP call fails (in its batch, then alone) comes back as a `Failed`, counted as a
    reject in `stats`; the other pairs go on (see `runner.memoised`)."""
    a = [originals[p["id"]] for p in pairs]
    b = [edited[p["edit_id"]] for p in pairs]
    keys = [make_key("clip_filter", model, {"a": image_digest(x), "b": image_digest(y)}) for x, y in zip(a, b)]

    values = memoised(keys, Batched("clip", clip, _similarity, list(zip(a, b))), cache, "clip_filter", stats,
                      CLIP_BATCH, max_reject_fraction)
    sims = [v if isinstance(v, Failed) else float(v) for v in values]
    failed = [v for v in sims if isinstance(v, Failed)]
    stats.items_in += len(pairs)  # adds up over a streaming stage's windows
    stats.items_out += len(pairs) - len(failed)
    stats.rejects.update(v.reason for v in failed)
    return sims


def clip_decisions(similarities: list[float | Failed], pairs: list[dict], lo: float, hi: float) -> list[dict]:
    """Drop edits that changed (almost) nothing (> hi) or drifted too far from the original (< lo),
    and those CLIP could not score (`clip_<reason>`, similarity left empty)."""
    out = []
    for sim, pair in zip(similarities, pairs):
        if isinstance(sim, Failed):
            out.append({"edit_id": pair["edit_id"], "id": pair["id"], "clip_similarity": None,
                        "kept": False, "reason": f"clip_{sim.reason}", "detail": sim.detail})
            continue
        reason = "unchanged" if sim > hi else "drifted" if sim < lo else ""
        out.append({"edit_id": pair["edit_id"], "id": pair["id"], "clip_similarity": float(sim),
                    "kept": not reason, "reason": reason, "detail": ""})
    return out


def apply_verdicts(decisions: list[dict], verdicts: list[dict], unparsable: list) -> None:
    """Fold the judge's verdicts into the CLIP decisions: a rejected or unjudgeable edit is dropped."""
    by_key = {v["key"]: v for v in verdicts}
    bad = {r.key: r for r in unparsable}
    for d in decisions:
        if not d["kept"]:
            continue
        if d["edit_id"] in bad:
            r = bad[d["edit_id"]]  # unparsable: its raw reply; a failed model call: the error
            d.update(kept=False, reason=f"judge_{r.reason}", detail=(r.raw or r.detail)[:200])
        elif not by_key[d["edit_id"]]["is_valid"]:
            d.update(kept=False, reason="judge_rejected", detail=by_key[d["edit_id"]]["reason"])


def caption_samples(refinements: list[dict], image: Callable[[str], Image.Image]) -> Iterator[dict]:
    """One sample per refinement row; `image(id)` is read as each sample is written."""
    for r in refinements:
        yield {"__key__": r["id"], "png": png_bytes(image(r["id"])),
               "json": {"id": r["id"], "caption": r["caption"], "refinements": r["refinements"]}}


def operation_samples(pairs: list[dict], original: Callable[[str], Image.Image],
                      edited: Callable[[str], Image.Image]) -> Iterator[dict]:
    for p in pairs:
        yield {"__key__": p["edit_id"], "src.png": png_bytes(original(p["id"])),
               "edited.png": png_bytes(edited(p["edit_id"])),
               "json": {k: p[k] for k in ("id", "edit_id", "category", "entity", "instruction")}}


def write_subset(out_dir: Path, samples: Iterable[dict], shard_size: int) -> list[dict]:
    """Write one subset's shards, a sample at a time; return their manifest entries (file, sha256, count)."""
    with ShardWriter(out_dir, shard_size) as writer:
        for sample in samples:
            writer.write(sample)
    return [{"file": path.name, "sha256": sha256_file(path), "count": count}
            for path, count in zip(writer.paths, writer.counts)]
