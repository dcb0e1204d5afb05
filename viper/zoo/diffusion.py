"""Tiny, randomly initialised Qwen-Image pipelines (text-to-image and editing), built offline from configs.

They are the classes the presets load from Qwen/Qwen-Image and Qwen/Qwen-Image-Edit, saved in the standard
diffusers layout (model_index.json + one folder per component), so `viper.backends.diffusion` loads them with
the code path used for hub checkpoints. Only sizes differ:

- transformer: `QwenImageTransformer2DModel` (the MMDiT), 2 blocks of 2 heads x 16 instead of 60 of 24 x 128;
- vae: `AutoencoderKLQwenImage` with the real structure (8x spatial downsampling, 16 latent channels and their
  latents_mean/std) but 4..16 channels instead of 96..384; a 64x64 image is 8x8 latents, 4x4 packed tokens;
- text_encoder: the tiny Qwen2.5-VL of `viper.zoo.vlm`; its width is the transformer's `joint_attention_dim`;
- tokenizer: `Qwen2Tokenizer` (Qwen's pre-tokenizer, byte-level BPE, so any text encodes) trained on the tiny
  VLM's corpus plus the pipelines' own prompt templates. The pipelines drop a fixed number of leading template
  tokens from the text encoder's output (`prompt_template_encode_start_idx`: 34 / 64, counted with Qwen's
  tokenizer); with this vocabulary the system prompts tokenize to exactly those counts too, so the embeddings
  start at the user's text as they do at paper scale;
- processor (edit only): `Qwen2VLProcessor`, which puts the input image's vision tokens into the prompt;
- scheduler: `FlowMatchEulerDiscreteScheduler` with Qwen-Image's configuration.

The pictures they draw are noise; only shapes and determinism matter. Every module is built right after
`torch.manual_seed(seed + k)`, so the saved bytes depend only on `seed`: building twice gives identical files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImageEditPipeline,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from transformers import Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from viper.zoo.vlm import CHAT_TEMPLATE, CORPUS, SPECIAL_TOKENS, tiny_qwen2_5_vl

TEXT_DIM = 64          # text encoder width == the transformer's joint_attention_dim
LATENT_CHANNELS = 16   # as in Qwen-Image's VAE (its latents_mean/std have 16 entries)
VOCAB_SIZE = 1024      # an upper bound: the BPE runs out of merges at ~670 (every corpus word is one token)
# The edit pipeline's processor resizes the input image to this pixel range for the text encoder (the tiny
# VLM's bounds: a 64x64 image becomes 4 vision tokens).
MIN_PIXELS, MAX_PIXELS = 28 * 28, 56 * 56
# Qwen/Qwen-Image's scheduler_config.json, used for both pipelines.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9,
    base_image_seq_len=256, max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential",
    invert_sigmas=False, stochastic_sampling=False,
)


def prompt_templates() -> list[str]:
    """The prompt templates the installed diffusers' Qwen-Image pipelines wrap every prompt in (read
    from a component-less instance: they are set in __init__)."""
    t2i = QwenImagePipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, transformer=None)
    edit = QwenImageEditPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None, processor=None,
                                 transformer=None)
    return [t2i.prompt_template_encode, edit.prompt_template_encode]


def tiny_qwen_tokenizer() -> Qwen2Tokenizer:
    """Qwen2Tokenizer trained on the tiny corpus and the pipelines' templates (see the module docstring)."""
    lines = [line for line in CORPUS.splitlines() if line] + [t.format("") for t in prompt_templates()]
    base = Qwen2Tokenizer(model_max_length=32768)
    tok = base.train_new_from_iterator(lines * 3, vocab_size=VOCAB_SIZE)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _transformer(seed: int) -> QwenImageTransformer2DModel:
    torch.manual_seed(seed)
    # Attention head size 16, split over the rotary axes (frame, height, width) like Qwen-Image's
    # 128 = 16 + 56 + 56; each part must be even.
    return QwenImageTransformer2DModel(
        patch_size=2, in_channels=LATENT_CHANNELS * 4, out_channels=LATENT_CHANNELS, num_layers=2,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=TEXT_DIM, guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    ).eval()


def _vae(seed: int) -> AutoencoderKLQwenImage:
    # Three downsamplings (len(temperal_downsample)), as in Qwen-Image: the pipelines derive the pixel/latent
    # ratio 2**3 = 8 from it and need height and width in multiples of 16 (latents are packed in 2x2 patches).
    torch.manual_seed(seed)
    return AutoencoderKLQwenImage(
        base_dim=4, z_dim=LATENT_CHANNELS, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
        temperal_downsample=[False, True, True], dropout=0.0,
    ).eval()


def _build(role: str, out_dir: str | Path, seed: int) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_qwen_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    parts = dict(
        vae=_vae(seed), text_encoder=tiny_qwen2_5_vl(seed + 1, len(tokenizer), ids, hidden=TEXT_DIM),
        tokenizer=tokenizer, transformer=_transformer(seed + 2),
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    if role == "edit":
        parts["processor"] = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
            video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
            tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
        pipe = QwenImageEditPipeline(**parts)
    else:
        pipe = QwenImagePipeline(**parts)
    pipe.save_pretrained(out, safe_serialization=True)


def build_tiny_t2i(out_dir: str | Path, seed: int) -> None:
    """A tiny random QwenImagePipeline (text -> image) saved in diffusers layout."""
    _build("t2i", out_dir, seed)


def build_tiny_edit(out_dir: str | Path, seed: int) -> None:
    """A tiny random QwenImageEditPipeline (image + instruction -> image) saved in diffusers layout. Its
    transformer reads the noisy latents followed by the latents of the image being edited."""
    _build("edit", out_dir, seed)
