"""Atomic, deterministic writers for stage outputs: parquet tables, JSON metrics, tar shards.

Determinism matters because DVC hashes outputs: a byte that changes between identical runs
(a tar mtime, an unsorted key) would invalidate every downstream stage.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd
from PIL import Image


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_table(path: str | Path, rows: list[dict], columns: list[str]) -> None:
    """Parquet with a fixed column order; rows are written in the order given."""
    df = pd.DataFrame(rows, columns=columns)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def png_bytes(img: Image.Image) -> bytes:
    """PNG encoding with no metadata chunks, so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShardWriter:
    """Webdataset shards written one sample at a time: each sample is {"__key__": key, "<ext>": bytes | dict |
    str}, and a new shard starts every `shard_size` samples, so memory holds one sample, not the dataset.

    Members are `<key>.<ext>`, grouped per sample, with mtime/uid/gid zeroed so that equal samples
    give byte-identical shards. `counts` holds the number of samples of each shard in `paths`."""

    def __init__(self, out_dir: str | Path, shard_size: int, prefix: str = "shard"):
        self.out_dir, self.shard_size, self.prefix = Path(out_dir), shard_size, prefix
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.paths: list[Path] = []
        self.counts: list[int] = []
        self._tar: tarfile.TarFile | None = None

    def write(self, sample: dict) -> None:
        if self._tar is None or self.counts[-1] == self.shard_size:
            self._close_shard()
            self.paths.append(self.out_dir / f"{self.prefix}-{len(self.paths):06d}.tar")
            self.counts.append(0)
            self._tar = tarfile.open(self.paths[-1], "w", format=tarfile.USTAR_FORMAT)
        key = sample["__key__"]
        if "." in key or "/" in key:
            raise ValueError(f"shard key {key!r} must not contain '.' or '/'")
        for ext in sorted(k for k in sample if k != "__key__"):
            value = sample[ext]
            if isinstance(value, (dict, list)):
                data = canonical_json(value).encode()
            elif isinstance(value, str):
                data = value.encode()
            else:
                data = bytes(value)
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self.counts[-1] += 1

    def _close_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> list[Path]:
        self._close_shard()
        return self.paths

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close_shard()


def write_shards(out_dir: str | Path, samples: Iterable[dict], shard_size: int,
                 prefix: str = "shard") -> list[Path]:
    """Write `samples` (consumed one at a time) as webdataset shards (see `ShardWriter`); returns their paths."""
    with ShardWriter(out_dir, shard_size, prefix) as writer:
        for sample in samples:
            writer.write(sample)
    return writer.paths


class ShardError(Exception):
    """A shard that cannot be read safely: corrupt, truncated, or holding something other than flat files."""


# A member is `<key>.<ext>`: no directories, no absolute paths, nothing a reader could be tricked into
# resolving outside the shard. Extensions may have several parts (`src.png`).
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+")
# Limits no real sample comes near; beyond them a shard is an attack or a bug, and reading on would exhaust memory.
MAX_MEMBER_BYTES = 256 << 20
MAX_SAMPLE_BYTES = 512 << 20
MAX_MEMBERS_PER_SAMPLE = 16
_IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}  # extension -> the only format read


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or name.startswith("\\"):
        raise ShardError(f"member {name!r} is an absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise ShardError(f"member {name!r} has a '..' component (it would resolve outside the shard)")
    if member.issym() or member.islnk():
        raise ShardError(f"member {name!r} is a {'symbolic' if member.issym() else 'hard'} link "
                         f"(to {member.linkname!r}); shards hold plain files only")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):  # isreg() also admits sparse and contiguous files
        raise ShardError(f"member {name!r} is not a plain file (tar type {member.type!r})")
    if not _MEMBER_NAME.fullmatch(name):
        raise ShardError(f"member {name!r} is not named <key>.<ext> (no directories or odd characters)")
    if member.size > MAX_MEMBER_BYTES:
        raise ShardError(f"member {name!r} is {member.size} bytes, over the {MAX_MEMBER_BYTES}-byte limit")


@dataclass(frozen=True)
class MemberRef:
    """Where an image member lies in its shard, for reading it later (`load`) instead of now."""
    path: Path
    offset: int
    size: int
    ext: str

    def load(self) -> Any:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise ShardError(f"{self.path}: member at {self.offset} is cut short")
        try:
            return _decode_member(self.ext, data)
        except (ValueError, OSError, Image.DecompressionBombError) as err:
            raise ShardError(f"{self.path}: unreadable member ({type(err).__name__}: {err})") from None


def read_shard(path: str | Path, images: bool = True) -> Iterator[dict]:
    """Iterate the samples of one shard, validating every member before reading it.

    With `images=False`, image members are not read but given as `MemberRef`s (read them one at a time
    when needed: what keeps a streaming stage's memory independent of the number of items).

    Members are read into memory, never extracted, so a hostile name cannot write anywhere; it is refused
    anyway, with links, devices and directories, so a shard that other tools would extract unsafely is
    reported rather than silently skipped. Raises ShardError naming the shard and the member.
    """
    path = Path(path)
    sample: dict = {}
    seen: set[str] = set()
    sample_bytes = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                _check_member(member)
                key, _, ext = member.name.partition(".")
                if sample and key != sample["__key__"]:
                    yield sample
                    sample, sample_bytes = {}, 0
                if not sample:
                    if key in seen:
                        raise ShardError(f"key {key!r} appears twice (its members are not contiguous)")
                    seen.add(key)
                if ext in sample:
                    raise ShardError(f"member {member.name!r} appears twice")
                sample_bytes += member.size
                if len(sample) > MAX_MEMBERS_PER_SAMPLE or sample_bytes > MAX_SAMPLE_BYTES:
                    raise ShardError(f"sample {key!r} has over {MAX_MEMBERS_PER_SAMPLE} members or "
                                     f"{MAX_SAMPLE_BYTES} bytes")
                sample["__key__"] = key
                if not images and _IMAGE_FORMATS.get(ext.rsplit(".", 1)[-1]):
                    sample[ext] = MemberRef(path, member.offset_data, member.size, ext)
                else:
                    sample[ext] = _decode_member(ext, tar.extractfile(member).read())
            # tarfile stops quietly at a cut-off header; a whole archive ends with two zero blocks
            tar.fileobj.seek(tar.offset)
            if tar.fileobj.read(1024) != bytes(1024):
                raise ShardError("truncated: the archive has no end-of-archive marker after its last member")
            if sample:
                yield sample
    except ShardError as err:
        raise ShardError(f"{path}: {err}") from None
    except (tarfile.TarError, EOFError) as err:
        raise ShardError(f"{path}: truncated or not a tar archive ({err})") from None
    except (ValueError, OSError, RecursionError, Image.DecompressionBombError) as err:  # bad JSON or image
        raise ShardError(f"{path}: unreadable member ({type(err).__name__}: {err})") from None


def read_shards(shard_dir: str | Path, images: bool = True) -> Iterator[dict]:
    """Iterate the samples of every shard in a directory, in shard order.

    Yields {"__key__": key, "json": dict, "<ext>": PIL.Image for image extensions, else bytes}.
    Plain `tarfile` rather than webdataset's loader: it keeps torch out of stages that never need it
    (2.4 s of import per stage); tests check that webdataset reads the same shards identically.
    """
    for path in sorted(Path(shard_dir).glob("*.tar")):
        yield from read_shard(path, images)


def _decode_member(ext: str, data: bytes) -> Any:
    if ext.endswith("json"):
        return json.loads(data)
    fmt = _IMAGE_FORMATS.get(ext.rsplit(".", 1)[-1])
    if fmt:
        with warnings.catch_warnings():  # PIL only warns below 2x its pixel limit; refuse at 1x
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                img = Image.open(io.BytesIO(data), formats=[fmt])
                img.load()
            except Image.DecompressionBombWarning as err:
                raise ValueError(str(err)) from None
        return img
    return data
