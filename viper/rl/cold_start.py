"""Optional cold-start SFT before RL (paper §4.3.1 ablation; the paper itself trains with no cold start).

The warm-up data are a few chain-of-thought examples in the policy's own output format, built from
Viper10K: a short templated reasoning, then the ground truth as the answer. With `cold_start.enabled`
false the stage trains nothing and records which model RL starts from, so the DAG is the same either way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from viper.rl import data
from viper.store.viper10k import Viper10K

INIT_FILE = "init.json"  # written instead of weights when the stage passes its input through

REASONING = {
    "caption_refining": "I read the caption, then scan the picture region by region and check each object, "
                        "its attributes, its position and any text against what the caption claims.",
    "visual_operation": "I compare the two pictures region by region, find where they differ, and name the "
                        "single change that turns the first into the second.",
}


def cot_examples(dataset: Viper10K, n: int, seed: int) -> list[dict]:
    """Up to n examples, half from each subset, as prompt/completion pairs."""
    caption = data.caption_examples(dataset)[: n - n // 2]
    operation = data.operation_examples(dataset)[: n // 2]
    out = []
    for ex in data.shuffled(caption + operation, seed):
        answer = "\n".join(ex["ground_truth"])
        completion = f"<think>{REASONING[ex['task']]}</think>\n<answer>{answer}</answer>"
        out.append({"prompt": ex["prompt"], "completion": [{"role": "assistant", "content": completion}],
                    "images": ex["images"], "key": ex["key"]})
    return out


def start_model(stage_dir: str | Path) -> str:
    """The model RL stage 1 starts from: the warmed-up weights, or what the stage passed through."""
    pointer = Path(stage_dir) / INIT_FILE
    return json.loads(pointer.read_text())["init"] if pointer.exists() else str(stage_dir)


def write_pass_through(out_dir: Path, init: str) -> None:
    (out_dir / INIT_FILE).write_text(json.dumps({"init": init}) + "\n")


def train_sft(init_path: str, examples: list[dict], out_dir: Path, params: Any, seed: int, device: str,
              dtype: str, min_pixels: int, max_pixels: int) -> list[dict]:
    """A few SFT steps with TRL's SFTTrainer (loss on the completion only). Returns per-step rows."""
    import datasets
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    from viper.backends.vlm import load_processor, load_vlm_model

    set_seed(seed)
    processor = load_processor(init_path, None, min_pixels, max_pixels)
    model = load_vlm_model(init_path, None, device, dtype)
    ds = datasets.Dataset.from_list(examples)
    work = out_dir.with_name(out_dir.name + ".work")
    config = SFTConfig(output_dir=str(work), max_steps=params.steps, learning_rate=params.learning_rate,
                       per_device_train_batch_size=params.batch_size, seed=seed, logging_steps=1,
                       save_strategy="no", report_to="none", use_cpu=device == "cpu", bf16=False,
                       max_length=None, remove_unused_columns=False, lr_scheduler_type="constant")
    trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=processor)
    trainer.train()
    trainer.save_model(str(out_dir))
    processor.save_pretrained(str(out_dir))
    shutil.rmtree(work, ignore_errors=True)
    return [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h]
