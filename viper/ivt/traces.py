"""Teacher-corrected trajectories for IVT's SFT warm-up, built from the base model's *own* step-0 errors.

A sample qualifies when its step-0 box overlaps the truth with IoU inside a band (`in_band`; the paper keeps
[0, 0.85]: wrong or loose, not already right). Its T refinement targets walk in equal steps from the
student's box to the truth (`correction_path`), so step t learns a partial correction of step t-1's box and
the last step lands on the truth. For each step a teacher VLM writes the one-sentence check (`teacher_prompt`:
it sees the image with the previous box drawn and is told which way the box must move), and the SFT example
is exactly what the loop asks at that step (`viper.ivt.loop.refine_prompt` on the drawn image) with the
teacher's check and the target box as the reply. Learning from its own errors, rather than from perturbed
true boxes, is what keeps GRPO from rewarding a deliberately bad step 0.
"""

from __future__ import annotations

import json

from PIL import Image

from viper.ivt.boxes import Box, draw_box
from viper.ivt.loop import refine_prompt, to_model_frame


def in_band(value: float, low: float, high: float) -> bool:
    return low <= value <= high


def correction_path(student: Box, truth: Box, steps: int) -> list[Box]:
    """Boxes for steps 1..`steps`, evenly spaced from `student` (step 0) to `truth` (the last)."""
    if steps < 1:
        raise ValueError("a correction path needs at least one refinement step")
    return [tuple(s + (t - s) * k / steps for s, t in zip(student, truth)) for k in range(1, steps + 1)]  # type: ignore[misc]


def direction(prev: Box, nxt: Box, tolerance: float = 1.0) -> str:
    """How the box must change, in words a teacher can build a check on (edges that move by > tolerance px)."""
    parts = []
    for name, a, b, less, more in (("left edge", prev[0], nxt[0], "left", "right"),
                                   ("top edge", prev[1], nxt[1], "up", "down"),
                                   ("right edge", prev[2], nxt[2], "left", "right"),
                                   ("bottom edge", prev[3], nxt[3], "up", "down")):
        if abs(b - a) > tolerance:
            parts.append(f"{name} {less if b < a else more} by {abs(b - a):.0f} px")
    return ", ".join(parts) or "no edge moves: the box already frames it"


def teacher_prompt(expression: str, prev: Box, nxt: Box) -> str:
    return (f"The red box marks an attempt to find {expression}. It should change like this: "
            f"{direction(prev, nxt)}. In one sentence, say what the red box gets wrong about the object "
            "(what it cuts off or includes that it should not), without giving coordinates.")


def sft_example(image: Image.Image, expression: str, prev: Box, target: Box, check: str,
                frame: tuple[int, int]) -> dict:
    """One refinement step as SFT data: the loop's own request for `prev`, and the reply it should give."""
    size = image.size
    reply = {"check": check, "bbox_2d": [round(c) for c in to_model_frame(target, size, frame)]}
    return {"image": draw_box(image, prev), "prompt": refine_prompt(expression, to_model_frame(prev, size, frame),
                                                                   frame),
            "completion": json.dumps(reply, ensure_ascii=False)}


CHECK_SCHEMA = {"type": "object", "properties": {"check": {"type": "string", "maxLength": 60}},
                "required": ["check"], "additionalProperties": False}
TEACHER_STEP = "ivt_teacher"  # item-cache step name of the teacher's checks


def student_errors(vlm, identity: dict, samples: list[dict], traces, ivt, seed: int, cache, stats) -> list[dict]:
    """The base model's own step-0 boxes on `samples` (`traces.samples` per item: greedy at temperature 0,
    else seeded samples), each {sample, box, iou}, and whether its IoU is in the band."""
    from viper.ivt.loop import iterate

    reps = [{**s, "id": f"{s['id']}#{k}", "origin": s} for s in samples for k in range(traces.samples)]
    sampled = traces.temperature > 0
    trajs = iterate(vlm, reps, 0, min_pixels=ivt.min_pixels, max_pixels=ivt.max_pixels,
                    max_new_tokens=ivt.max_new_tokens, cache=cache, model=identity, stats=stats,
                    batch_size=ivt.batch_size, seed=seed if sampled else None,
                    temperature=traces.temperature if sampled else 1.0)
    out = []
    for rep, traj in zip(reps, trajs):
        if traj["boxes"]:
            out.append({"sample": rep["origin"], "box": traj["boxes"][0], "iou": traj["ious"][0],
                        "in_band": in_band(traj["ious"][0], traces.iou_low, traces.iou_high)})
    return out


def teacher_checks(vlm, identity: dict, errors: list[dict], steps: int, traces, ivt, cache, stats) -> list[dict]:
    """For every in-band error and refinement step: the path's previous and next box and the teacher's check
    (None when its reply does not parse: that step is dropped and counted)."""
    import json as _json

    from viper.backends.requests import VLMRequest
    from viper.ivt.loop import PROMPT_VERSION, image_digest
    from viper.store.cache import make_key
    from viper.synth.runner import Failed, memoised

    rows, requests, keys = [], [], []
    for n, e in enumerate(errors):
        s, path = e["sample"], correction_path(e["box"], tuple(e["sample"]["box"]), steps)
        for t, nxt in enumerate(path, start=1):
            prev = e["box"] if t == 1 else path[t - 2]
            image, text = draw_box(s["image"], prev), teacher_prompt(s["expression"], prev, nxt)
            rows.append({"sample": s, "trajectory": n, "iou0": e["iou"], "step": t, "prev": prev, "next": nxt})
            requests.append(VLMRequest(text, (image,), schema=CHECK_SCHEMA, max_new_tokens=traces.max_new_tokens))
            keys.append(make_key(TEACHER_STEP, identity, {"version": PROMPT_VERSION, "text": text,
                                                          "image": image_digest(image), "schema": CHECK_SCHEMA,
                                                          "min_pixels": ivt.min_pixels, "max_pixels": ivt.max_pixels,
                                                          "max_new_tokens": traces.max_new_tokens}))

    def compute(idx: list[int]) -> list[bytes]:
        return [r.encode() for r in vlm.generate([requests[j] for j in idx])]

    for row, value in zip(rows, memoised(keys, compute, cache, TEACHER_STEP, stats, ivt.batch_size)):
        row["check"] = None
        if not isinstance(value, Failed):
            try:
                check = _json.loads(bytes(value).decode(), strict=False)["check"].strip()
                row["check"] = check or None
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
    return rows
