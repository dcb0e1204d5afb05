"""A seed folder with every kind of bad input: rejects with reasons, good images through unchanged."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from viper.sandbox import make_repo, metrics, run
from PIL import Image

from viper.synth.seeds import folder_inputs, image_id, ingest


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def scene(seed: int, size=(48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))


def write_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    good = scene(1)
    files = {
        "good.png": encode(good, "PNG"),
        "zz-copy-of-good.png": encode(good, "PNG"),
        "cmyk.jpg": encode(scene(2).convert("CMYK"), "JPEG", quality=95),
        "palette.png": encode(scene(3).convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "la.png": encode(Image.merge("LA", (scene(4).convert("L"), Image.new("L", (48, 40), 255))), "PNG"),
        "sixteen.png": encode(Image.fromarray((np.arange(48 * 40).reshape(40, 48) * 30).astype(np.uint16)), "PNG"),
        "big.png": encode(scene(5, (200, 100)), "PNG"),          # downscaled to max_side
        "bomb.png": encode(Image.new("1", (12000, 12000)), "PNG"),  # 144 MP in a few KB
        "zero.png": b"",
        "truncated.png": encode(scene(6), "PNG")[:300],
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4,
        "notes.txt": b"these are not pixels",
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    files["rotated.jpg"] = encode(scene(7, (48, 32)), "JPEG", exif=exif.tobytes(), quality=95)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return good


EXPECTED_REJECTS = {
    "zz-copy-of-good.png": "duplicate", "bomb.png": "too_many_pixels", "zero.png": "empty_file",
    "truncated.png": "truncated", "corrupt.jpg": "undecodable", "notes.txt": "not_an_image",
}


def test_ingest_rejects_and_normalises(tmp_path):
    good = write_folder(tmp_path / "in")
    seeds, rejects = ingest(folder_inputs(tmp_path / "in"), max_side=64, max_pixels=50_000_000)
    assert {r.source: r.reason for r in rejects} == EXPECTED_REJECTS
    by_source = {s.source: s.image for s in seeds}
    assert set(by_source) == {"good.png", "cmyk.jpg", "palette.png", "la.png", "sixteen.png", "big.png", "rotated.jpg"}
    assert all(img.mode == "RGB" and max(img.size) <= 64 for img in by_source.values())
    assert np.array_equal(np.asarray(by_source["good.png"]), np.asarray(good))  # unchanged pixels
    assert by_source["big.png"].size == (64, 32)
    assert by_source["rotated.jpg"].size == (32, 48)  # EXIF orientation applied
    sixteen = np.asarray(by_source["sixteen.png"])
    assert sixteen.max() == 255 and sixteen[..., 0].tolist() == sixteen[..., 1].tolist()
    assert [s.id for s in seeds] == sorted(s.id for s in seeds) and seeds[0].id == image_id(seeds[0].image)


@pytest.mark.e2e
def test_seeds_stage_records_rejects_and_succeeds(tmp_path):
    repo = make_repo(tmp_path / "repo", {"seeds.source": "folder", "seeds.max_reject_fraction": 0.6})
    write_folder(repo / "data" / "seed_images")
    run(["dvc", "repro", "synthesis/dvc.yaml:seeds"], repo)
    rejects = pd.read_parquet(repo / "data/seeds/rejects.parquet")
    assert dict(zip(rejects["key"], rejects["reason"])) == EXPECTED_REJECTS
    m = metrics(repo, "seeds")
    assert (m["items_in"], m["items_out"]) == (13, 7)


@pytest.mark.e2e
def test_too_many_rejects_fail_the_stage_with_counts_and_reasons(tmp_path):
    repo = make_repo(tmp_path / "repo", {"seeds.source": "folder", "seeds.max_reject_fraction": 0.2})
    write_folder(repo / "data" / "seed_images")
    with pytest.raises(AssertionError, match=r"6 of 13 items rejected \(46%\), above the limit of 20%"):
        run(["dvc", "repro", "synthesis/dvc.yaml:seeds"], repo)
