"""A seed folder with every kind of bad input: rejects with reasons, good images through unchanged.

The end-to-end checks share one repository: real photographs (scikit-learn's two sample photos, as JPEG,
PNG and WebP files, cropped, rotated by EXIF, grey) mixed with every hostile kind below and a 1x1 PNG go
through the whole synthesis pipeline with real DVC (issue 10: item failures never crash a stage).
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from viper.sandbox import make_repo, metrics, ran_stages, run, set_params
from PIL import Image

from viper.stage import write_rejects
from viper.synth.runner import Reject
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


def test_degenerate_images_are_too_small_and_details_are_deterministic(tmp_path):
    folder = tmp_path / "in"
    write_folder(folder)
    (folder / "dot.png").write_bytes(encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"))
    (folder / "strip.png").write_bytes(encode(scene(8, (200, 20)), "PNG"))  # 64x6 once downscaled
    (folder / "small-but-fine.png").write_bytes(encode(scene(9, (16, 16)), "PNG"))
    runs = [ingest(folder_inputs(folder), max_side=64, max_pixels=50_000_000, min_side=16) for _ in range(2)]
    seeds, rejects = runs[0]
    assert {r.source: r.reason for r in rejects} == {**EXPECTED_REJECTS, "dot.png": "too_small",
                                                     "strip.png": "too_small"}
    assert "small-but-fine.png" in {s.source for s in seeds}
    details = {r.source: r.detail for r in rejects}
    assert details["dot.png"] == "1x1, shorter side below min_side 16"
    assert details["strip.png"] == "200x20 becomes 64x6 at max_side 64, shorter side below min_side 16"
    # PIL names the in-memory file by its address ("<_io.BytesIO object at 0x...>"): not in a detail
    assert details["corrupt.jpg"] == "UnidentifiedImageError: cannot identify image file <_io.BytesIO object>"
    assert not [d for d in details.values() if re.search(ADDRESS, d) or str(tmp_path) in d]
    tables = []
    for i, (_, rej) in enumerate(runs):
        write_rejects(tmp_path / f"rejects{i}.parquet", [Reject(r.source, r.reason, r.detail) for r in rej])
        tables.append((tmp_path / f"rejects{i}.parquet").read_bytes())
    assert tables[0] == tables[1]


def write_photos(folder) -> None:
    """Ordinary photographs as a user has them, plus a thin banner crop and a 1x1 PNG (too small)."""
    from sklearn.datasets import load_sample_image

    china, flower = (Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display"
    files = {
        "photos/china.jpg": encode(china, "JPEG", quality=90),
        "photos/flower.png": encode(flower, "PNG"),
        "photos/china-crop-exif.jpg": encode(china.crop((100, 40, 420, 300)), "JPEG", exif=exif.tobytes(),
                                             quality=90),
        "photos/flower-grey.webp": encode(flower.convert("L").rotate(180), "WEBP", quality=80),
        "photos/flower-detail.jpg": encode(flower.crop((200, 100, 440, 340)).resize((120, 120)), "JPEG"),
        "photos/flower-banner.jpg": encode(flower.crop((0, 200, 640, 230)), "JPEG"),  # 64x3 at max_side 64
        "tiny.png": encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"),
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


ADDRESS = r"\b0x[0-9a-fA-F]+"  # what an object's repr adds: differs between identical runs
REAL_REJECTS = {**EXPECTED_REJECTS, "tiny.png": "too_small", "photos/flower-banner.jpg": "too_small"}
SYNTHESIS = ["seeds", "captions", "reconstructions", "refinements", "edit_plans", "edited_pairs", "viper10k"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    """One repository, seeded from a folder of photos and hostile files, built once by `dvc repro`."""
    repo = make_repo(tmp_path_factory.mktemp("bad-input") / "repo", {"seeds.source": "folder"})
    write_folder(repo / "data" / "seed_images")
    write_photos(repo / "data" / "seed_images")
    out = run(["dvc", "repro", "synthesis/dvc.yaml"], repo)
    return {"path": repo, "out": out}


@pytest.mark.e2e
def test_photos_and_hostile_files_go_through_the_whole_synthesis(hostile):
    repo = hostile["path"]
    assert set(SYNTHESIS) <= ran_stages(hostile["out"])
    rejects = pd.read_parquet(repo / "data/seeds/rejects.parquet")
    assert dict(zip(rejects["key"], rejects["reason"])) == REAL_REJECTS
    m = metrics(repo, "seeds")
    assert (m["items_in"], m["items_out"]) == (20, 20 - len(REAL_REJECTS))
    manifest = json.loads((repo / "data/viper10k/manifest.json").read_text())
    assert manifest["subsets"]["caption_refining"]["count"] > 0
    # Every step that can lose items has a rejects table, counted in its metrics, and every reject says why.
    for step in SYNTHESIS[:-1]:
        table = pd.read_parquet(repo / "data" / step / "rejects.parquet")
        assert list(table.columns) == ["key", "reason", "detail", "raw"], step
        assert table["reason"].str.len().gt(0).all(), step
        assert not table["detail"].str.contains(ADDRESS + "|/tmp/").any(), step
        assert sum(metrics(repo, step)["rejects"].values()) == len(table), step
    decisions = pd.read_parquet(repo / "data/viper10k/decisions.parquet")
    assert decisions.loc[~decisions["kept"], "reason"].str.len().gt(0).all()
    plans = pd.read_parquet(repo / "data/edit_plans/edit_plans.parquet")
    assert metrics(repo, "edited_pairs")["items_in"] == len(plans)


@pytest.mark.e2e
def test_seeds_rerun_gives_byte_identical_rejects(hostile):
    repo = hostile["path"]
    before = {p.name: p.read_bytes() for p in (repo / "data/seeds").iterdir()}
    out = run(["dvc", "repro", "--force", "--single-item", "synthesis/dvc.yaml:seeds"], repo)
    assert ran_stages(out) == {"seeds"}  # a new process: object addresses differ, details must not
    assert {p.name: p.read_bytes() for p in (repo / "data/seeds").iterdir()} == before


@pytest.mark.e2e
def test_too_many_rejects_fail_the_stage_with_counts_and_reasons(hostile):
    """Last of the module: DVC removes a stage's outputs before running it, so this leaves no data/seeds."""
    repo = hostile["path"]
    params = (repo / "params.yaml").read_text()
    set_params(repo, {"seeds.max_reject_fraction": 0.2})
    try:
        with pytest.raises(AssertionError, match=r"8 of 20 items rejected \(40%\), above the limit of 20%"):
            run(["dvc", "repro", "synthesis/dvc.yaml:seeds"], repo)
    finally:
        (repo / "params.yaml").write_text(params)
