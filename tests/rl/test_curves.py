"""DVCLive-written training curves: one row per step, never twice, read back as the report reads them."""

from viper.rl.curves import CURVES, CurveLog, read_curves, write_curves


def row(step, reward, fmt=None):
    return {"step": step, "reward": reward, "reward_std": 0.1, "format": fmt, "correct": reward,
            "completion_length": 32.0}


def test_rows_append_in_step_order_and_replays_are_skipped(tmp_path):
    log = CurveLog(tmp_path / "c")
    log.add([row(1, 0.25, 0.0)])
    assert (tmp_path / "c/plots/metrics/reward.tsv").read_text().split() == ["step", "reward", "1", "0.25"]
    log.add([row(2, 0.5, 1.0), row(1, 0.25, 0.0), row(3, 0.75)])  # step 1 again (a resumed run's history)
    got = read_curves(tmp_path / "c")
    assert [r["step"] for r in got] == [1, 2, 3] and [r["reward"] for r in got] == [0.25, 0.5, 0.75]
    assert "format" not in got[2] and got[1]["format"] == 1.0  # missing values are left out, not zeros
    assert sorted(p.stem for p in (tmp_path / "c/plots/metrics").iterdir()) == sorted(CURVES)


def test_a_stage_that_trains_nothing_leaves_an_empty_directory(tmp_path):
    write_curves(tmp_path / "c", [])
    assert (tmp_path / "c").is_dir() and read_curves(tmp_path / "c") == []
