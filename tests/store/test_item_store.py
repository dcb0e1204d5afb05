"""The item store behind the cache: SQLite on one machine, one object per key on an fsspec URL for many.

Both must behave the same to the runner; the object store must also stay whole when writers are killed or
race each other (several nodes, workers that outlive their driver)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from viper.cli import main
from viper.store.cache import ENV_VAR, URL_VAR, ItemCache, ObjectStore, open_cache
from viper.synth.runner import StepStats, memoised


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture(params=["sqlite", "file", "memory"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = ItemCache(tmp_path / "items.sqlite")
    elif request.param == "file":
        s = ObjectStore(f"file://{tmp_path}/objects")
    else:  # an object store without rename: a single PUT per value, as on S3/GCS
        s = ObjectStore(f"memory://viper-test-{tmp_path.name}")
    yield s
    s.clear()


def test_values_round_trip_by_step_and_key(store):
    store.put_many("captions", {key(1): b"one", key(2): b"two"})
    store.put_many("judge", {key(3): b"\x00binary\xff"})
    assert store.get_many("captions", [key(1), key(2), key(9)]) == {key(1): b"one", key(2): b"two"}
    assert store.get_many("judge", [key(3)]) == {key(3): b"\x00binary\xff"}
    assert store.get_many("captions", []) == {}
    assert store.counts() == {"captions": 2, "judge": 1}
    store.put_many("captions", {key(1): b"one"})  # idempotent: writing a key again changes nothing
    assert store.counts() == {"captions": 2, "judge": 1} and store.temporary() == []


def test_memoised_computes_only_what_the_store_lacks(store):
    keys = [key(i) for i in range(10)]
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return [f"v{i}".encode() for i in idx]

    stats = StepStats("captions")
    first = memoised(keys[:6], compute, store, "captions", stats, batch_size=4)
    assert calls == [[0, 1, 2, 3], [4, 5]] and first == [f"v{i}".encode() for i in range(6)]
    calls.clear()
    stats = StepStats("captions")
    both = memoised(keys, compute, store, "captions", stats, batch_size=4)
    assert calls == [[6, 7, 8, 9]] and (stats.cache_hits, stats.cache_misses) == (6, 4)
    assert both[:6] == first


def test_object_keys_cannot_leave_the_store(tmp_path):
    store = ObjectStore(f"file://{tmp_path}/objects")
    for step, bad in (("captions", "../../etc"), ("captions", "a/b"), ("../x", key(1)), ("captions", "")):
        with pytest.raises(ValueError, match="not an item key"):
            store.put_many(step, {bad: b"x"})
    assert not (tmp_path / "etc").exists()


WRITER = """
import sys
from viper.store.cache import ObjectStore
store, start = ObjectStore(sys.argv[1]), int(sys.argv[2])
value = lambda i: bytes([i % 251]) * 2_000_000
i = start
while True:
    store.put_many("edited_pairs", {format(i, "064x"): value(i)})
    print(i, flush=True)
    i += 1
"""


def test_a_killed_writer_leaves_whole_objects_or_none(tmp_path):
    """SIGKILL mid-write: every object that exists is complete; unfinished writes are never read."""
    url = f"file://{tmp_path}/objects"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url, "0"], stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # let a few values land, then kill it in the middle of the next
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = ObjectStore(url)
    n = store.counts()["edited_pairs"]
    assert n >= 5
    values = store.get_many("edited_pairs", [format(i, "064x") for i in range(n + 5)])
    assert len(values) == n
    assert all(v == bytes([int(k, 16) % 251]) * 2_000_000 for k, v in values.items())


def test_two_writers_racing_on_the_same_keys_corrupt_nothing(tmp_path):
    url = f"file://{tmp_path}/objects"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, "0"], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    deadline = time.time() + 60
    seen = [0, 0]
    while min(seen) < 6 and time.time() < deadline:  # both have written keys 0..5 (the same keys)
        for j, p in enumerate(procs):
            seen[j] = int(p.stdout.readline()) + 1
    for p in procs:
        p.kill()
        p.wait()
    store = ObjectStore(url)
    values = store.get_many("edited_pairs", [format(i, "064x") for i in range(6)])
    assert len(values) == 6
    assert all(v == bytes([int(k, 16) % 251]) * 2_000_000 for k, v in values.items())


def test_the_url_selects_the_store_and_the_cli_reports_and_clears_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "local"))
    monkeypatch.delenv(URL_VAR, raising=False)
    assert isinstance(open_cache(), ItemCache)
    url = f"file://{tmp_path}/shared"
    monkeypatch.setenv(URL_VAR, url)
    store = open_cache()
    assert isinstance(store, ObjectStore)
    store.put_many("captions", {key(1): b"x", key(2): b"y"})
    store.put_many("judge", {key(3): b"z"})
    (tmp_path / "shared" / "judge" / key(3)[:2] / ".tmp-0123").write_bytes(b"half")  # a killed worker's write
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"item cache: {url}" in out and "captions: 2 cached calls" in out and "judge: 1 cached calls" in out
    assert "1 unfinished writes" in out
    assert main(["cache", "clear"]) == 0
    assert url in capsys.readouterr().out and not (tmp_path / "shared").exists()
    assert main(["cache", "info"]) == 0
    assert "cached calls" not in capsys.readouterr().out
    assert not (tmp_path / "shared").exists()  # looking does not create an empty store
    assert not os.path.exists(tmp_path / "local" / "items.sqlite")
