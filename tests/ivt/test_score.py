"""IVT scoring of literal trajectories: every step choice, IoU change per step, degradation, failures."""

import pytest

from viper.ivt.score import chosen_ious, score

BOX = (0.0, 0.0, 10.0, 10.0)


def traj(ious, boxes=None, failure=None, failed_at=None):
    boxes = boxes or [BOX] * len(ious)
    return {"id": "x", "ious": ious, "boxes": boxes, "failure": failure, "failed_at": failed_at}


def test_step_choices():
    moving = [(0, 0, 10, 10), (5, 5, 15, 15), (5, 5, 15, 16)]  # step 2 barely moves from step 1
    t = traj([0.9, 0.4, 0.45], moving)
    assert chosen_ious(t, 2, stop_iou=0.85) == {"step0": 0.9, "last": 0.45, "stop": 0.45, "oracle": 0.9}
    assert chosen_ious(t, 2, stop_iou=0.99)["stop"] == 0.45  # never converged: the last box
    # failed at step 2: `last` is a miss, `stop` keeps step 1's box
    failed = traj([0.9, 0.4], moving[:2], failure="no_box", failed_at=2)
    assert chosen_ious(failed, 2, stop_iou=0.99) == {"step0": 0.9, "last": None, "stop": 0.4, "oracle": 0.9}
    assert chosen_ious(traj([], [], "not_json", 0), 2, 0.9) == {"step0": None, "last": None, "stop": None,
                                                               "oracle": None}


def test_score_literals():
    ts = [traj([0.5, 0.75, 0.8]), traj([0.8, 0.6, 0.4]), traj([], [], failure="no_box", failed_at=0)]
    s = score(ts, 2, stop_iou=0.999, op=">=")  # identical boxes: stop at step 1
    assert s["step0"]["acc@0.5"] == pytest.approx(66.67) and s["step0"]["acc@0.75"] == pytest.approx(33.33)
    assert s["last"]["miou"] == pytest.approx((0.8 + 0.4) / 3, abs=1e-4)
    assert s["stop"]["acc@0.7"] == pytest.approx(33.33)  # step 1: 0.75 and 0.6
    assert s["oracle"]["acc@0.75"] == pytest.approx(66.67)
    assert s["iou_change_per_step"] == [pytest.approx(0.025), pytest.approx(-0.075)]
    assert s["degraded_fraction"] == 0.5
    assert s["failures"] == {"no_box@0": 1}
    strict = score(ts, 2, stop_iou=0.999, op=">")
    assert strict["step0"]["acc@0.5"] == pytest.approx(33.33)  # 0.5 is not > 0.5
