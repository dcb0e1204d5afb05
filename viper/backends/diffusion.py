"""Text-to-image and instruction-guided editing with diffusers pipelines (Qwen-Image, Qwen-Image-Edit).

Tiny local models (built by `viper.zoo.diffusion`) and hub checkpoints go through the same
`DiffusionPipeline.from_pretrained` call and the same pipeline classes; only `path_or_id` and `revision`
differ.

What every call passes, and why:
- `max_sequence_length`: the pipelines cut prompt embeddings at 512 tokens unless told otherwise, but accept
  up to 1024 (`tokenizer_max_length`, what their tokenizer call keeps); long captions get all of it.
- `true_cfg_scale` with a negative prompt " " (Qwen-Image's own usage): their classifier-free guidance acts
  only when a negative prompt is given.
- `height`/`width`: reconstructions at the params' size (multiples of 16: 8x VAE, 2x2 latent patches);
  edits at a working size (see `ImageEditor.edit`), resized back to each input's size.

Reproducibility: every image gets its own `torch.Generator` seeded with its own seed, and the pipelines
draw each image's initial noise from its own generator, so an image depends on its prompt/instruction,
its seed and the weights, not on which other items share the batch (up to float rounding of batched
kernels).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from PIL import Image

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
NEGATIVE_PROMPT = " "  # Qwen-Image's documented negative prompt: enables true CFG without steering away


def load_pipeline(path_or_id: str, revision: str | None, device: str, dtype: str):
    """Load any diffusers pipeline folder or hub id, safetensors only, progress bars off."""
    from diffusers import DiffusionPipeline

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    try:
        pipe = DiffusionPipeline.from_pretrained(
            path_or_id, revision=revision, use_safetensors=True, dtype=DTYPES[dtype])
    except Exception as e:  # missing folder, bad id, no safetensors, offline hub, ...
        raise RuntimeError(
            f"could not load diffusion pipeline {path_or_id!r} (revision {revision!r}): {e}\n"
            "For a tiny local model run `dvc repro models`; for a hub model check the model id and "
            "revision in params.yaml.") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _accepts(pipe: Any, name: str) -> bool:
    return name in inspect.signature(pipe.__call__).parameters


def max_sequence_length(pipe: Any) -> int | None:
    """The longest prompt embedding the pipeline accepts, or None if its __call__ has no such argument.

    Qwen-Image(-Edit) default to 512 and reject more than 1024 (diffusers 0.42.1 `check_inputs`); 1024 is
    also their `tokenizer_max_length`, the text tokens their prompt encoding keeps.
    """
    if not _accepts(pipe, "max_sequence_length"):
        return None
    return getattr(pipe, "tokenizer_max_length", None)


def fit_prompts(pipe: Any, prompts: list[str]) -> list[str]:
    """Cut each prompt at the last whole token that fits the pipeline's text budget.

    Qwen-Image wraps a prompt in its chat template, tokenizes with truncation at `tokenizer_max_length` +
    `prompt_template_encode_start_idx` tokens and then drops that many leading (system prompt) tokens. A
    longer prompt would be truncated by the tokenizer after its end, taking the template's closing
    `<|im_end|>` and assistant turn with it; cut here, the template stays whole and the embeddings are at
    most `tokenizer_max_length` long. A prompt is tokenized alone: the template's text around it ends and
    starts at a line break and a special token, so the token counts add up. Pipelines without these
    attributes are given the prompts unchanged.
    """
    template = getattr(pipe, "prompt_template_encode", None)
    limit = getattr(pipe, "tokenizer_max_length", None)
    drop = getattr(pipe, "prompt_template_encode_start_idx", None)
    tok = getattr(pipe, "tokenizer", None)
    if None in (template, limit, drop, tok) or not getattr(tok, "is_fast", False):
        return list(prompts)
    budget = limit + drop - len(tok(template.format("")).input_ids)
    enc = tok(list(prompts), add_special_tokens=False, return_offsets_mapping=True)
    return [p if len(offs) <= budget else p[:offs[budget - 1][1]]
            for p, offs in zip(prompts, enc["offset_mapping"])]


def _generators(device: str, seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator(device).manual_seed(int(s)) for s in seeds]


def _check_lengths(**lists: list) -> int:
    sizes = {name: len(v) for name, v in lists.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"lengths differ: {sizes}")
    return next(iter(sizes.values()))


def guidance_kwargs(pipe: Any, n: int, guidance_scale: float,
                    image_guidance_scale: float | None = None) -> dict:
    """Map our guidance knobs onto what this pipeline's __call__ accepts.

    Qwen-Image and Qwen-Image-Edit do classifier-free guidance through `true_cfg_scale`, which acts only
    with a negative prompt and a scale above 1 (their `guidance_scale` is for guidance-distilled weights,
    which these are not); pipelines without `true_cfg_scale` take `guidance_scale`. `image_guidance_scale`
    is passed only to pipelines that take it (InstructPix2Pix- and OmniGen2-style editors).
    """
    kw: dict = {}
    if _accepts(pipe, "true_cfg_scale"):
        kw["true_cfg_scale"] = guidance_scale
        if guidance_scale > 1:
            kw["negative_prompt"] = [NEGATIVE_PROMPT] * n
    else:
        kw["guidance_scale"] = guidance_scale
    if image_guidance_scale is not None and _accepts(pipe, "image_guidance_scale"):
        kw["image_guidance_scale"] = image_guidance_scale
    return kw


def _text_kwargs(pipe: Any) -> dict:
    n = max_sequence_length(pipe)
    return {} if n is None else {"max_sequence_length": n}


class TextToImage:
    def __init__(self, path_or_id: str, revision: str | None, device: str = "cpu", dtype: str = "float32"):
        self.model_id = path_or_id
        self.device = device
        self.pipe = load_pipeline(path_or_id, revision, device, dtype)

    @torch.inference_mode()
    def generate(self, prompts: list[str], seeds: list[int], steps: int, guidance_scale: float,
                 height: int, width: int) -> list[Image.Image]:
        """One image per prompt, all in one pipeline call. Prompts longer than the pipeline's text budget
        (1024 tokens for Qwen-Image) are cut to it (see `fit_prompts`)."""
        if _check_lengths(prompts=prompts, seeds=seeds) == 0:
            return []
        out = self.pipe(
            prompt=fit_prompts(self.pipe, prompts), num_inference_steps=steps,
            **guidance_kwargs(self.pipe, len(prompts), guidance_scale), **_text_kwargs(self.pipe),
            height=height, width=width, generator=_generators(self.device, seeds), output_type="pil")
        return list(out.images)


# QwenImageEditPipeline.__call__ (diffusers 0.42.1) sizes its work with the module-level
# `calculate_dimensions(1024 * 1024, aspect_ratio)`: the input image is resized to about 1 MP, VAE-encoded
# and attended to at that size whatever `height`/`width` say (those set only the output). It has no
# argument for this, so `_edit_area` rebinds that one function for the duration of a call; everything
# else runs as written. The lock keeps two threads from rebinding it at once.
_AREA_LOCK = threading.Lock()


@contextmanager
def _edit_area(pipe: Any, size: tuple[int, int]) -> Iterator[None]:
    """Make a Qwen-Image-Edit pipeline process its input at `size` (width, height) during the block."""
    module = sys.modules[type(pipe).__module__]
    original = getattr(module, "calculate_dimensions", None)
    if original is None:  # another editor class: it sizes its work from height/width itself
        yield
        return
    with _AREA_LOCK:
        module.calculate_dimensions = lambda target_area, ratio: (size[0], size[1], None)
        try:
            yield
        finally:
            module.calculate_dimensions = original


def working_size(pipe: Any, size: tuple[int, int], process_pixels: int | None) -> tuple[int, int]:
    """The (width, height) an input of `size` is edited at.

    `process_pixels` None: the input's own size, each side rounded to the pipeline's multiple (16 for
    Qwen-Image-Edit: 8x VAE, 2x2 latent patches). Otherwise about `process_pixels` pixels at the input's
    aspect ratio, as the pipeline's own `calculate_dimensions` computes it (Qwen-Image-Edit's default is
    1024*1024, sides multiples of 32).
    """
    multiple = 2 * getattr(pipe, "vae_scale_factor", 8)
    w, h = size
    if process_pixels is not None:
        calc = getattr(sys.modules[type(pipe).__module__], "calculate_dimensions", None)
        if calc is not None:
            w, h, _ = calc(process_pixels, w / h)
        else:
            scale = (process_pixels / (w * h)) ** 0.5
            w, h = w * scale, h * scale
    return max(multiple, round(w / multiple) * multiple), max(multiple, round(h / multiple) * multiple)


class ImageEditor:
    def __init__(self, path_or_id: str, revision: str | None, device: str = "cpu", dtype: str = "float32"):
        self.model_id = path_or_id
        self.device = device
        self.pipe = load_pipeline(path_or_id, revision, device, dtype)

    @torch.inference_mode()
    def edit(self, images: list[Image.Image], instructions: list[str], seeds: list[int], steps: int,
             guidance_scale: float, image_guidance_scale: float,
             process_pixels: int | None = None) -> list[Image.Image]:
        """Apply instructions[i] to images[i]; each result has the size of its input image.

        The pipeline works at `working_size(input size, process_pixels)` (None: the input's own size,
        rounded to a multiple of 16) and the result is resized back to the input's size. Instructions
        are passed whole: Qwen-Image-Edit neither truncates nor cuts them (they are bounded by
        `edit_plans.max_instruction_chars`).
        """
        n = _check_lengths(images=images, instructions=instructions, seeds=seeds)
        # The pipeline sizes a whole batch from its first image, so batch per input size.
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            by_size[img.size].append(i)
        results: list[Image.Image | None] = [None] * n
        for size, idx in by_size.items():
            work = working_size(self.pipe, size, process_pixels)
            with _edit_area(self.pipe, work):
                out = self.pipe(
                    prompt=[instructions[i] for i in idx], image=[images[i].convert("RGB") for i in idx],
                    num_inference_steps=steps, width=work[0], height=work[1],
                    **guidance_kwargs(self.pipe, len(idx), guidance_scale, image_guidance_scale),
                    **_text_kwargs(self.pipe),
                    generator=_generators(self.device, [seeds[i] for i in idx]), output_type="pil")
            for i, img in zip(idx, out.images):
                results[i] = img if img.size == size else img.resize(size, Image.Resampling.BICUBIC)
        return results  # type: ignore[return-value]
