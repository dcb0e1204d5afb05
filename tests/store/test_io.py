import hashlib

import pytest
from PIL import Image

from viper.store.io import atomic_dir, png_bytes, read_shards, write_shards


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def samples():
    for i in range(5):
        img = Image.new("RGB", (8, 8), (i * 40, 0, 0))
        yield {"__key__": f"k{i}", "png": png_bytes(img), "json": {"b": i, "a": [1, 2]}}


def test_shards_are_byte_identical_and_readable_by_webdataset(tmp_path):
    a = write_shards(tmp_path / "a", samples(), shard_size=2)
    b = write_shards(tmp_path / "b", samples(), shard_size=2)
    assert [p.name for p in a] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert [sha(p) for p in a] == [sha(p) for p in b]
    got = list(read_shards(tmp_path / "a"))
    assert [s["__key__"] for s in got] == [f"k{i}" for i in range(5)]
    assert got[3]["json"] == {"a": [1, 2], "b": 3}
    assert got[3]["png"].getpixel((0, 0)) == (120, 0, 0)


def test_shard_keys_must_not_contain_dots(tmp_path):
    with pytest.raises(ValueError, match="must not contain"):
        write_shards(tmp_path, [{"__key__": "a.b", "json": {}}], 10)


def test_atomic_dir_leaves_old_output_on_failure(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "f").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("killed")
    assert (out / "f").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_webdataset_reads_our_shards_like_our_reader(tmp_path):
    import webdataset as wds

    write_shards(tmp_path, samples(), shard_size=2)
    urls = sorted(str(p) for p in tmp_path.glob("*.tar"))
    theirs = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    ours = list(read_shards(tmp_path))
    assert [s["__key__"] for s in theirs] == [s["__key__"] for s in ours]
    assert [s["json"] for s in theirs] == [s["json"] for s in ours]
    assert [s["png"].tobytes() for s in theirs] == [s["png"].tobytes() for s in ours]


def test_shard_images_index_the_shards_and_decode_one_image_when_asked(tmp_path):
    from viper.records import ShardImages, load_shard_images
    from viper.store.io import ShardError, ShardWriter

    with ShardWriter(tmp_path / "s", shard_size=2) as writer:
        for sample in samples():
            writer.write(sample)
    assert writer.counts == [2, 2, 1] and [p.name for p in writer.paths] == [
        "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    lazy, eager = ShardImages(tmp_path / "s"), load_shard_images(tmp_path / "s")
    assert list(lazy) == list(eager) == [f"k{i}" for i in range(5)] and len(lazy) == 5 and "k4" in lazy
    for k, (img, meta) in eager.items():
        assert lazy.meta(k) == meta and lazy.image(k).tobytes() == img.tobytes()

    # the index holds offsets, not pixels: a member damaged after indexing is reported when it is read
    shard = writer.paths[1]
    data = bytearray(shard.read_bytes())
    start = data.find(b"\x89PNG")
    data[start:start + 16] = bytes(16)
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="shard-000001.tar: unreadable member"):
        lazy.image("k2")
    assert lazy.image("k4").getpixel((0, 0)) == (160, 0, 0)
