
import pytest
from PIL import Image

from viper.backends.vlm import TransformersVLM, VLMRequest
from viper.prompts import templates
from viper.prompts.parse import parse_json


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir):
    return TransformersVLM(str(tiny_vlm_dir), None, min_pixels=784, max_pixels=3136, batch_size=4)


def images(n):
    return [Image.new("RGB", (64, 64), (40 * i, 255 - 30 * i, 90)) for i in range(n)]


def test_grammar_constrained_outputs_parse(vlm):
    schema = templates.edit_plan_schema(40)
    reqs = [VLMRequest("plan an edit", (img,), schema=schema, max_new_tokens=400, seed=i)
            for i, img in enumerate(images(5))]
    for text in vlm.generate(reqs):
        plan = parse_json(text, schema)
        assert plan["category"] in templates.EDIT_CATEGORIES


def test_sampling_does_not_depend_on_batch(vlm):
    imgs = images(5)
    reqs = [VLMRequest("describe", (img,), max_new_tokens=12, seed=100 + i) for i, img in enumerate(imgs)]
    together = vlm.generate(reqs)
    alone = [vlm.generate([r])[0] for r in reqs[2:4]]
    assert together[2:4] == alone
    assert len(set(together)) > 1  # different seeds and images give different text


def test_two_images_and_greedy_is_repeatable(vlm):
    req = VLMRequest("compare", tuple(images(2)), max_new_tokens=8)
    calls = vlm.calls
    assert vlm.generate([req]) == vlm.generate([req])
    assert vlm.calls == calls + 2


def test_image_tokens_are_never_generated(vlm):
    tok = vlm.processor.tokenizer
    reqs = [VLMRequest("x", (img,), max_new_tokens=48, seed=i) for i, img in enumerate(images(4))]
    for text in vlm.generate(reqs):
        assert "<|image_pad|>" not in text and "<|vision_start|>" not in text
    assert tok.convert_tokens_to_ids("<|image_pad|>") in vlm.suppress


def test_missing_model_message(tmp_path):
    with pytest.raises(RuntimeError, match="dvc repro models"):
        TransformersVLM(str(tmp_path / "nope"), None, min_pixels=784, max_pixels=3136)
