"""The item cache: every model call of a synthesis stage, memoised by what determines its result.

DVC decides whether a stage runs; this cache decides which items inside it need a model call. A key
hashes the step, the model's identity (id + revision, or a content hash for the tiny local models),
the full request (prompt text, image content hashes, schema, generation params, seed). So:
- a stage killed mid-run resumes where it stopped (finished batches are committed),
- new seed images cost only their own calls,
- a changed param or prompt changes the keys of exactly the calls it affects.

The keys are the contract; where the values live is an `ItemStore`, chosen by `$VIPER_CACHE_URL`:
- unset (default): one SQLite file, `items.sqlite` in `$VIPER_CACHE_DIR` or `.viper_cache/` (WAL journal,
  one transaction per batch). One machine only: SQLite's WAL does not work over a network filesystem.
- a URL (`file:///mnt/shared/viper-cache`, `s3://bucket/viper-cache`, any fsspec filesystem): one object per
  key, `<root>/<step>/<key[:2]>/<key>`, for several nodes writing at once. A write is atomic (temporary
  file + rename on a filesystem, a single PUT on an object store) and idempotent (same key, same meaning),
  so workers that outlive a killed driver, or two drivers racing, can corrupt nothing.
Both live outside DVC's outputs, so DVC deleting a stage's outputs does not touch them. Clearing is always
safe: `viper cache clear`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Protocol

from PIL import Image

from viper.store.io import canonical_json

ENV_VAR = "VIPER_CACHE_DIR"
URL_VAR = "VIPER_CACHE_URL"


def cache_dir() -> Path:
    """$VIPER_CACHE_DIR, else `.viper_cache/` in the working directory (the repo root under DVC)."""
    return Path(os.environ.get(ENV_VAR) or Path.cwd() / ".viper_cache")


def image_digest(img: Image.Image) -> str:
    h = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def make_key(step: str, model: dict, payload: dict) -> str:
    return hashlib.sha256(canonical_json({"step": step, "model": model, "payload": payload}).encode()).hexdigest()


class ItemStore(Protocol):
    """Where memoised values live. Keys are `make_key` hashes; a value never changes once written."""

    location: str

    def get_many(self, step: str, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored values among `keys` (missing keys are simply absent)."""

    def put_many(self, step: str, values: dict[str, bytes]) -> None:
        """Store `values`; each becomes visible whole or not at all."""

    def counts(self) -> dict[str, int]:
        """Stored values per step."""

    def temporary(self) -> list[str]:
        """Writes that never finished (a process killed mid-write): never read, removed by `clear`."""

    def clear(self) -> None: ...

    def close(self) -> None: ...


class ItemCache:
    """The one-machine store: a SQLite file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.location = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode; writes are grouped explicitly with BEGIN/COMMIT in put_many
        self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, step TEXT NOT NULL, "
                        "value BLOB NOT NULL, created REAL NOT NULL)")

    def get_many(self, step: str, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, bytes] = {}
        for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[i:i + 500]
            rows = self.db.execute(f"SELECT key, value FROM items WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk)
            out.update({k: bytes(v) for k, v in rows})
        return out

    def put_many(self, step: str, values: dict[str, bytes]) -> None:
        """All of `values` become visible together, or (after a crash) none of them."""
        now = time.time()
        self.db.execute("BEGIN")
        try:
            self.db.executemany("INSERT OR REPLACE INTO items (key, step, value, created) VALUES (?, ?, ?, ?)",
                                [(k, step, v, now) for k, v in values.items()])
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT step, COUNT(*) FROM items GROUP BY step ORDER BY step"))

    def temporary(self) -> list[str]:
        return []  # a killed transaction is rolled back by SQLite itself

    def clear(self) -> None:
        self.db.close()
        _remove_sqlite(self.path)

    def close(self) -> None:
        self.db.close()


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):  # the database and its journal files
        Path(f"{path}{suffix}").unlink(missing_ok=True)


_TMP = ".tmp-"  # prefix of a write in progress on a filesystem; never read as a value


class ObjectStore:
    """The several-node store: one object per key under an fsspec URL (a shared filesystem or S3/GCS/...)."""

    def __init__(self, url: str):
        import fsspec

        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.location = url
        # A local (or NFS-mounted) path gets temp + rename; object stores make a single PUT atomic themselves.
        self.rename = "file" in _protocols(self.fs)
        if not self.fs.exists(self.root):
            self.fs.makedirs(self.root, exist_ok=True)

    def path(self, step: str, key: str) -> str:
        if not (key.isalnum() and step.replace("_", "").isalnum()):
            raise ValueError(f"not an item key: {step!r}/{key!r}")  # keys become paths: nothing else may
        return f"{self.root}/{step}/{key[:2]}/{key}"

    def get_many(self, step: str, keys: Iterable[str]) -> dict[str, bytes]:
        by_path = {self.path(step, k): k for k in dict.fromkeys(keys)}
        if not by_path:
            return {}
        found = self.fs.cat(list(by_path), on_error="omit")
        return {by_path[p]: v for p, v in found.items() if p in by_path}

    def put_many(self, step: str, values: dict[str, bytes]) -> None:
        for key, value in values.items():
            final = self.path(step, key)
            if not self.rename:
                self.fs.pipe_file(final, value)
                continue
            parent = final.rsplit("/", 1)[0]
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/{_TMP}{uuid.uuid4().hex}"
            self.fs.pipe_file(tmp, value)
            try:
                self.fs.mv(tmp, final)  # os.replace locally: readers see the old object or the new one
            except BaseException:
                self.fs.rm(tmp)
                raise

    def counts(self) -> dict[str, int]:
        out = {}
        for step_dir in sorted(self.fs.ls(self.root, detail=False)):
            step = step_dir.rstrip("/").rsplit("/", 1)[-1]
            n = sum(1 for f in self.fs.find(step_dir) if not f.rsplit("/", 1)[-1].startswith(_TMP))
            if n:
                out[step] = n
        return out

    def temporary(self) -> list[str]:
        return [f for f in self.fs.find(self.root) if f.rsplit("/", 1)[-1].startswith(_TMP)]

    def clear(self) -> None:
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    def close(self) -> None:
        pass


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def open_cache() -> ItemStore:
    """The store named by $VIPER_CACHE_URL, else the SQLite file in `cache_dir()`."""
    url = os.environ.get(URL_VAR)
    return ObjectStore(url) if url else ItemCache(cache_dir() / "items.sqlite")


def cache_exists() -> bool:
    """Whether anything was ever cached here (without creating an empty store to find out)."""
    url = os.environ.get(URL_VAR)
    if url:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        return fs.exists(root)
    return (cache_dir() / "items.sqlite").exists()


def clear_cache() -> str:
    """Delete memoised calls and any RL trainer checkpoints left by killed runs; returns what was cleared."""
    import shutil

    store = open_cache() if cache_exists() else None
    where = store.location if store else os.environ.get(URL_VAR) or str(cache_dir())
    if store:
        store.clear()
    _remove_sqlite(cache_dir() / "items.sqlite")  # also the local one when a URL names another store
    shutil.rmtree(cache_dir() / "rl", ignore_errors=True)
    return where


def request_payload(request: Any) -> dict:
    """What determines a VLM reply: everything in the request, images by content."""
    return {"text": request.text, "images": [image_digest(i) for i in request.images], "schema": request.schema,
            "max_new_tokens": request.max_new_tokens, "seed": request.seed,
            "temperature": request.temperature if request.seed is not None else 0.0}
