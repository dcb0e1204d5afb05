"""Where a VLM looks while it answers (the paper's Figure 4b): attention from the answer tokens to the image.

For one image and prompt, the model's own greedy answer is appended to the prompt and the pair is run once
with `output_attentions` (eager attention: the fused kernels return none). The map is the attention weight that
the answer's tokens put on each image token, averaged over every layer, every head and every answer token, then
normalised over the image tokens; it is laid out on the image's token grid (Qwen2.5-VL: one token per
2x2 merged 14-pixel patches, `image_grid_thw // merge`) and drawn over the image as a heatmap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image


def answer_to_image(attentions: Sequence[Any], image_positions: Sequence[int], answer_positions: Sequence[int],
                    grid: tuple[int, int]) -> np.ndarray:
    """The (rows, cols) map of attention from the answer to the image tokens.

    `attentions`: one (1, heads, L, L) tensor per layer (row = query position). `image_positions`: the image
    tokens' positions, in raster order of `grid`. Averaged over layers, heads and answer rows; sums to 1."""
    import torch

    stacked = torch.stack([a[0].float() for a in attentions])  # (layers, heads, L, L)
    rows = stacked[:, :, list(answer_positions), :].mean(dim=(0, 1, 2))  # (L,)
    weights = rows[list(image_positions)].cpu().numpy().astype(np.float64)
    if weights.size != grid[0] * grid[1]:
        raise ValueError(f"{weights.size} image tokens do not fill a {grid[0]}x{grid[1]} grid")
    total = weights.sum()
    return (weights / total if total > 0 else weights).reshape(grid)


def overlay(img: Image.Image, heat: np.ndarray, alpha: float = 0.55) -> Image.Image:
    """The image with the map drawn over it in red (scaled so the largest cell is fully red)."""
    peak = heat.max() if heat.size and heat.max() > 0 else 1.0
    cells = Image.fromarray(np.uint8(255 * heat / peak), mode="L").resize(img.size, Image.NEAREST)
    red = Image.new("RGB", img.size, (220, 20, 20))
    mask = cells.point(lambda v: int(v * alpha))
    return Image.composite(red, img.convert("RGB"), mask)


def attention_map(model: Any, processor: Any, image: Image.Image, prompt: str, max_new_tokens: int) -> dict:
    """Generate the model's greedy answer to (image, prompt), then the answer-to-image map of that answer.

    `model` must run eager attention (load it with attn_implementation="eager"). Returns {answer, heat (rows x
    cols), grid}."""
    import torch

    from viper.backends.vlm import chat_messages

    text = processor.apply_chat_template(chat_messages(prompt, 1), tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                             top_p=None, top_k=None)
        n_prompt = inputs["input_ids"].shape[1]
        answer = out[:, n_prompt:]
        full = {**inputs, "input_ids": out, "attention_mask": torch.ones_like(out)}
        if "mm_token_type_ids" in full:  # per-token types: the answer is text
            full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(answer)], dim=1)
        attentions = model(**full, output_attentions=True).attentions
    image_token = model.config.image_token_id
    image_positions = (out[0] == image_token).nonzero().flatten().tolist()
    _, h, w = (int(v) for v in inputs["image_grid_thw"][0])
    merge = model.config.vision_config.spatial_merge_size
    answer_positions = list(range(n_prompt, out.shape[1]))
    if not answer_positions:  # nothing generated: the last prompt token stands in for the answer
        answer_positions = [n_prompt - 1]
    heat = answer_to_image(attentions, image_positions, answer_positions, (h // merge, w // merge))
    return {"answer": processor.batch_decode(answer, skip_special_tokens=True)[0], "heat": heat,
            "grid": (h // merge, w // merge)}


def concentration(heat: np.ndarray) -> dict:
    """How focused a map is: the largest cell's share and 1 - normalised entropy (0 = uniform, 1 = one cell)."""
    p = heat.flatten()
    p = p[p > 0]
    n = heat.size
    entropy = float(-(p * np.log(p)).sum() / np.log(n)) if n > 1 and p.size else 0.0
    return {"peak_share": round(float(heat.max()), 4) if heat.size else 0.0, "focus": round(1.0 - entropy, 4)}
