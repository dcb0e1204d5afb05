import io

import numpy as np
import pytest
from PIL import Image

from viper.synth.seeds import image_id, ingest, normalise, synthetic_seeds


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_synthetic_seeds_are_deterministic_and_varied():
    a = list(synthetic_seeds(8, 64, seed=0))
    b = list(synthetic_seeds(8, 64, seed=0))
    assert [image_id(i) for _, i in a] == [image_id(i) for _, i in b]
    assert len({image_id(i) for _, i in a}) == 8
    assert [image_id(i) for _, i in synthetic_seeds(8, 64, seed=1)] != [image_id(i) for _, i in a]


def test_ingest_dedupes_by_content_and_records_reasons():
    red = Image.new("RGB", (32, 32), (255, 0, 0))
    blue = Image.new("RGB", (32, 32), (0, 0, 255))
    inputs = [("red.png", png(red)), ("blue.png", png(blue)), ("red-copy.png", png(red)),
              ("empty.png", b""), ("junk.jpg", b"not an image at all")]
    seeds, rejects = ingest(inputs, max_side=64, max_pixels=10_000)
    assert [s.source for s in seeds] == sorted(["red.png", "blue.png"], key=lambda n: image_id(
        red if n == "red.png" else blue))
    assert {(r.source, r.reason) for r in rejects} == {
        ("red-copy.png", "duplicate"), ("empty.png", "empty_file"), ("junk.jpg", "undecodable")}


def test_pixel_limit_and_normalisation():
    big = Image.new("RGB", (200, 100), (0, 255, 0))
    _, rejects = ingest([("big.png", png(big))], max_side=64, max_pixels=10_000)
    assert [r.reason for r in rejects] == ["too_many_pixels"]
    seeds, _ = ingest([("big.png", png(big))], max_side=64, max_pixels=100_000)
    assert seeds[0].image.size == (64, 32) and seeds[0].image.mode == "RGB"
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))  # fully transparent -> white background
    assert np.asarray(normalise(rgba, 64))[0, 0].tolist() == [255, 255, 255]


def test_decoding_a_seed_leaves_pils_bomb_guard_for_everyone_else():
    """The seeds limit replaces PIL's decompression-bomb check for seed files only: the process-wide guard
    (which Viper10K shard reading relies on) must be the same after ingesting, and after a rejected input."""
    from viper.synth.seeds import InputRejected, open_image

    guard = Image.MAX_IMAGE_PIXELS
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    assert open_image(buf.getvalue(), max_pixels=10_000).size == (32, 32)
    with pytest.raises(InputRejected, match="too_many_pixels"):
        open_image(buf.getvalue(), max_pixels=100)
    assert guard is not None and Image.MAX_IMAGE_PIXELS == guard
