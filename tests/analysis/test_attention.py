"""Attention maps: the aggregation on hand-built attention (the answer looks at one image patch), and the real
tiny Qwen2.5-VL with its query/key projections zeroed, whose attention is then exactly uniform over the prefix."""

import numpy as np
import pytest
import torch
from PIL import Image

from viper.analysis.attention import answer_to_image, attention_map, overlay


def test_the_answer_looking_at_one_patch_lights_that_cell():
    # 10 tokens: 0-1 text, 2-7 image (a 2x3 grid in raster order), 8-9 the answer
    layers, heads, n = 2, 3, 10
    att = torch.zeros(layers, 1, heads, n, n)
    att[:, :, :, 8, 6] = 1.0  # every layer and head: answer token 8 attends only to image token 6 (row 1, col 1)
    att[:, :, :, 9, 6] = 0.5
    att[:, :, :, 9, 0] = 0.5  # half of token 9's attention goes to text, which the map leaves out
    heat = answer_to_image(list(att), range(2, 8), [8, 9], (2, 3))
    assert heat.shape == (2, 3) and heat.sum() == pytest.approx(1.0)
    assert heat[1, 1] == pytest.approx(1.0) and np.count_nonzero(heat) == 1
    with pytest.raises(ValueError, match="do not fill a 2x2 grid"):
        answer_to_image(list(att), range(2, 8), [8, 9], (2, 2))


def test_overlay_reddens_the_hot_cell_only():
    img = Image.new("RGB", (4, 2), (0, 0, 255))
    out = overlay(img, np.array([[0.0, 1.0]]))
    assert out.getpixel((0, 0)) == (0, 0, 255)
    r, g, b = out.getpixel((3, 1))
    assert r > 100 and b < 255


def test_real_model_attention_is_read_at_the_image_positions(tiny_vlm_dir):
    from transformers import AutoModelForImageTextToText

    from viper.backends.vlm import load_processor

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm_dir), attn_implementation="eager").eval()
    with torch.no_grad():  # zero queries and keys: every logit is 0, so attention is uniform over the prefix
        for layer in model.model.language_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj):
                proj.weight.zero_()
                if proj.bias is not None:
                    proj.bias.zero_()
    processor = load_processor(str(tiny_vlm_dir), None, 784, 112 * 56)  # the image keeps its size
    img = Image.new("RGB", (112, 56), (30, 120, 200))
    out = attention_map(model, processor, img, "What is in the picture?", max_new_tokens=4)
    assert out["grid"] == (2, 4)  # 112x56 -> 8x4 patches of 14 px -> 4x2 merged tokens, rows x cols = 2 x 4
    assert out["heat"].shape == (2, 4)
    assert out["heat"] == pytest.approx(np.full((2, 4), 1 / 8))
