"""Streaming windows: whole batches per window, input order, nothing dropped."""

from viper.sandbox import set_params
from viper.synth.stream import window_size, windows


def test_windows_keep_order_and_the_last_one_may_be_short():
    assert list(windows(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(windows(iter(range(6)), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(windows([], 4)) == []


def test_the_window_is_a_whole_number_of_batches(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).parents[2] / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    set_params(tmp_path, {"stream.window": 20})
    assert window_size(8) == 24 and window_size(5) == 20 and window_size(32) == 32 and window_size(1) == 20


def test_a_streaming_step_reports_its_progress_until_it_ends(tmp_path, monkeypatch):
    import json
    import subprocess

    import pytest

    from viper.synth.stream import PROGRESS_DIR, running

    monkeypatch.chdir(tmp_path)
    seen = []
    for window in windows(list(range(10)), 4, "captions"):
        seen.append((running("captions")["done"], running("captions")["total"], len(window)))
    assert seen == [(0, 10, 4), (4, 10, 4), (8, 10, 2)]
    assert running("captions") is None and not (PROGRESS_DIR / "captions.json").exists()

    with pytest.raises(RuntimeError):  # a failing step leaves nothing behind either
        for _ in windows(list(range(10)), 4, "judge"):
            raise RuntimeError("model died")
    assert not (PROGRESS_DIR / "judge.json").exists()

    # a killed driver's file (its pid is gone) is not shown as running
    gen = windows(list(range(10)), 4, "judge")
    next(gen)
    info = json.loads((PROGRESS_DIR / "judge.json").read_text())
    proc = subprocess.Popen(["true"])  # a finished (and reaped) child: no process has its pid now
    proc.wait()
    (PROGRESS_DIR / "judge.json").write_text(json.dumps({**info, "pid": proc.pid}))
    assert running("judge") is None
