"""RL examples from a verified Viper10K directory (viper.store.viper10k), one schema for every backend.

An example is {"prompt": chat messages, "images": [PIL, ...], "ground_truth": [str, ...], "task": str}.
Stage-1 (caption_refining): image + its own caption -> the list of refinements.
Stage-2 (visual_operation): original + edited image -> the edit instruction.
"""

from __future__ import annotations

import numpy as np

from viper.prompts import templates
from viper.store.viper10k import Viper10K


def caption_examples(dataset: Viper10K) -> list[dict]:
    out = []
    for s in dataset.samples("caption_refining"):
        meta = s["json"]
        out.append({"prompt": [{"role": "user", "content": templates.POLICY_REFINE.format(caption=meta["caption"])}],
                    "images": [s["png"].convert("RGB")], "ground_truth": list(meta["refinements"]),
                    "task": "caption_refining", "key": s["__key__"]})
    return out


def operation_examples(dataset: Viper10K) -> list[dict]:
    out = []
    for s in dataset.samples("visual_operation"):
        out.append({"prompt": [{"role": "user", "content": templates.POLICY_OPERATION}],
                    "images": [s["src.png"].convert("RGB"), s["edited.png"].convert("RGB")],
                    "ground_truth": [s["json"]["instruction"]], "task": "visual_operation",
                    "key": s["__key__"]})
    return out


def shuffled(examples: list[dict], seed: int) -> list[dict]:
    order = np.random.default_rng(seed).permutation(len(examples))
    return [examples[i] for i in order]


def prompt_tokens(processor, example: dict) -> int:
    """Prompt length in tokens, image tokens included, as the policy will see it."""
    from viper.backends.vlm import chat_messages

    text = processor.apply_chat_template(chat_messages(example["prompt"][0]["content"], len(example["images"])),
                                         tokenize=False, add_generation_prompt=True)
    return int(processor(text=[text], images=example["images"], return_tensors="pt")["input_ids"].shape[1])
