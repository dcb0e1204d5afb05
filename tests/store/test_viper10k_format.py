"""The Viper10K reader trusts nothing: checksums, tar members and records are checked before use, and a bad
shard fails with a message naming it, without writing anything anywhere."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.store.viper10k_data import caption_samples, image, make_dataset, operation_samples
from viper.store.io import sha256_file, write_json
from viper.store.viper10k import FORMAT, SCHEMA, DatasetError, Viper10K, build_manifest, card
from viper.synth.viper10k import write_subset

ROOT = Path(__file__).resolve().parents[2]


def resign(root: Path) -> None:
    """Make the manifest agree with whatever the shards now hold (a hostile publisher would)."""
    man = json.loads((root / "manifest.json").read_text())
    for subset, sub in man["subsets"].items():
        for e in sub["shards"]:
            e["sha256"] = sha256_file(root / subset / e["file"])
    write_json(root / "manifest.json", man)


def hostile_shard(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> None:
    """Rewrite a shard with one good sample followed by `member`."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for ext, value in (("json", json.dumps({"id": "img0", "caption": "c", "refinements": []}).encode()),
                           ("png", image(0))):
            info = tarfile.TarInfo(f"img0.{ext}")
            info.size = len(value)
            tar.addfile(info, io.BytesIO(value))
        member.size = len(data) if member.isreg() else 0
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_all(root: Path) -> dict[str, int]:
    return Viper10K(root).check_all()


def test_a_written_dataset_reads_back_with_its_counts(tmp_path):
    root = make_dataset(tmp_path / "v")
    ds = Viper10K(root)
    assert ds.counts() == {"caption_refining": 5, "visual_operation": 3} == ds.check_all()
    first = next(ds.samples("visual_operation"))
    assert first["json"]["instruction"] == "make square 0 red" and first["edited.png"].size == (8, 8)
    assert ds.manifest["format"] == FORMAT and ds.manifest["schema"] == SCHEMA


def test_card_documents_every_field_count_and_checksum(tmp_path):
    root = make_dataset(tmp_path / "v")
    man = json.loads((root / "manifest.json").read_text())
    text = card(man)
    for subset in SCHEMA:
        for field in SCHEMA[subset]["json"]["properties"]:
            assert f"`json.{field}`" in text
        for ext in SCHEMA[subset]["images"]:
            assert f"`{ext}`" in text
        for e in man["subsets"][subset]["shards"]:
            assert e["sha256"] in text
    assert "| caption_refining | 5 | 3 |" in text and "added by `viper publish`" in text
    released = card({**man, "release": {"git_revision": "abc123", "license": "CC-BY-4.0",
                                        "stage_params": {"captions": {"captions": {"max_new_tokens": 48}}}}})
    assert "License: CC-BY-4.0" in released and "`abc123`" in released and '"max_new_tokens": 48' in released


def test_corrupted_shard_is_named(tmp_path):
    root = make_dataset(tmp_path / "v")
    shard = root / "caption_refining" / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"shard caption_refining/shard-000001\.tar is corrupt: sha256"):
        Viper10K(root)


def test_truncated_shard_is_named_by_checksum_and_by_tar_reading(tmp_path):
    root = make_dataset(tmp_path / "v")
    shard = root / "visual_operation" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:1500])
    with pytest.raises(DatasetError, match=r"visual_operation/shard-000000\.tar is corrupt"):
        Viper10K(root)
    resign(root)  # checksums agree now: the tar reader itself must notice
    with pytest.raises(DatasetError, match=r"shard-000000\.tar: truncated"):
        read_all(root)


def test_missing_and_unlisted_shards_are_named(tmp_path):
    root = make_dataset(tmp_path / "v")
    (root / "caption_refining" / "shard-000002.tar").rename(tmp_path / "elsewhere.tar")
    with pytest.raises(DatasetError, match=r"caption_refining/shard-000002\.tar listed in manifest.json is missing"):
        Viper10K(root)
    (tmp_path / "elsewhere.tar").rename(root / "caption_refining" / "shard-000002.tar")
    (root / "visual_operation" / "shard-000009.tar").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"visual_operation/shard-000009\.tar are not in manifest.json"):
        Viper10K(root)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_dataset(tmp_path / "data" / "v")
    if kind == "dotdot":
        member, data, message = tarfile.TarInfo("../../outside/evil.json"), b"{}", "has a '..' component"
    elif kind == "absolute":
        member, data, message = tarfile.TarInfo(str(outside / "evil.json")), b"{}", "is an absolute path"
    elif kind == "symlink":
        member, data, message = tarfile.TarInfo("img1.json"), b"", "is a symbolic link"
        member.type, member.linkname = tarfile.SYMTYPE, str(outside / "target.json")
    else:
        member, data, message = tarfile.TarInfo("img1.json"), b"", "is a hard link"
        member.type, member.linkname = tarfile.LNKTYPE, "../../outside/target.json"
    hostile_shard(root / "caption_refining" / "shard-000000.tar", member, data)
    resign(root)
    before = snapshot(tmp_path)
    with pytest.raises(DatasetError, match=rf"caption_refining/shard-000000\.tar: member .* {message}") as err:
        read_all(root)
    assert "unsafe to extract" in str(err.value)
    assert snapshot(tmp_path) == before  # nothing written, inside or outside the data directory
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    (lambda s: s["json"].pop("caption"), r"record field <record>: 'caption' is a required property"),
    (lambda s: s["json"].update(refinements="not a list"), r"record field refinements: 'not a list' is not of type 'array'"),
    (lambda s: s["json"].update(extra=1), r"Additional properties are not allowed \('extra'"),
    (lambda s: s["json"].update(id="someone-else"), r"record id is 'someone-else', not the sample key"),
    (lambda s: s.update({"txt": b"hi"}), r"has members \['json', 'png', 'txt'\], expected \['json', 'png'\]"),
    (lambda s: s.pop("png"), r"has members \['json'\], expected \['json', 'png'\]"),
])
def test_records_are_schema_checked(tmp_path, change, message):
    root = tmp_path / "v"
    samples = list(caption_samples(3))
    change(samples[1])
    entries = {"caption_refining": write_subset(root / "caption_refining", iter(samples), 10),
               "visual_operation": write_subset(root / "visual_operation", operation_samples(1), 10)}
    write_json(root / "manifest.json", build_manifest(entries, {}, {}))
    with pytest.raises(DatasetError, match=r"caption_refining/shard-000000\.tar: sample 'img1'.*" + message):
        read_all(root)


def test_an_undecodable_image_and_a_wrong_count_are_named(tmp_path):
    root = tmp_path / "v"
    samples = list(operation_samples(2))
    samples[0]["edited.png"] = b"\x89PNG not really"
    entries = {"caption_refining": write_subset(root / "caption_refining", caption_samples(1), 10),
               "visual_operation": write_subset(root / "visual_operation", iter(samples), 10)}
    write_json(root / "manifest.json", build_manifest(entries, {}, {}))
    with pytest.raises(DatasetError, match=r"visual_operation/shard-000000\.tar: unreadable member"):
        read_all(root)
    make_dataset(tmp_path / "w")
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    man["subsets"]["caption_refining"]["shards"][0]["count"] = 7
    man["subsets"]["caption_refining"]["count"] = 10  # consistent totals: only reading the shard can tell
    write_json(tmp_path / "w" / "manifest.json", man)
    with pytest.raises(DatasetError, match=r"shard-000000\.tar holds 2 samples, manifest.json says 7"):
        read_all(tmp_path / "w")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format="viper10k/0"), "has format 'viper10k/0', this code reads 'viper10k/1'"),
    (lambda m: m["subsets"]["caption_refining"]["shards"][0].update(file="../../x.tar"),
     r"malformed at subsets/caption_refining/shards/0/file: '../../x.tar' does not match"),
    (lambda m: m["subsets"].pop("visual_operation"), "malformed at subsets: 'visual_operation' is a required property"),
    (lambda m: m.update(subsets=["caption_refining"]), r"malformed at subsets: \['caption_refining'\] is not of type"),
    (lambda m: m["subsets"]["visual_operation"].update(count=True), "malformed at subsets/visual_operation/count: True"),
    (lambda m: m["subsets"]["visual_operation"].update(count=999), "says 'visual_operation' has 999 samples but its "
                                                                   "shards add up to 3"),
    (lambda m: m["subsets"]["caption_refining"]["shards"].append(m["subsets"]["caption_refining"]["shards"][0]),
     "lists a shard of 'caption_refining' twice"),
    (lambda m: m["subsets"]["caption_refining"]["shards"][0].pop("sha256"), "'sha256' is a required property"),
    (lambda m: m.update(release={"license": "MIT"}), "malformed at release: 'git_revision' is a required property"),
])
def test_bad_manifests_are_refused_before_any_shard_is_opened(tmp_path, edit, message):
    root = make_dataset(tmp_path / "v")
    man = json.loads((root / "manifest.json").read_text())
    edit(man)
    write_json(root / "manifest.json", man)
    with pytest.raises(DatasetError, match=message):
        Viper10K(root)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="manifest.json is not valid JSON"):
        Viper10K(root)
    with pytest.raises(DatasetError, match="no such directory"):
        Viper10K(tmp_path / "nowhere")


def rewrite_member(root: Path, name: str, data: bytes, subset: str = "caption_refining") -> None:
    """Replace one member's bytes in the first shard of a subset, keeping everything else."""
    shard = root / subset / "shard-000000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, old in members:
            new = data if m.name == name else old
            m.size = len(new)
            tar.addfile(m, io.BytesIO(new))
    resign(root)


def test_bombs_and_disguised_files_are_refused_not_decoded(tmp_path):
    from PIL import Image as PILImage

    root = make_dataset(tmp_path / "v")
    huge = io.BytesIO()
    PILImage.new("1", (20000, 10000)).save(huge, format="PNG")  # 200 M pixels in a few hundred KB
    rewrite_member(root, "img0.png", huge.getvalue())
    with pytest.raises(DatasetError, match=r"shard-000000\.tar: unreadable member \(.*(Decompression|exceeds limit)"):
        read_all(root)
    gif = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(gif, format="GIF")
    rewrite_member(root, "img0.png", gif.getvalue())
    with pytest.raises(DatasetError, match=r"unreadable member \(UnidentifiedImageError"):
        read_all(root)
    rewrite_member(make_dataset(tmp_path / "w"), "img0.json", b"[" * 100000)
    with pytest.raises(DatasetError, match=r"unreadable member \(RecursionError"):
        read_all(tmp_path / "w")


def test_sparse_members_and_oversized_samples_are_refused(tmp_path):
    root = make_dataset(tmp_path / "v")
    member = tarfile.TarInfo("img1.json")
    member.type = tarfile.GNUTYPE_SPARSE
    hostile_shard(root / "caption_refining" / "shard-000000.tar", member)
    resign(root)
    with pytest.raises(DatasetError, match=r"member 'img1.json' is not a plain file \(tar type b'S'\)"):
        read_all(root)
    root = make_dataset(tmp_path / "w")
    shard = root / "caption_refining" / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(20):
            info = tarfile.TarInfo(f"img0.x{i}")
            tar.addfile(info, io.BytesIO(b""))
    resign(root)
    with pytest.raises(DatasetError, match=r"sample 'img0' has over 16 members"):
        read_all(root)


def test_a_key_repeated_in_another_shard_is_refused(tmp_path):
    root = tmp_path / "v"
    samples = list(caption_samples(3))
    samples[2] = samples[0]
    entries = {"caption_refining": write_subset(root / "caption_refining", iter(samples), 2),
               "visual_operation": write_subset(root / "visual_operation", operation_samples(1), 2)}
    write_json(root / "manifest.json", build_manifest(entries, {}, {}))
    with pytest.raises(DatasetError, match=r"shard-000001\.tar: sample 'img0' also appears in an earlier shard"):
        read_all(root)


def test_a_training_stage_stops_on_a_bad_shard_with_one_line_and_writes_nothing(tmp_path):
    root = make_dataset(tmp_path / "v")
    shard = root / "visual_operation" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-512])
    out = tmp_path / "cold_start"
    proc = subprocess.run([sys.executable, "stages/cold_start.py", "--dataset", str(root), "--models",
                           str(tmp_path / "models"), "--out", str(out), "--metrics", str(tmp_path / "m.json")],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "VIPER_LOG": "WARNING"})
    assert proc.returncode == 1
    assert "visual_operation/shard-000001.tar is corrupt" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_hf_datasets_and_webdataset_read_the_shards_like_the_manifest_says(tmp_path):
    import webdataset as wds
    from datasets import load_dataset

    root = make_dataset(tmp_path / "v", n_caption=5, n_operation=3)
    man = json.loads((root / "manifest.json").read_text())
    for subset in SCHEMA:
        files = sorted(str(p) for p in (root / subset).glob("*.tar"))
        ds = load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
        assert len(ds) == man["subsets"][subset]["count"]
        assert set(ds.column_names) - {"__key__", "__url__"} == {"json", *SCHEMA[subset]["images"]}
        assert set(ds.features["json"]) == set(SCHEMA[subset]["json"]["properties"])
        ours = [s["json"] for s in Viper10K(root).samples(subset)]
        assert [row["json"] for row in ds] == ours
        plain = list(wds.WebDataset(files, shardshuffle=False).decode("pil"))
        assert [json.loads(s["json"]) if isinstance(s["json"], bytes) else s["json"] for s in plain] == ours
