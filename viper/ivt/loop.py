"""The IVT loop: step 0 asks for the box of a referring expression; each refinement step shows the image with
the previous box drawn on it and asks for a corrected box. Every step is one stateless request (image +
text), so each goes through the item cache like any other VLM call and a killed run resumes.

The model answers in its own frame (Qwen2.5-VL: pixels of its resized input); the prompts name the previous
box in that frame too, and every box is converted to original pixels before it is drawn or scored. A reply
without a usable box ends that sample's trajectory with the failure's reason: later steps have nothing to
refine, and no box is ever guessed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from PIL import Image

from viper.backends.requests import VLMRequest
from viper.ivt.boxes import Box, BoxFailure, clip, draw_box, input_size, iou, parse_box, rescale

STEP = "ivt_step"  # item-cache step name
PROMPT_VERSION = "ivt-v1"  # part of every cache key: a changed prompt never reuses old replies


def box_schema(frame: tuple[int, int], first: bool) -> dict:
    """The JSON shape replies are held to (as the synthesis tasks' are): step 0 a box and a short label, a
    refinement a one-sentence check of the previous box first, then the corrected box. Coordinates are
    integers within the model's frame; what the box *says* is never forced."""
    box = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": max(frame)},
           "minItems": 4, "maxItems": 4}
    head = {"label": {"type": "string", "maxLength": 24}} if first else {"check": {"type": "string", "maxLength": 80}}
    props = {**head, "bbox_2d": box} if not first else {"bbox_2d": box, **head}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def first_prompt(expression: str, frame: tuple[int, int]) -> str:
    return (f"Find {expression} in this {frame[0]}x{frame[1]} image. Reply with JSON only: "
            '[{"bbox_2d": [x1, y1, x2, y2], "label": "..."}] in pixel coordinates of the image as you see it.')


def refine_prompt(expression: str, previous: Box, frame: tuple[int, int]) -> str:
    shown = [round(c) for c in previous]
    return (f"The red box {shown} is your last answer for {expression} in this {frame[0]}x{frame[1]} image. "
            "Look at what it covers. Say in one sentence whether it frames the object exactly, then reply "
            'with a corrected box as JSON: [{"bbox_2d": [x1, y1, x2, y2], "label": "..."}].')


def image_digest(img: Image.Image) -> str:
    return hashlib.sha256(f"{img.width}x{img.height}:".encode() + img.tobytes()).hexdigest()


def to_model_frame(box: Box, original: tuple[int, int], frame: tuple[int, int]) -> Box:
    return rescale(box, original, frame)


def iterate(vlm: Any, samples: list[dict], steps: int, *, min_pixels: int, max_pixels: int, max_new_tokens: int,
            cache: Any, model: dict, stats: Any, batch_size: int, seed: int | None = None,
            temperature: float = 1.0) -> list[dict]:
    """Run step 0 and `steps` refinement steps for every sample ({id, image, expression, box?}).

    Returns one trajectory per sample: {id, replies, boxes (original pixels, None after a failure),
    failure (reason or None), failed_at (step or None), ious (when the sample has a `box`)}. `seed` None is
    greedy decoding (evaluation); a seed samples (rollouts), per sample and step."""
    from viper.store.cache import make_key
    from viper.synth.runner import Failed, derive_seed, memoised

    out = [{"id": s["id"], "replies": [], "boxes": [], "failure": None, "failed_at": None} for s in samples]
    frames = [input_size(s["image"].width, s["image"].height, min_pixels, max_pixels) for s in samples]
    for t in range(steps + 1):
        alive = [i for i, o in enumerate(out) if o["failure"] is None]
        if not alive:
            break
        requests, keys = [], []
        for i in alive:
            s, frame = samples[i], frames[i]
            if t == 0:
                image, text = s["image"], first_prompt(s["expression"], frame)
            else:
                prev = out[i]["boxes"][-1]
                image = draw_box(s["image"], prev)
                text = refine_prompt(s["expression"], to_model_frame(prev, s["image"].size, frame), frame)
            item_seed = None if seed is None else derive_seed("ivt", seed, s["id"], t)
            schema = box_schema(frame, first=t == 0)
            requests.append(VLMRequest(text, (image,), schema=schema, max_new_tokens=max_new_tokens, seed=item_seed,
                                       temperature=temperature))
            keys.append(make_key(STEP, model, {"version": PROMPT_VERSION, "text": text, "image": image_digest(image),
                                               "schema": schema, "min_pixels": min_pixels, "max_pixels": max_pixels,
                                               "max_new_tokens": max_new_tokens, "seed": item_seed,
                                               "temperature": temperature if item_seed is not None else None}))

        def compute(idx: list[int]) -> list[bytes]:
            return [r.encode() for r in vlm.generate([requests[j] for j in idx])]

        values = memoised(keys, compute, cache, STEP, stats, batch_size)
        for i, value in zip(alive, values):
            o, s, frame = out[i], samples[i], frames[i]
            if isinstance(value, Failed):
                o.update(failure=f"model_error: {value.detail}", failed_at=t)
                continue
            reply = bytes(value).decode()
            o["replies"].append(reply)
            try:
                box = clip(rescale(parse_box(reply), frame, s["image"].size), *s["image"].size)
            except BoxFailure as err:
                o.update(failure=err.reason, failed_at=t)
                continue
            o["boxes"].append(box)
    for o, s in zip(out, samples):
        if "box" in s:
            o["ious"] = [iou(b, tuple(s["box"])) for b in o["boxes"]]
    return out
