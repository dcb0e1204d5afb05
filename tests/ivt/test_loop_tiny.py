"""The IVT loop on the tiny Qwen2.5-VL (random weights, real classes): whatever it answers, every step either
gives a box inside the image or ends the trajectory with a named failure; every step is cached."""

import pytest

from viper.backends.vlm import TransformersVLM
from viper.ivt.boxes import FAILURE_REASONS
from viper.ivt.loop import iterate
from viper.ivt.world import samples
from viper.store.cache import ItemCache
from viper.synth.runner import StepStats


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir):
    return TransformersVLM(str(tiny_vlm_dir), None, min_pixels=784, max_pixels=3136, batch_size=4)


def test_trajectories_are_boxes_or_named_failures_and_replay_from_the_cache(vlm, tmp_path):
    data = list(samples(6, 96, seed=0))
    cache, model = ItemCache(tmp_path / "items.sqlite"), {"id": "tiny", "revision": "test", "backend": "transformers"}
    kw = dict(min_pixels=784, max_pixels=3136, max_new_tokens=128, cache=cache, model=model, batch_size=4)
    first = iterate(vlm, data, 2, stats=StepStats("ivt"), **kw)
    for traj, s in zip(first, data):
        assert len(traj["ious"]) == len(traj["boxes"])
        if traj["failure"] is None:
            assert len(traj["boxes"]) == 3
        else:
            assert traj["failure"] in FAILURE_REASONS and traj["failed_at"] == len(traj["boxes"])
        for x1, y1, x2, y2 in traj["boxes"]:
            assert 0 <= x1 < x2 <= s["width"] and 0 <= y1 < y2 <= s["height"]
        assert all(0.0 <= v <= 1.0 for v in traj["ious"])
    # JSON-constrained replies: some step-0 box is usable, so a refinement ran on the image with it drawn
    assert any(t["boxes"] for t in first) and any(len(t["replies"]) > 1 for t in first)
    again = StepStats("ivt")
    assert iterate(vlm, data, 2, stats=again, **kw) == first
    assert again.model_calls == 0 and again.cache_misses == 0
