"""Scores of IVT trajectories, for each way of choosing the answer among the steps.

    step0        the first box (single shot)
    last         the box of the last step; a step that failed to give a box is a miss (naive iteration)
    stop         label-free: stop at the first refinement whose box barely moves (IoU with the previous box
                 >= stop_iou), keep the previous box when a step fails, else the last box
    oracle       the best step by IoU with the truth: needs the label, so only a diagnostic (later notes on
                 the IVT paper found its gain depended on it)

IoU of a missing box is 0 in mIoU and a miss in Acc@tau.
"""

from __future__ import annotations

from collections import Counter

from viper.ivt.boxes import accuracy, iou

THRESHOLDS = (0.5, 0.7, 0.75, 0.9)
CHOICES = ("step0", "last", "stop", "oracle")


def chosen_ious(traj: dict, steps: int, stop_iou: float) -> dict[str, float | None]:
    """The IoU each choice ends with for one trajectory (None: no box)."""
    ious, boxes = traj["ious"], traj["boxes"]
    stop = ious[-1] if ious else None  # a failed step keeps the last box there is
    for t in range(1, len(boxes)):
        if iou(boxes[t], boxes[t - 1]) >= stop_iou:
            stop = ious[t]
            break
    return {"step0": ious[0] if ious else None,
            "last": ious[steps] if len(ious) == steps + 1 else None,
            "stop": stop,
            "oracle": max(ious) if ious else None}


def score(trajectories: list[dict], steps: int, stop_iou: float, op: str = ">=") -> dict:
    """Acc@tau (for THRESHOLDS, with `op`), mIoU per choice; mean IoU change per step; the share of samples
    whose last box is worse than their first; failures by reason and step."""
    per = [chosen_ious(t, steps, stop_iou) for t in trajectories]
    out: dict = {"samples": len(trajectories), "op": op}
    for choice in CHOICES:
        values = [p[choice] for p in per]
        out[choice] = {**{f"acc@{tau}": round(100 * accuracy(values, tau, op), 2) for tau in THRESHOLDS},
                       "miou": round(sum(v or 0.0 for v in values) / len(values), 4) if values else 0.0}
    deltas = []
    for t in range(1, steps + 1):
        d = [tr["ious"][t] - tr["ious"][t - 1] for tr in trajectories if len(tr["ious"]) > t]
        deltas.append(round(sum(d) / len(d), 4) if d else None)
    out["iou_change_per_step"] = deltas
    moved = [tr for tr in trajectories if len(tr["ious"]) > 1]
    out["degraded_fraction"] = round(sum(tr["ious"][-1] < tr["ious"][0] for tr in moved) / len(moved), 4) \
        if moved else None
    out["failures"] = dict(sorted(Counter(f"{tr['failure']}@{tr['failed_at']}" for tr in trajectories
                                          if tr["failure"]).items()))
    return out
