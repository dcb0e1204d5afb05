import json
import os
import subprocess
import sys

from viper.config import Rl, load_params
from viper.rl.trl_backend import _log_rows, grpo_config, mixed_precision


def paper_rl(root) -> Rl:
    shipped = load_params(root / "params.yaml").rl.model_dump()
    shipped.update(batch_prompts=128, mini_batch_prompts=64, micro_batch_completions=4, num_generations=5,
                   max_completion_length=4096, learning_rate=1e-6)
    return Rl(**shipped)


def test_paper_batches_map_onto_trl_knobs(root, tmp_path):
    cfg = grpo_config(paper_rl(root), str(tmp_path), steps=10, seed=0, device="cpu", world_size=1)
    assert cfg.generation_batch_size == 640           # 128 prompts x 5 rollouts
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 320  # 64 prompts x 5
    assert cfg.steps_per_generation == 160            # 640 / 4: two optimizer steps per rollout batch
    assert (cfg.epsilon, cfg.epsilon_high, cfg.beta, cfg.loss_type) == (0.2, 0.28, 0.0, "grpo")
    assert (cfg.num_generations, cfg.temperature, cfg.learning_rate, cfg.num_iterations) == (5, 1.0, 1e-6, 1)
    cfg8 = grpo_config(paper_rl(root), str(tmp_path), steps=10, seed=0, device="cpu", world_size=8)
    assert cfg8.gradient_accumulation_steps == 10      # 320 completions over 8 processes x 4


# Run under torchrun: the trainer's config must see both processes, so that each optimizer step still
# covers one mini-batch (mini_batch_prompts x G completions) over all of them.
LAUNCHED = """
import json, os, sys
from viper.config import load_params
from viper.rl.trl_backend import trainer_config
rl = load_params(sys.argv[1]).rl.model_copy(update={"mini_batch_prompts": 4, "micro_batch_completions": 5})
cfg = trainer_config(rl, sys.argv[2], 2, 0, "cpu", "float32")
# one write() per rank: print() writes the text and the newline apart, and two ranks' lines could interleave
os.write(1, ("CFG" + json.dumps([cfg.world_size, cfg.per_device_train_batch_size,
                                  cfg.gradient_accumulation_steps]) + "\\n").encode())
"""


def test_batch_mapping_counts_the_launched_processes(root, tmp_path):
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = subprocess.run([torchrun, "--nproc_per_node", "2", str(script), str(root / "params.yaml"),
                          str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = [json.loads(line[3:]) for line in out.stdout.splitlines() if line.startswith("CFG")]
    # 4 prompts x 5 completions per optimizer step = 2 processes x 5 per micro-batch x 2 accumulations
    assert seen == [[2, 5, 2], [2, 5, 2]]


def test_training_precision_follows_device_not_inference_dtype():
    assert mixed_precision("cuda", "bfloat16") == "bfloat16"
    assert mixed_precision("cuda", "float16") == "float16"
    assert mixed_precision("cuda", "float32") is None
    assert mixed_precision("cpu", "bfloat16") is None  # CPU trains in plain float32


def test_log_rows_give_every_step_its_rollout_reward():
    history = [
        {"step": 1, "loss": 0.1, "reward": 0.5, "reward_std": 0.1, "rewards/format_reward/mean": 0.0,
         "rewards/correct_reward/mean": 0.52, "completions/mean_length": 30.0},
        {"step": 2, "loss": 0.2},
        {"step": 3, "loss": 0.0, "reward": 0.25, "reward_std": 0.0, "rewards/format_reward/mean": 1.0,
         "rewards/correct_reward/mean": 0.21, "completions/mean_length": 12.0},
        {"step": 3, "train_runtime": 1.0},
    ]
    rows = _log_rows(history)
    assert [(r["step"], r["reward"], r["correct"]) for r in rows] == [(1, 0.5, 0.52), (2, 0.5, 0.52), (3, 0.25, 0.21)]


def test_half_written_checkpoints_are_skipped_and_removed(tmp_path):
    from viper.rl.trl_backend import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none") is None
    for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2}'), (3, None), (4, '{"glo')):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (d / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]


def test_vllm_rollouts_colocate_with_the_trainer(root, tmp_path):
    rl = paper_rl(root).model_copy(update={"rollout": "vllm", "vllm_gpu_memory_utilization": 0.35})
    cfg = grpo_config(rl, str(tmp_path), steps=10, seed=0, device="cpu", world_size=1)
    assert (cfg.use_vllm, cfg.vllm_mode, cfg.vllm_gpu_memory_utilization) == (True, "colocate", 0.35)
    assert cfg.vllm_max_model_length == 10240 + 4096 and cfg.vllm_enable_sleep_mode
    assert not grpo_config(paper_rl(root), str(tmp_path), steps=10, seed=0, device="cpu", world_size=1).use_vllm
