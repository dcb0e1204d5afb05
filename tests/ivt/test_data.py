"""IVT's grounding tables: the split files round-trip, and a published-benchmark TSV that is missing, short,
or holds a bad box stops with a message naming the file and the fix."""

import base64
import io
from types import SimpleNamespace

import pytest
from PIL import Image

from viper.ivt import data
from viper.ivt.world import samples


def test_splits_round_trip_with_boxes_in_original_pixels(tmp_path):
    world = list(samples(12, 96, seed=0))
    counts = data.write_splits(tmp_path, data.rows_of_world(world))
    assert sum(counts.values()) == 12 and set(counts) == set(data.SPLITS)
    back = {s["id"]: s for split in data.SPLITS for s in data.read_split(tmp_path, split)}
    for s in world:
        b = back[s["id"]]
        assert b["box"] == tuple(float(c) for c in s["box"]) and b["expression"] == s["expression"]
        assert b["image"].tobytes() == s["image"].tobytes() and (b["width"], b["height"]) == (96, 96)


def _tsv(path, rows):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buf, format="PNG")
    img = base64.b64encode(buf.getvalue()).decode()
    lines = ["index\timage\texpression\tbbox\tsplit"]
    lines += [f"{i}\t{img}\t{expr}\t{bbox}\t{split}" for i, (expr, bbox, split) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def source(path, count=None, fmt="xywh"):
    return SimpleNamespace(name="refcocog", file=str(path), count=count, box_format=fmt)


def test_tsv_boxes_convert_from_xywh(tmp_path):
    _tsv(tmp_path / "a.tsv", [("the dog", "[2, 3, 10, 5]", "test"), ("the cat", "[0, 0, 40, 30]", "train")])
    rows = data.read_tsv(source(tmp_path / "a.tsv", count=2))
    assert [(r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows] == [(2, 3, 12, 8), (0, 0, 40, 30)]
    assert [r["id"] for r in rows] == ["refcocog-0", "refcocog-1"] and rows[0]["width"] == 40


@pytest.mark.parametrize("rows, count, message", [
    ([("x", "[1, 1, 2, 2]", "test")], 5, "has 1 rows, but the preset expects 5"),
    ([("x", "[1, 1, NaN, 2]", "test")], None, "four finite numbers"),
    ([("x", "[1, 1, 0, 2]", "test")], None, "has no area"),
    ([("x", "[1, 1]", "test")], None, "four finite numbers"),
    ([("x", "not a box", "test")], None, "not a list of four numbers"),
    ([("x", "[1, 1, 2, 2]", "dev")], None, "split 'dev'"),
])
def test_bad_tsv_rows_stop_with_the_reason(tmp_path, rows, count, message):
    _tsv(tmp_path / "a.tsv", rows)
    with pytest.raises(data.GroundingDataError, match=message):
        data.read_tsv(source(tmp_path / "a.tsv", count=count))


def test_a_missing_file_says_where_to_put_it(tmp_path):
    with pytest.raises(data.GroundingDataError, match=r"a\.tsv is missing.*columns index, image"):
        data.read_tsv(source(tmp_path / "a.tsv"))
