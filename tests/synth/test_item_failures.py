"""One item whose model call raises never sinks its batch or its stage (DESIGN.md §3, issue 10).

The models are the real tiny pipelines, loaded with the real code; each is wrapped by a small object
that raises for one marked input, as a model does on an input it cannot take. The runner retries the
batch item by item, records the item that still raises as a `model_error` reject, keeps the others,
does not cache the failure (a later run retries it) and stops early when failures are systemic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viper.config import load_params
from viper.models import Lazy, ModelLoadError
from viper.store.cache import ItemCache
from viper.synth.captions import CaptionTask
from viper.synth.reconstructions import apply_edits, reconstruct
from viper.synth.runner import (Failed, Reject, StepStats, check_reject_fraction, clean_message, error_detail,
                                run_vlm_task)
from viper.synth.viper10k import clip_decisions, clip_similarities

MODEL = {"id": "tiny", "revision": "test"}
ROOT = Path(__file__).resolve().parents[2]


def params(step: str, **update):
    """The shipped params of a diffusion step, batches of 4 (so one test batch holds a failing item)."""
    return getattr(load_params(ROOT / "params.yaml"), step).model_copy(
        update={"batch_size": 4, "max_reject_fraction": 0.5, **update})


class Refuses:
    """A loaded model whose call raises when any input of the call is `bad(x)`, like a real pipeline
    raising on an input it cannot take; it counts the items of each call it receives."""

    def __init__(self, model, bad):
        self.model, self.bad, self.calls, self.refused = model, bad, [], 0

    def _check(self, xs) -> None:
        self.calls.append(len(xs))
        if any(self.bad(x) for x in xs):
            self.refused += 1
            raise ValueError(f"cannot take this input: <tensor object at 0x{id(self):x}>\ntraceback line")

    def generate(self, prompts, seeds, **gen):
        self._check(prompts)
        return self.model.generate(prompts, seeds, **gen)

    def edit(self, images, instructions, seeds, **gen):
        self._check(instructions)
        return self.model.edit(images, instructions, seeds, **gen)

    def image_similarity(self, a, b):
        self._check(a)
        return self.model.image_similarity(a, b)


DETAIL = "ValueError: cannot take this input: <tensor object>"


def _built(tmp_path_factory, builder, name):
    out = tmp_path_factory.mktemp("models") / name
    builder(out, seed=0)
    return str(out)


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    from viper.backends.diffusion import TextToImage
    from viper.zoo.diffusion import build_tiny_t2i

    return TextToImage(_built(tmp_path_factory, build_tiny_t2i, "t2i"), None)


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    from viper.backends.diffusion import ImageEditor
    from viper.zoo.diffusion import build_tiny_edit

    return ImageEditor(_built(tmp_path_factory, build_tiny_edit, "edit"), None)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from viper.backends.clip import ClipScorer
    from viper.zoo.clip import build_tiny_clip

    return ClipScorer(_built(tmp_path_factory, build_tiny_clip, "clip"), None)


def captions(n):
    return [{"id": f"s{i}", "caption": f"a {'red green blue yellow purple'.split()[i % 5]} square number {i}"}
            for i in range(n)]


def test_error_details_are_deterministic():
    assert clean_message("cannot identify image file <_io.BytesIO object at 0x7f3a2b1c0d90>") == \
        "cannot identify image file <_io.BytesIO object>"
    assert clean_message("No such file: '/tmp/pytest-7/tmpab12/a.png' id 0x55d0c0ffee00\nmore") == \
        "No such file: '<path>' id 0x?"
    assert error_detail(ValueError("height and width must be > 0")) == \
        "ValueError: height and width must be > 0"
    assert error_detail(KeyError()) == "KeyError"


def test_a_failing_item_is_one_reject_and_the_batch_survives(t2i, tmp_path):
    model = Refuses(t2i, lambda prompt: "number 1" in prompt)
    cache, p = ItemCache(tmp_path / "c.sqlite"), params("reconstructions")
    done, rejects, stats = reconstruct(model, captions(5), p, 0, cache, MODEL)
    assert [c["id"] for c, _ in done] == ["s0", "s2", "s3", "s4"]
    assert all(img.size == (p.width, p.height) and img.mode == "RGB" for _, img in done)
    assert rejects == [Reject("s1", "model_error", DETAIL)]
    assert model.calls == [4, 1, 1, 1, 1, 1]  # the batch, its items alone, then the next batch
    m = stats.metrics()
    assert (m["items_in"], m["items_out"], m["rejects"], m["model_calls"]) == (5, 4, {"model_error": 1}, 6)
    check_reject_fraction(stats, 0.5)  # one bad item does not fail the stage

    # The failure was not cached: the next run calls the model for that item only, and now gets it.
    healed = Refuses(t2i, lambda prompt: False)
    again, rejects, stats = reconstruct(healed, captions(5), params("reconstructions"), 0, cache, MODEL)
    assert [c["id"] for c, _ in again] == ["s0", "s1", "s2", "s3", "s4"] and not rejects
    assert healed.calls == [1] and (stats.cache_hits, stats.cache_misses) == (4, 1)
    served = again[:1] + again[2:]  # from the cache: the very images of the first run
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip(done, served))


def test_edits_survive_a_failing_item_and_a_degenerate_image(editor, tmp_path):
    originals = {f"s{i}": Image.new("RGB", (64, 48), (40 * i, 90, 200 - 30 * i)) for i in range(4)}
    originals["dot"] = Image.new("RGB", (1, 1), (255, 0, 0))  # what a 1x1 seed would bring here
    plans = [{"id": k, "edit_id": f"e-{k}", "instruction": f"make {k} blue"} for k in originals]
    plans.append({"id": "gone", "edit_id": "e-gone", "instruction": "x"})  # its seed was rejected upstream
    model = Refuses(editor, lambda instruction: instruction == "make s2 blue")
    done, rejects, stats = apply_edits(model, plans, originals, params("edited_pairs"), 0,
                                       ItemCache(tmp_path / "c.sqlite"), MODEL)
    by_key = {r.key: r for r in rejects}
    assert by_key["e-s2"] == Reject("e-s2", "model_error", DETAIL)
    assert by_key["e-gone"].reason == "missing_original"
    # A 1x1 original is either edited or (a pipeline that cannot take it) a model_error reject; never a crash.
    assert by_key.get("e-dot", Reject("e-dot", "model_error")).reason == "model_error"
    kept = [p["edit_id"] for p, _ in done]
    assert {"e-s0", "e-s1", "e-s3"} <= set(kept) and "e-s2" not in kept
    assert len(kept) + len(rejects) == len(plans) == stats.items_in and stats.items_out == len(kept)
    assert all(img.size == originals[p["id"]].size for p, img in done)


def test_systemic_failures_stop_the_step_with_a_clear_message(t2i, tmp_path):
    broken = Refuses(t2i, lambda prompt: True)
    with pytest.raises(SystemExit, match=r"reconstructions: the model call failed for 4 of 9 items so far, "
                                         r"above the limit of 40%; first error: ValueError: cannot take"):
        reconstruct(broken, captions(9), params("reconstructions", max_reject_fraction=0.4), 0,
                    ItemCache(tmp_path / "c.sqlite"), MODEL)
    assert broken.calls == [4, 1, 1, 1, 1]  # stopped after the first batch: the rest would only repeat it

    def load():
        from viper.backends.diffusion import TextToImage

        return TextToImage(str(tmp_path / "no-such-model"), None)

    unloadable = Lazy(load)  # as viper.models.load_t2i builds it
    with pytest.raises(ModelLoadError, match=r"(?s)could not load the model: .*dvc repro models"):
        reconstruct(unloadable, captions(3), params("reconstructions"), 0, ItemCache(tmp_path / "d.sqlite"),
                    MODEL)


def test_clip_failures_are_dropped_decisions(clip, tmp_path):
    originals = {f"s{i}": Image.new("RGB", (32, 32), (60 * i, 20, 20)) for i in range(3)}
    edited = {f"e{i}": Image.new("RGB", (32 + i, 32), (20, 60 * i, 20)) for i in range(3)}
    pairs = [{"id": f"s{i}", "edit_id": f"e{i}"} for i in range(3)]
    model = Refuses(clip, lambda img: img.getpixel((0, 0)) == (60, 20, 20))  # s1's original
    stats = StepStats("clip_filter")
    sims = clip_similarities(model, pairs, originals, edited, ItemCache(tmp_path / "c.sqlite"), MODEL, stats,
                             0.5)
    assert isinstance(sims[1], Failed) and all(isinstance(s, float) for s in sims[::2])
    decisions = clip_decisions(sims, pairs, lo=-1.0, hi=1.0)
    assert [(d["kept"], d["reason"]) for d in decisions] == [
        (True, ""), (False, "clip_model_error"), (True, "")]
    assert decisions[1]["clip_similarity"] is None and decisions[1]["detail"] == DETAIL
    assert stats.metrics()["rejects"] == {"model_error": 1} and (stats.items_in, stats.items_out) == (3, 2)


def test_vlm_call_errors_are_rejects_not_resampled(tiny_vlm_dir, tmp_path):
    from viper.backends.vlm import TransformersVLM

    vlm = TransformersVLM(str(tiny_vlm_dir), None, min_pixels=784, max_pixels=3136, batch_size=4)

    class RefusesRequest(Refuses):
        batch_size = 4

        def generate(self, requests):
            self._check(requests)
            return self.model.generate(requests)

    model = RefusesRequest(vlm, lambda req: req.images[0].width == 13)
    items = [{"key": f"k{i}", "image": Image.new("RGB", (13 if i == 2 else 32, 32), (30 * i, 0, 0))}
             for i in range(4)]
    stats = StepStats("captions")
    out, rejects = run_vlm_task(CaptionTask(8), items, model, seed=0, temperature=1.0, max_retries=2,
                                cache=ItemCache(tmp_path / "c.sqlite"), model=MODEL, stats=stats)
    errors = [r for r in rejects if r.reason == "model_error"]
    assert errors == [Reject("k2", "model_error", DETAIL)]
    # the others are captioned (or, from a random tiny model, unparsable): never lost to k2's error
    assert sorted([o["id"] for o in out] + [r.key for r in rejects]) == ["k0", "k1", "k2", "k3"]
    assert model.calls[:5] == [4, 1, 1, 1, 1] and model.refused == 2  # in its batch, alone; not resampled
    assert stats.metrics()["rejects"]["model_error"] == 1
