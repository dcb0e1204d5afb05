"""GRPO with TRL, mapped onto the paper's recipe (DESIGN.md §4, paper eq. 8).

Batch mapping (TRL counts completions, the paper counts prompts), on W processes:
  generation_batch_size        = batch_prompts * G             (one rollout batch; paper 128 * 5)
  per_device_train_batch_size  = micro_batch_completions
  gradient_accumulation_steps  = mini_batch_prompts * G / (micro_batch_completions * W)
so each optimizer step sees one mini-batch (paper 64 prompts) and a rollout batch feeds
batch_prompts / mini_batch_prompts optimizer steps; the later ones are off-policy, which is what the
decoupled clip [1 - eps_low, 1 + eps_high] is for. beta = 0 means no reference model is loaded.
W is the real process count (`accelerate launch` starts one per GPU), so the mapping holds on any W.

Precision: the trained policy always keeps float32 master weights, whatever `models.dtype` says (that is
the inference dtype). On CUDA with a 16-bit `models.dtype` the forward and backward passes run under
autocast in that dtype (TRL's bf16/fp16 flags). Updating bf16 weights directly would round away most Adam
steps at the paper's lr 1e-6: bf16 resolves about 0.4 % of a weight, an update is ~1e-6 of it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from viper.rl.reward import ViperReward, completion_text

def process_count() -> int:
    """How many training processes share the run: 1 for `python`, N under `accelerate launch`/torchrun.

    Read from WORLD_SIZE, which both launchers set: accelerate's PartialState() still says 1 on CPU until
    the TrainingArguments have set up the process group, too late for the batch mapping."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def mixed_precision(device: str, dtype: str) -> str | None:
    """The autocast dtype for training on `device` when inference runs in `dtype` (None: plain fp32)."""
    if device == "cuda" and dtype in ("bfloat16", "float16"):
        return dtype
    return None


def grpo_config(rl: Any, out_dir: str, steps: int, seed: int, device: str, world_size: int,
                dtype: str = "float32"):
    from trl import GRPOConfig

    per_step = rl.mini_batch_prompts * rl.num_generations
    if per_step % (rl.micro_batch_completions * world_size):
        raise ValueError(f"rl.mini_batch_prompts * rl.num_generations = {per_step} completions per optimizer step "
                         f"do not split into micro-batches of {rl.micro_batch_completions} on {world_size} "
                         "processes; change rl.micro_batch_completions")
    autocast = mixed_precision(device, dtype)
    return GRPOConfig(
        output_dir=out_dir, max_steps=steps, seed=seed, data_seed=seed,
        learning_rate=rl.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        num_generations=rl.num_generations, temperature=rl.temperature, top_p=1.0, top_k=0,
        epsilon=rl.epsilon_low, epsilon_high=rl.epsilon_high, beta=rl.beta, loss_type=rl.loss_type,
        num_iterations=1, scale_rewards="group",
        per_device_train_batch_size=rl.micro_batch_completions,
        gradient_accumulation_steps=per_step // (rl.micro_batch_completions * world_size),
        generation_batch_size=rl.batch_prompts * rl.num_generations,
        max_completion_length=rl.max_completion_length,
        use_cpu=device == "cpu", bf16=autocast == "bfloat16", fp16=autocast == "float16",
        # Rollouts from a vLLM engine sharing each GPU with the trainer; it sleeps (frees its memory)
        # while the policy trains and gets the new weights before each generation.
        use_vllm=rl.rollout == "vllm", vllm_mode="colocate",
        vllm_gpu_memory_utilization=rl.vllm_gpu_memory_utilization,
        vllm_max_model_length=rl.max_prompt_length + rl.max_completion_length,
        vllm_enable_sleep_mode=rl.rollout == "vllm",
        logging_steps=1, save_strategy="steps", save_steps=rl.save_steps, save_total_limit=1,
        save_only_model=False, report_to="none", disable_tqdm=False,
        remove_unused_columns=False, shuffle_dataset=True,
    )


def trainer_config(rl: Any, work_dir: str | Path, steps: int, seed: int, device: str, dtype: str):
    """grpo_config for this process's launch (python, torchrun or accelerate launch)."""
    n = process_count()
    config = grpo_config(rl, str(work_dir), steps, seed, device, n, dtype)
    if config.world_size != n:  # the batch mapping assumed another process count
        raise RuntimeError(f"the batch mapping assumed {n} processes (WORLD_SIZE) but the trainer runs "
                           f"{config.world_size}; launch with torchrun or accelerate launch")
    return config


def reward_functions(reward: ViperReward) -> list:
    """Two callables so TRL logs format and correctness separately; weights go in reward_weights.

    TRL calls both with the same batch, so the batch is scored once and the parts reused. The reuse is
    keyed on the batch's content (texts and ground truths), never on `id(completions)`: CPython reuses a
    freed list's address, so a later batch could otherwise be handed the previous batch's rewards."""
    last: dict[tuple, list] = {}

    def parts(completions, ground_truth):
        texts = [completion_text(c) for c in completions]
        key = (tuple(texts), tuple(tuple(g) for g in ground_truth))
        if key not in last:
            last.clear()
            last[key] = reward.score(texts, ground_truth)
        return last[key]

    def format_reward(completions, ground_truth, **_: Any) -> list[float]:
        return [p.format for p in parts(completions, ground_truth)]

    def correct_reward(completions, ground_truth, **_: Any) -> list[float]:
        return [p.correct for p in parts(completions, ground_truth)]

    return [format_reward, correct_reward]


def _log_rows(history: list[dict]) -> list[dict]:
    """One row per optimizer step. TRL logs rewards only on steps that generated a rollout batch; the
    steps that train on the rest of that batch get its figures (they are the rewards being optimised)."""
    rows, rollout = [], {}
    for h in history:
        if "reward" in h:
            rollout = {"reward": h["reward"], "reward_std": h.get("reward_std"),
                       "format": h.get("rewards/format_reward/mean"),
                       "correct": h.get("rewards/correct_reward/mean"),
                       "completion_length": h.get("completions/mean_length")}
        if "loss" in h and rollout:
            rows.append({"step": int(h["step"]), **rollout})
    return rows


def curve_callback(log: Any):
    """A Trainer callback that appends each finished optimizer step's row to `log` (a viper.rl.curves.CurveLog)
    as training runs. After a resume the restored history comes first; the log skips steps it has."""
    from transformers import TrainerCallback

    class CurveCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                log.add(_log_rows(state.log_history))

    return CurveCallback()


def last_complete_checkpoint(work_dir: str | Path) -> Path | None:
    """The newest checkpoint that finished saving; newer half-written ones (a kill mid-save) are removed.

    The Trainer writes trainer_state.json after the weights, optimizer and RNG states, and deletes the
    previous checkpoint only after that, so a readable trainer_state.json marks a complete checkpoint."""
    found = sorted(Path(work_dir).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)
    for ckpt in found:
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            return ckpt
        except (OSError, ValueError):
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def build_trainer(init_path: str, examples: list[dict], rl: Any, reward_funcs: list, reward_weights: list[float],
                  steps: int, seed: int, device: str, dtype: str, work_dir: str | Path):
    """A GRPOTrainer for `steps` optimizer steps from `init_path`, checkpointing into `work_dir`."""
    import datasets
    from transformers import set_seed
    from trl import GRPOTrainer

    from viper.backends.vlm import load_processor, load_vlm_model

    set_seed(seed)
    processor = load_processor(init_path, None, rl.min_pixels, rl.max_pixels)
    model = load_vlm_model(init_path, None, device, "float32")  # master weights; see the module docstring
    feats = datasets.Features({
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "images": datasets.Sequence(datasets.Image()),
        "ground_truth": datasets.Sequence(datasets.Value("string")),
        "task": datasets.Value("string"), "key": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_list(examples, features=feats)
    config = trainer_config(rl, work_dir, steps, seed, device, dtype)
    config.reward_weights = reward_weights
    return GRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=ds,
                       processing_class=processor)


def train(init_path: str, examples: list[dict], out_dir: str | Path, rl: Any, reward: ViperReward,
          reward_weights: list[float], steps: int, seed: int, device: str, dtype: str,
          work_dir: str | Path, curves_dir: str | Path) -> tuple[list[dict], int]:
    """Train `steps` optimizer steps from `init_path`; save an HF directory to `out_dir`.

    Trainer checkpoints go to `work_dir` every `rl.save_steps` steps; if it already holds one (a killed
    run of the same configuration), training resumes from it. The per-step curves are written to
    `curves_dir` while it trains (viper.rl.curves). Returns (per-step log rows, the step resumed from or 0)."""
    from viper.rl.curves import CurveLog

    trainer = build_trainer(init_path, examples, rl, reward_functions(reward), reward_weights, steps, seed,
                            device, dtype, work_dir)
    curves = CurveLog(curves_dir)
    trainer.add_callback(curve_callback(curves))
    last = last_complete_checkpoint(work_dir)
    resumed = int(last.name.rsplit("-", 1)[1]) if last else 0
    trainer.train(resume_from_checkpoint=str(last) if last else None)
    out_dir = Path(out_dir)
    trainer.save_model(str(out_dir))
    trainer.processing_class.save_pretrained(str(out_dir))
    rows = _log_rows(trainer.state.log_history)
    curves.add(rows)  # whatever the last log event left out
    shutil.rmtree(work_dir, ignore_errors=True)
    return rows, resumed


def save_run_config(out_dir: str | Path, config: dict) -> None:
    """The resolved RL config travels inside the checkpoint, so a checkpoint explains itself."""
    (Path(out_dir) / "viper_rl.json").write_text(json.dumps(config, sort_keys=True, indent=2) + "\n")
