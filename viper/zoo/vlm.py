"""A tiny, randomly initialised Qwen2.5-VL with a locally built tokenizer and processor.

It has the real architecture (vision tower, M-RoPE, chat template, image tokens), so the same
`from_pretrained`, processor and `generate` code that serves Qwen2.5-VL-7B runs on it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Special tokens of the Qwen2.5-VL family, in their usual order after the byte vocabulary.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# A Jinja chat template in the Qwen style: each turn is `<|im_start|>role\n...<|im_end|>\n`, and every
# image item of a user turn becomes `<|vision_start|><|image_pad|><|vision_end|>` (the processor expands
# the pad to the image's token count).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# English the tiny model's BPE is trained on. Word-like tokens make a random model's samples read as
# random words rather than random bytes, so sentence splitting, embedding similarity and answer
# extraction see text of a realistic shape. Fixed here (not imported from the prompts) so that editing
# a prompt does not rebuild the models.
CORPUS = """
The picture shows a red circle on the left and a blue square on the right. A small green triangle sits
above the yellow square, next to a purple circle. The background is a clear sky, green grass, sand, gray
or a dark night. There are two circles, one square and three triangles. The text in the corner reads A1.
The caption misses the small orange triangle. The caption says the ball is red but it is blue. The square
is below the circle, not above it. The letter in the image is B, not D. Remove the small black circle. Add
a white square behind the tree. Move the green triangle to the right of the red circle. Change the color of
the square from yellow to purple. Make the background night instead of sky. The edit follows the
instruction and nothing else changed. Think about each object, its color, size, shape, count and position,
then answer. Answer with the letter of the correct option: A, B, C or D. The answer is C.
Question: What color is the largest shape? Options: A. red B. blue C. green D. yellow
"""


def build_byte_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """Byte-level BPE (any UTF-8 text encodes) with merges learned from CORPUS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([line for line in CORPUS.splitlines() if line] * 3, trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    return tok


def tiny_qwen2_5_vl(seed: int, vocab_size: int, ids: dict[str, int], hidden: int = 64, layers: int = 2,
                    vision_hidden: int = 32, vision_depth: int = 1):
    """A randomly initialised `Qwen2_5_VLForConditionalGeneration` for a vocabulary of `vocab_size` whose
    special tokens (SPECIAL_TOKENS) have the ids `ids`. Built right after `torch.manual_seed(seed)`, so its
    weights depend only on the arguments. The tiny VLM and the diffusion pipelines' text encoder."""
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    heads = 2
    head_dim = hidden // heads
    # M-RoPE splits head_dim/2 rotary frequencies over (time, height, width).
    quarter = head_dim // 2
    mrope = [quarter - 2 * (quarter // 4), quarter // 4, quarter // 4]
    # A wide init (0.2, not the usual 0.02): a narrowly initialised random model decodes greedily to one
    # repeated token whatever the input, so the benchmark would see identical replies. (Measured on the
    # default seeds: 1 distinct greedy reply out of 24 at 0.02, 24 at 0.2.)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2,
            num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1,
            max_position_embeddings=16384, initializer_range=0.2, rope_scaling={"type": "mrope", "mrope_section": mrope},
            tie_word_embeddings=True,
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=vision_depth, hidden_size=vision_hidden, intermediate_size=vision_hidden * 2,
            num_heads=2, out_hidden_size=hidden, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0],
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], do_sample=False,
    )
    return model


def build_tiny_vlm(out_dir: str | Path, seed: int, hidden: int = 64, layers: int = 2,
                   vision_hidden: int = 32, vision_depth: int = 1, min_pixels: int = 28 * 28,
                   max_pixels: int = 56 * 56) -> None:
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out_dir = Path(out_dir)
    raw = build_byte_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, model_max_length=32768, padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: raw.token_to_id(t) for t in SPECIAL_TOKENS}
    model = tiny_qwen2_5_vl(seed, raw.get_vocab_size(), ids, hidden, layers, vision_hidden, vision_depth)
    image_processor = Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    video_processor = Qwen2VLVideoProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=CHAT_TEMPLATE)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
