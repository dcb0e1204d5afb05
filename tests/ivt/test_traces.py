"""Teacher-trace helpers against literal values: the band, the path to the truth, the move in words, and an
SFT example that is exactly the loop's request with the target as reply."""

import json

import pytest
from PIL import Image

from viper.ivt.loop import refine_prompt
from viper.ivt.traces import correction_path, direction, in_band, sft_example, teacher_prompt


def test_band_is_inclusive():
    assert in_band(0.0, 0.0, 0.85) and in_band(0.85, 0.0, 0.85) and not in_band(0.851, 0.0, 0.85)


def test_path_walks_evenly_to_the_truth():
    assert correction_path((0, 0, 10, 10), (10, 20, 30, 40), 2) == [(5.0, 10.0, 20.0, 25.0), (10.0, 20.0, 30.0, 40.0)]
    assert correction_path((0, 0, 10, 10), (4, 4, 8, 8), 1) == [(4.0, 4.0, 8.0, 8.0)]
    with pytest.raises(ValueError):
        correction_path((0, 0, 1, 1), (0, 0, 1, 1), 0)


def test_direction_names_the_edges_that_move():
    assert direction((10, 10, 50, 50), (20, 10, 50, 40)) == "left edge right by 10 px, bottom edge up by 10 px"
    assert direction((0, 0, 5, 5), (0.5, 0, 5, 5)) == "no edge moves: the box already frames it"
    assert "left edge right by 10 px" in teacher_prompt("the red ball", (10, 10, 50, 50), (20, 10, 50, 50))


def test_sft_example_is_the_loops_request_with_the_target_reply():
    img = Image.new("RGB", (640, 480), (255, 255, 255))
    ex = sft_example(img, "the red ball", (160, 120, 480, 360), (0, 0, 320, 240), "It is too far right.", (56, 28))
    assert ex["prompt"] == refine_prompt("the red ball", (14.0, 7.0, 42.0, 21.0), (56, 28))
    assert json.loads(ex["completion"]) == {"check": "It is too far right.", "bbox_2d": [0, 0, 28, 14]}
    assert ex["image"].getpixel((300, 200)) != (255, 255, 255)  # the previous box is drawn
