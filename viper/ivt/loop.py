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
    head = {"label": {"type": "string", "maxLength": 16}} if first else {"check": {"type": "string", "maxLength": 60}}
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


def step_request(sample: dict, frame: tuple[int, int], prev: Box | None, *, min_pixels: int, max_pixels: int,
                 max_new_tokens: int, seed: int | None, temperature: float) -> tuple[VLMRequest, dict]:
    """Step 0 (`prev` None) or a refinement of `prev` (original pixels) for one sample: the request, and
    what its item-cache key is made of."""
    if prev is None:
        image, text = sample["image"], first_prompt(sample["expression"], frame)
    else:
        image = draw_box(sample["image"], prev)
        text = refine_prompt(sample["expression"], to_model_frame(prev, sample["image"].size, frame), frame)
    schema = box_schema(frame, first=prev is None)
    request = VLMRequest(text, (image,), schema=schema, max_new_tokens=max_new_tokens, seed=seed,
                         temperature=temperature)
    key = {"version": PROMPT_VERSION, "text": text, "image": image_digest(image), "schema": schema,
           "min_pixels": min_pixels, "max_pixels": max_pixels, "max_new_tokens": max_new_tokens, "seed": seed,
           "temperature": temperature if seed is not None else None}
    return request, key


def new_trajectory(sample_id: str) -> dict:
    return {"id": sample_id, "replies": [], "boxes": [], "failure": None, "failed_at": None}


def absorb(traj: dict, sample: dict, frame: tuple[int, int], t: int, reply: str) -> None:
    """Add step `t`'s reply to a trajectory: its box in original pixels, or the failure that ends it."""
    traj["replies"].append(reply)
    try:
        box = clip(rescale(parse_box(reply), frame, sample["image"].size), *sample["image"].size)
    except BoxFailure as err:
        traj.update(failure=err.reason, failed_at=t)
        return
    traj["boxes"].append(box)


def add_ious(trajectories: list[dict], samples: list[dict]) -> None:
    for o, s in zip(trajectories, samples):
        if "box" in s:
            o["ious"] = [iou(b, tuple(s["box"])) for b in o["boxes"]]


def frame_of(sample: dict, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    return input_size(sample["image"].width, sample["image"].height, min_pixels, max_pixels)


def iterate(vlm: Any, samples: list[dict], steps: int, *, min_pixels: int, max_pixels: int, max_new_tokens: int,
            cache: Any, model: dict, stats: Any, batch_size: int, seed: int | None = None,
            temperature: float = 1.0) -> list[dict]:
    """Run step 0 and `steps` refinement steps for every sample ({id, image, expression, box?}).

    Returns one trajectory per sample: {id, replies, boxes (original pixels, None after a failure),
    failure (reason or None), failed_at (step or None), ious (when the sample has a `box`)}. `seed` None is
    greedy decoding (evaluation); a seed samples, per sample and step."""
    from viper.store.cache import make_key
    from viper.synth.runner import Failed, derive_seed, memoised

    out = [new_trajectory(s["id"]) for s in samples]
    frames = [frame_of(s, min_pixels, max_pixels) for s in samples]
    for t in range(steps + 1):
        alive = [i for i, o in enumerate(out) if o["failure"] is None]
        if not alive:
            break
        requests, keys = [], []
        for i in alive:
            item_seed = None if seed is None else derive_seed("ivt", seed, samples[i]["id"], t)
            request, key = step_request(samples[i], frames[i], out[i]["boxes"][-1] if t else None,
                                        min_pixels=min_pixels, max_pixels=max_pixels, max_new_tokens=max_new_tokens,
                                        seed=item_seed, temperature=temperature)
            requests.append(request)
            keys.append(make_key(STEP, model, key))

        def compute(idx: list[int]) -> list[bytes]:
            return [r.encode() for r in vlm.generate([requests[j] for j in idx])]

        values = memoised(keys, compute, cache, STEP, stats, batch_size)
        for i, value in zip(alive, values):
            if isinstance(value, Failed):
                out[i].update(failure=f"model_error: {value.detail}", failed_at=t)
            else:
                absorb(out[i], samples[i], frames[i], t, bytes(value).decode())
    add_ious(out, samples)
    return out
