"""The vLLM backend against the real engine (vLLM's CPU build) and the tiny Qwen2.5-VL.

What the synthesis and benchmark stages rely on: 1, 2 and 4 images per request reach the model as
visual tokens; a seeded request gets the same reply whatever it is batched with or in what order;
greedy replies repeat; schema-constrained replies parse with the project's own parser; the engine
shuts down when asked.
"""

import random

import numpy as np
import psutil
import pytest
from PIL import Image

from viper.backends.requests import VLMRequest
from viper.backends.vllm_backend import VllmVLM, installed_device, request_input
from viper.prompts.parse import parse_json
from viper.synth.edit_plans import EditPlanTask
from viper.synth.refinements import RefineTask
from viper.synth.runner import derive_seed

from conftest import MAX_IMAGES

# 64x64 inputs with pixel bounds 784..3136 become 56x56: 4x4 patches of 14 px, merged 2x2 -> 4 tokens.
TOKENS_PER_IMAGE = 4


def picture(k: int) -> Image.Image:
    rng = np.random.default_rng(k)
    return Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))


def requests(n: int, images: int = 1, **kw) -> list[VLMRequest]:
    return [VLMRequest(f"describe picture {i} in detail", tuple(picture(i * 10 + j) for j in range(images)),
                       max_new_tokens=12, **kw) for i in range(n)]


def test_installed_build_is_the_cpu_one():
    assert installed_device() == "cpu"


@pytest.mark.parametrize("n_images", [1, 2, 4])
def test_images_per_request_reach_the_model(vlm, n_images):
    reqs = requests(3, images=n_images)
    texts = vlm.generate(reqs)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    # Look at what the engine was given: every image became its visual tokens in the prompt.
    pad = vlm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    out = vlm._llm.llm.generate([request_input(vlm.processor, reqs[0], vlm.max_images)], use_tqdm=False)[0]
    assert out.prompt_token_ids.count(pad) == n_images * TOKENS_PER_IMAGE


def test_images_change_the_reply(vlm):
    """The pixels matter (a broken image path would give every request the same text)."""
    texts = vlm.generate([VLMRequest("describe", (picture(k),), max_new_tokens=12) for k in range(6)])
    assert len(set(texts)) > 1


def test_seeded_replies_do_not_depend_on_batch_or_order(vlm):
    reqs = [VLMRequest(r.text, r.images, max_new_tokens=16, seed=derive_seed(0, "t", i), temperature=1.0)
            for i, r in enumerate(requests(8, images=1))]
    together = vlm.generate(reqs)
    order = list(range(8))
    random.Random(1).shuffle(order)
    shuffled = vlm.generate([reqs[i] for i in order])
    alone = [vlm.generate([r])[0] for r in reqs[:3]]
    assert [shuffled[order.index(i)] for i in range(8)] == together
    assert alone == together[:3]
    assert len(set(together)) > 1  # sampling is on: different seeds, different texts


def test_different_seed_different_sample(vlm):
    base = requests(1)[0]
    texts = {vlm.generate([VLMRequest(base.text, base.images, max_new_tokens=16, seed=s)])[0] for s in range(5)}
    assert len(texts) > 1


def test_greedy_is_deterministic(vlm):
    reqs = requests(5, images=2)
    first = vlm.generate(reqs)
    assert vlm.generate(reqs) == first
    assert vlm.generate(list(reversed(reqs))) == list(reversed(first))


@pytest.mark.parametrize("task", [RefineTask(320, 4, 60), EditPlanTask(400, 80)], ids=["refine", "edit_plan"])
def test_schema_constrained_replies_parse(vlm, task):
    """The synthesis steps' own schemas and parser: with the engine-level whitespace rule every reply
    closes within its token budget and validates."""
    images = (picture(1), picture(2)) if isinstance(task, RefineTask) else (picture(1),)
    reqs = [VLMRequest(f"caption {i}", images, schema=task.schema, max_new_tokens=task.max_new_tokens,
                       seed=derive_seed(0, task.name, i)) for i in range(8)]
    texts = vlm.generate(reqs)
    for text in texts:
        # no whitespace around the JSON (the engine-level rule); whitespace inside strings is content
        assert text == text.strip() and text[0] in "[{" and text[-1] in "]}"
        parse_json(text, task.schema)  # raises ParseError on anything that does not validate
    assert len(set(texts)) > 1


def test_judge_schema(vlm):
    from viper.prompts.templates import JUDGE_SCHEMA

    texts = vlm.generate([VLMRequest("judge", (picture(i), picture(i + 1)), schema=JUDGE_SCHEMA,
                                     max_new_tokens=160, seed=i) for i in range(4)])
    assert all(isinstance(parse_json(t, JUDGE_SCHEMA), dict) for t in texts)


def test_too_many_images_fail_before_the_engine(vlm):
    calls = vlm.calls
    with pytest.raises(ValueError, match="5 images"):
        vlm.generate([VLMRequest("x", tuple(picture(i) for i in range(5)))])
    assert vlm.calls == calls


def test_a_cuda_device_on_the_cpu_build_is_refused_clearly(tiny_vlm_dir, engine_settings):
    other = VllmVLM(str(tiny_vlm_dir), None, device="cuda", dtype="float32", min_pixels=784, max_pixels=3136,
                    settings=engine_settings)
    with pytest.raises(RuntimeError, match="models.device is 'cuda' but the installed vLLM is its cpu build"):
        other.generate(requests(1))
    assert other.engines_started == 0


def test_data_parallel_replicas_give_the_same_replies(tiny_vlm_dir, engine_settings, vlm):
    """vllm.data_parallel_size=2: two engine processes, each request answered as a single engine would."""
    from dataclasses import replace

    reqs = [VLMRequest(r.text, r.images, max_new_tokens=12, seed=derive_seed(1, "dp", i))
            for i, r in enumerate(requests(5, images=2))]
    single = vlm.generate(reqs)
    pool = VllmVLM(str(tiny_vlm_dir), None, device="cpu", dtype="float32", min_pixels=784, max_pixels=3136,
                   max_images=MAX_IMAGES, settings=replace(engine_settings, data_parallel_size=2))
    try:
        assert pool.generate(reqs) == single
        assert pool.generate(reqs[:1]) == single[:1]  # fewer requests than replicas
        assert pool.engines_started == 2
    finally:
        pool.close()
    assert pool._llm is None


def test_a_request_longer_than_the_context_fails_alone(vlm):
    """Refused while the batch is added; the engine goes on serving (the runner retries items alone)."""
    ok = requests(2)
    too_long = VLMRequest("word " * (vlm.settings.max_model_len + 100), max_new_tokens=4)
    expected = vlm.generate(ok)
    with pytest.raises(Exception):
        vlm.generate([ok[0], too_long, ok[1]])
    assert vlm.generate(ok) == expected


def test_a_call_that_fails_mid_run_leaves_nothing_queued(vlm, monkeypatch):
    """A failure after the requests were added (here vLLM's own progress-bar division by zero, forced by
    asking for the bar while tqdm is disabled, as TQDM_DISABLE=1 at process start does) must not leave
    them queued: the next call would return their outputs along with its own."""
    from functools import partial

    import tqdm
    import vllm.entrypoints.common.offline as offline

    import viper.backends.vllm_backend as backend

    ok = requests(3)
    expected = vlm.generate(ok)
    monkeypatch.setattr(offline, "tqdm", partial(tqdm.tqdm, disable=True))
    monkeypatch.setattr(backend, "_progress_bars", lambda: True)
    with pytest.raises(ZeroDivisionError):
        vlm.generate(ok)
    monkeypatch.undo()
    assert vlm.generate(ok[:1]) == expected[:1]
    assert vlm.generate(ok) == expected


def test_no_progress_bar_is_asked_for_when_tqdm_is_disabled(vlm, monkeypatch):
    """The benchmarks' sandbox sets TQDM_DISABLE=1 (tqdm reads it at import); vLLM's bar then divided by
    zero, so the backend must not ask for one."""
    from functools import partial

    import tqdm
    import vllm.entrypoints.common.offline as offline

    monkeypatch.setattr(offline, "tqdm", partial(tqdm.tqdm, disable=True))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert len(vlm.generate(requests(3))) == 3


def test_zz_close_shuts_the_engine_down(vlm):
    """Runs last (name): between evaluated models the stage closes one engine before starting the next."""
    vlm.generate(requests(1))

    def engine_processes() -> list[psutil.Process]:  # vLLM titles its processes VLLM::EngineCore, VLLM::Worker
        return [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM::")]

    running = engine_processes()
    assert running, "the engine core runs in child processes"
    vlm.close()
    _, alive = psutil.wait_procs(running, timeout=30)
    assert not alive and not engine_processes()
    assert vlm._llm is None
