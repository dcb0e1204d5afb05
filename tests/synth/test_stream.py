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
