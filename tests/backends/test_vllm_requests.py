"""The vLLM backend up to the engine call: prompts, inputs, sampling and engine arguments (no vLLM needed)."""

import sys

import pytest
from PIL import Image

from viper.backends.requests import VLMRequest
from viper.config import load_params
from viper.backends.vlm import load_processor
from viper.backends.vllm_backend import (
    VllmVLM,
    EngineSettings,
    engine_kwargs,
    prompt_text,
    request_input,
    sampling_kwargs,
)

IMAGE_SLOT = "<|vision_start|><|image_pad|><|vision_end|>"
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir):  # the session fixture builds the tiny VLM with build_tiny_vlm(dir, seed=0)
    return load_processor(str(tiny_vlm_dir), None, 784, 3136)


def image(mode="RGB", color=(200, 30, 90)):
    return Image.new(mode, (32, 32), color)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_prompt_has_one_slot_per_image_before_the_question(processor, n):
    text = prompt_text(processor, VLMRequest("what changed?", tuple(image() for _ in range(n))))
    assert text.count(IMAGE_SLOT) == n
    assert text.count("<|image_pad|>") == n
    if n:
        assert text.rindex(IMAGE_SLOT) < text.index("what changed?")
    assert text.endswith("<|im_start|>assistant\n")


def test_request_input_one_image(processor):
    req = VLMRequest("describe", (image(),))
    inp = request_input(processor, req)
    assert inp["prompt"] == prompt_text(processor, req)
    assert inp["multi_modal_data"]["image"] == [req.images[0]]


def test_request_input_two_images_converted_to_rgb(processor):
    rgba = image("RGBA", (255, 0, 0, 0))  # fully transparent red: white once composited, like HF
    gray = image("L", 77)
    imgs = request_input(processor, VLMRequest("compare", (rgba, gray)))["multi_modal_data"]["image"]
    assert [im.mode for im in imgs] == ["RGB", "RGB"]
    assert imgs[0].getpixel((0, 0)) == (255, 255, 255)
    assert imgs[1].getpixel((0, 0)) == (77, 77, 77)


def test_request_input_text_only_has_no_images(processor):
    assert "multi_modal_data" not in request_input(processor, VLMRequest("hello"))


def test_too_many_images_is_refused(processor):
    with pytest.raises(ValueError, match=r"3 images.*at most 2.*max_images"):
        request_input(processor, VLMRequest("x", (image(),) * 3))
    assert len(request_input(processor, VLMRequest("x", (image(),) * 4), max_images=4)["multi_modal_data"]["image"]) == 4


def test_sampling_kwargs_greedy():
    kw = sampling_kwargs(VLMRequest("x", max_new_tokens=12, temperature=0.7))
    assert kw["temperature"] == 0.0 and kw["seed"] is None
    assert kw["max_tokens"] == 12 and kw["top_p"] == 1.0
    assert kw["structured_outputs"] is None and "logit_bias" not in kw


def test_sampling_kwargs_sampled_keeps_seed_and_temperature():
    kw = sampling_kwargs(VLMRequest("x", seed=1234, temperature=0.7), suppress_ids=[5, 9])
    assert kw["temperature"] == 0.7 and kw["seed"] == 1234
    assert kw["logit_bias"] == {5: -100.0, 9: -100.0}


def test_sampling_kwargs_schema():
    # vLLM ignores a per-request whitespace flag; the rule is set once on the engine (engine_kwargs)
    assert sampling_kwargs(VLMRequest("x", schema=SCHEMA))["structured_outputs"] == {"json": SCHEMA}


def test_engine_kwargs():
    kw = engine_kwargs("Qwen/Qwen2.5-VL-7B-Instruct", "abc123", "bfloat16", 7, False, 784, 3136)
    assert kw["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert kw["revision"] == kw["tokenizer_revision"] == "abc123"
    assert kw["dtype"] == "bfloat16" and kw["seed"] == 7
    assert kw["trust_remote_code"] is False
    assert kw["limit_mm_per_prompt"] == {"image": 2, "video": 0}
    assert kw["mm_processor_kwargs"] == {"min_pixels": 784, "max_pixels": 3136}
    assert kw["structured_outputs_config"] == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert kw["tensor_parallel_size"] == 1 and kw["gpu_memory_utilization"] == 0.9
    assert "max_model_len" not in kw and "kv_cache_memory_bytes" not in kw


def test_engine_kwargs_from_params(root):
    """The `vllm` params section reaches the engine: the KV cache is sized explicitly (on the CPU build
    the memory fraction would be a fraction of host RAM), eager mode and context length as set."""
    tiny = EngineSettings.of(load_params(root / "params.yaml").vllm)
    kw = engine_kwargs("m", None, "float32", 0, False, 1, 2, max_images=4, settings=tiny)
    assert kw["kv_cache_memory_bytes"] == int(tiny.kv_cache_gib * 2**30) and "gpu_memory_utilization" not in kw
    assert kw["enforce_eager"] is True and kw["max_model_len"] == tiny.max_model_len
    assert kw["limit_mm_per_prompt"]["image"] == 4
    paper = EngineSettings.of(load_params(root / "presets" / "paper-7b.yaml").vllm)
    kw = engine_kwargs("m", "rev", "bfloat16", 0, False, 1, 2, settings=paper)
    assert kw["gpu_memory_utilization"] == 0.9 and "kv_cache_memory_bytes" not in kw
    assert kw["enforce_eager"] is False and kw["tensor_parallel_size"] == paper.tensor_parallel_size


@pytest.fixture
def vlm(tiny_vlm_dir, monkeypatch):
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    model = VllmVLM(str(tiny_vlm_dir), None, min_pixels=784, max_pixels=3136)
    assert "vllm" not in sys.modules  # the engine (and vLLM) load lazily
    return model


def test_construction_does_not_import_vllm(vlm, tiny_vlm_dir):
    assert vlm.model_id == str(tiny_vlm_dir) and vlm.revision is None
    assert vlm.calls == 0 and vlm.batch_size == 64
    assert vlm.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") in vlm.suppress


def test_unknown_device_is_refused(tiny_vlm_dir):
    with pytest.raises(ValueError, match="'cuda'.*'cpu'.*'mps'"):
        VllmVLM(str(tiny_vlm_dir), min_pixels=784, max_pixels=3136, device="mps")


def test_generate_without_vllm_says_how_to_install(vlm, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(RuntimeError, match=r"make env-vllm.*vlm\.backend: transformers"):
        vlm.generate([VLMRequest("hi", (image(),))])
    assert vlm.calls == 0
