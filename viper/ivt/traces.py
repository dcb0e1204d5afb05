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
