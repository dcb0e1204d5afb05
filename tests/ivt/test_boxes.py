"""IVT box arithmetic against literal values: parsing, frames, IoU, Acc@tau under both operators."""

import math

import pytest
from PIL import Image

from viper.ivt.boxes import BoxFailure, accuracy, check_box, clip, draw_box, input_size, iou, parse_box, rescale


@pytest.mark.parametrize("reply, box", [
    ('[{"bbox_2d": [10, 20, 30, 40], "label": "red ball"}]', (10.0, 20.0, 30.0, 40.0)),
    ('```json\n[\n  {"bbox_2d": [1.5, 2, 3, 4.25]}\n]\n```', (1.5, 2.0, 3.0, 4.25)),
    ('The ball is here: {"bbox_2d": [0, 0, 5, 5]} and nowhere else', (0.0, 0.0, 5.0, 5.0)),
    ('[{"label": "x"}, {"bbox_2d": [2, 2, 4, 4]}]', (2.0, 2.0, 4.0, 4.0)),
    # a raw control character in a free-text field (the tiny model writes them) is not a box error
    ('{"check": "too far\x08 left", "bbox_2d": [1, 2, 3, 4]}', (1.0, 2.0, 3.0, 4.0)),
])
def test_parse_box_reads_the_first_box(reply, box):
    assert parse_box(reply) == box


@pytest.mark.parametrize("reply, reason", [
    ("the red ball on the left", "no_box"),
    ('{"box": [1, 2, 3, 4]}', "no_box"),
    ('[{"bbox_2d": [1, 2, 3, 4]', "not_json"),
    ('{"bbox_2d": [1, 2, 3]}', "bad_coordinates"),
    ('{"bbox_2d": ["1", 2, 3, 4]}', "bad_coordinates"),
    ('{"bbox_2d": [true, 2, 3, 4]}', "bad_coordinates"),
    ('{"bbox_2d": [NaN, 2, 3, 4]}', "non_finite"),      # Python's json accepts NaN; the box does not
    ('{"bbox_2d": [1, 2, Infinity, 4]}', "non_finite"),
    ('{"bbox_2d": [30, 20, 10, 40]}', "inverted"),      # x2 < x1
    ('{"bbox_2d": [10, 20, 10, 40]}', "empty"),
])
def test_parse_box_refuses_with_a_reason(reply, reason):
    with pytest.raises(BoxFailure) as err:
        parse_box(reply)
    assert err.value.reason == reason


def test_iou_literals():
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou((0, 0, 2, 1), (0, 0, 1, 1)) == 0.5
    assert iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0  # touching edges share no area


def test_accuracy_at_the_boundary_depends_on_the_operator():
    ious = [0.5, 0.75, 0.49, None]  # None: a failed prediction, a miss
    assert accuracy(ious, 0.5, ">=") == 0.5
    assert accuracy(ious, 0.5, ">") == 0.25
    assert accuracy(ious, 0.75, ">=") == 0.25 and accuracy(ious, 0.75, ">") == 0.0
    assert accuracy([], 0.5) == 0.0
    with pytest.raises(ValueError):
        accuracy(ious, 0.5, "=>")


def test_model_frame_to_original_pixels():
    # 640x480 under min 784 / max 3136 pixels: Qwen2.5-VL sees 56x28 (sides multiples of 28)
    assert input_size(640, 480, 784, 3136) == (56, 28)
    assert rescale((14, 7, 42, 21), (56, 28), (640, 480)) == (160.0, 120.0, 480.0, 360.0)
    # within the bounds the input keeps the original size rounded to multiples of 28
    assert input_size(560, 420, 784, 1_003_520) == (560, 420)
    assert rescale((0, 0, 560, 420), (560, 420), (560, 420)) == (0, 0, 560, 420)


def test_clip_keeps_the_inside_and_refuses_a_box_outside():
    assert clip((-5, -5, 10, 10), 20, 20) == (0.0, 0.0, 10.0, 10.0)
    assert clip((15, 15, 30, 30), 20, 20) == (15.0, 15.0, 20.0, 20.0)
    with pytest.raises(BoxFailure) as err:
        clip((25, 25, 30, 30), 20, 20)
    assert err.value.reason == "outside"
    with pytest.raises(BoxFailure):
        check_box((0.0, 0.0, math.nan, 1.0))


def test_overlay_tints_only_the_box():
    img = draw_box(Image.new("RGB", (20, 20), (0, 0, 255)), (5, 5, 15, 15), outline=1)
    assert img.getpixel((0, 0)) == (0, 0, 255)  # outside: untouched
    r, g, b = img.getpixel((10, 10))
    assert r > 50 and b < 255  # inside: blended towards red, not replaced
    assert img.getpixel((5, 10)) == (255, 0, 0)  # the outline
