"""verl (Ray + FSDP + vLLM rollouts) for paper-scale RL: the same examples, reward and recipe as TRL.

What this module produces from our params, so that the DVC outs match the TRL backend's:
- verl parquet rows: prompt text with one `<image>` per image in order, images embedded as PNG bytes with
  the pixel bounds of `rl.min_pixels`/`rl.max_pixels`, ground truth in `reward_model` (JSON text: a list);
- the Hydra overrides for `python -m verl.trainer.main_ppo`;
- the launcher command (1..N nodes: start Ray on each node first, run this on the head node);
- the merge of the last FSDP actor checkpoint into a Hugging Face directory.
The reward function verl loads is `viper/rl/verl_reward.py`.

verl runs from an interpreter of its own (`rl.verl_python`; verl pins its torch, transformers and vLLM, see
requirements-verl-gpu.in), never the DVC stage's. Its Ray workers import `viper` (the reward function does):
the project is installed in that environment, and its root also goes on the workers' PYTHONPATH.

Step accounting: verl counts rollout batches (`trainer.total_training_steps`, `trainer.save_freq`, its log
rows and checkpoints), each of `data.train_batch_size` prompts feeding batch/mini-batch optimizer steps; our
`stage*_steps` and `save_steps` count optimizer steps: verl's = ours / (batch_prompts / mini_batch_prompts).

Keys checked against verl 0.9.1's `trainer/config/ppo_trainer.yaml`; tests_verl compose them with Hydra and
pass them through verl's own `validate_config`.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("viper")

# The checkout `viper` is imported from: relative rl.verl_python paths start here, and Ray workers get it on
# their PYTHONPATH.
ROOT = Path(__file__).resolve().parents[2]
REWARD_ENTRY = Path(__file__).with_name("verl_reward.py")
# verl writes the last completed step here after each checkpoint (trainer/ppo/v1/trainer_base.py) and resumes
# from the global_step_<n> it names (utils/checkpoint/checkpoint_manager.py `find_latest_ckpt_path`).
TRACKER = "latest_checkpointed_iteration.txt"
# Rows of the validation file. verl builds (and filters) its validation set at startup even though we never
# validate (test_freq=-1, val_before_train=False), so it gets one row rather than a copy of the training set.
VAL_ROWS = 1
# Processes for verl's overlong-prompt filter (default 1): it tokenises every multimodal row at startup.
FILTER_WORKERS = 8


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def parquet_rows(examples: list[dict], min_pixels: int, max_pixels: int) -> list[dict]:
    """Our RL examples (viper.rl.data) as verl dataset rows.

    verl hands each image dict to qwen-vl-utils, which resizes to its own defaults (4..16384 visual tokens)
    unless the dict carries `min_pixels`/`max_pixels`; with them, verl's rollouts and training see the same
    visual tokens as the TRL backend's processor."""
    rows = []
    for i, ex in enumerate(examples):
        text = ex["prompt"][0]["content"]
        rows.append({
            "data_source": f"viper/{ex['task']}",
            "prompt": [{"role": "user", "content": "<image>" * len(ex["images"]) + text}],
            "images": [{"bytes": _png(img), "min_pixels": int(min_pixels), "max_pixels": int(max_pixels)}
                       for img in ex["images"]],
            "ability": "perception",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(list(ex["ground_truth"]))},
            "extra_info": {"index": i, "key": ex["key"], "task": ex["task"]},
        })
    return rows


def write_parquet(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def training_steps(optimizer_steps: int, rl: Any) -> int:
    per_rollout = rl.batch_prompts // rl.mini_batch_prompts
    return max(1, math.ceil(optimizer_steps / per_rollout))


def token_budget(rl: Any) -> int:
    """Tokens per GPU per micro-batch (actor update and log-prob passes, dynamic batch size).

    Derived, not a param: max_prompt_length + max_completion_length is the longest sequence verl keeps
    (it filters longer prompts and stops responses there), and verl asserts that one such sequence fits a
    micro-batch (utils/seqlen_balancing.py). Any smaller budget crashes on a worst-case sequence; a larger
    one packs more sequences into a pass and raises the peak. At this budget the logits of a micro-batch
    are those of one full-length sequence: 14,336 tokens x 152K vocab x 4 B, about 8.7 GB at paper scale,
    instead of the 35 GB of four fixed-size 14,336-token sequences."""
    return int(rl.max_prompt_length + rl.max_completion_length)


def _q(value: Any) -> str:
    """A Hydra override value as a quoted string: paths may hold `,` `=` or spaces, and a revision made of
    digits would otherwise become an int. (In Hydra's quoted strings a backslash escapes only quotes.)"""
    return "'" + str(value).replace("'", "\\'") + "'"


def hydra_overrides(rl: Any, reward: Any, *, train_file: str | Path, val_file: str | Path, model_path: str,
                    checkpoint_dir: str | Path, optimizer_steps: int, embedder: tuple[str, str | None],
                    embedder_device: str, images_per_prompt: int = 2, nnodes: int = 1, gpus_per_node: int = 8,
                    experiment: str = "stage1") -> list[str]:
    """The recipe of DESIGN.md §4 as verl overrides, from the same params as the TRL backend."""
    budget = token_budget(rl)
    embedder_path, embedder_revision = embedder
    return [
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",
        f"data.train_files=[{_q(train_file)}]",
        f"data.val_files=[{_q(val_file)}]",
        f"data.train_batch_size={rl.batch_prompts}",
        f"data.max_prompt_length={rl.max_prompt_length}",
        f"data.max_response_length={rl.max_completion_length}",
        "data.filter_overlong_prompts=True",
        f"data.filter_overlong_prompts_workers={FILTER_WORKERS}",
        "data.image_key=images",
        f"actor_rollout_ref.model.path={_q(model_path)}",
        f"actor_rollout_ref.actor.optim.lr={rl.learning_rate}",
        # verl's FSDP optimizer defaults to AdamW weight decay 0.01; the TRL backend (and the paper) use none
        "actor_rollout_ref.actor.optim.weight_decay=0.0",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={rl.mini_batch_prompts}",
        # Micro-batches by token count, not by sequence count (see token_budget). verl's workers require the
        # actor and the rollout log-prob pass to agree on dynamic batching (workers/engine_workers.py).
        "actor_rollout_ref.actor.use_dynamic_bsz=True",
        f"actor_rollout_ref.actor.ppo_max_token_len_per_gpu={budget}",
        "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True",
        f"actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu={budget}",
        # Used only if dynamic batching is turned off; then validate_config requires both.
        f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={rl.micro_batch_completions}",
        f"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu={rl.micro_batch_completions}",
        "actor_rollout_ref.actor.ppo_epochs=1",
        "actor_rollout_ref.actor.use_kl_loss=False",
        f"actor_rollout_ref.actor.kl_loss_coef={rl.beta}",
        f"actor_rollout_ref.actor.clip_ratio_low={rl.epsilon_low}",
        f"actor_rollout_ref.actor.clip_ratio_high={rl.epsilon_high}",
        "actor_rollout_ref.actor.loss_agg_mode=seq-mean-token-mean",  # paper eq. 8
        "actor_rollout_ref.rollout.name=vllm",
        f"actor_rollout_ref.rollout.n={rl.num_generations}",
        f"actor_rollout_ref.rollout.temperature={rl.temperature}",
        # vLLM reserves room for one image per prompt unless told; stage 2 prompts hold two. verl's own key
        # (a RolloutConfig field that its yaml does not list, hence `+`) becomes vLLM's limit_mm_per_prompt.
        f"+actor_rollout_ref.rollout.limit_images={images_per_prompt}",
        # verl's reward loop knows only its registered managers; naive calls compute_score once per sample.
        "reward.reward_manager.source=register",
        "reward.reward_manager.name=naive",
        f"reward.custom_reward_function.path={_q(REWARD_ENTRY)}",
        "reward.custom_reward_function.name=compute_score",
        # each reward worker loads its own BGE-M3 (fp32, about 2.3 GB, on `embedder_device`)
        f"reward.num_workers={rl.verl_reward_workers}",
        f"+reward.custom_reward_function.reward_kwargs.embedder_path={_q(embedder_path)}",
        "+reward.custom_reward_function.reward_kwargs.embedder_revision="
        + ("null" if embedder_revision is None else _q(embedder_revision)),
        f"+reward.custom_reward_function.reward_kwargs.device={_q(embedder_device)}",
        f"+reward.custom_reward_function.reward_kwargs.tau={reward.tau}",
        f"+reward.custom_reward_function.reward_kwargs.w_format={reward.w_format}",
        f"+reward.custom_reward_function.reward_kwargs.w_correct={reward.w_correct}",
        # Ray workers (the reward workers among them) import viper: verl's default runtime env passes no
        # PYTHONPATH (trainer/constants_ppo.py), and main_ppo merges this one over it before ray.init.
        f"+ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH={_q(ROOT)}",
        f"trainer.total_training_steps={training_steps(optimizer_steps, rl)}",
        f"trainer.save_freq={training_steps(rl.save_steps, rl)}",
        # Every save holds the FSDP weights and optimizer states (about 100 GB at 7B); verl keeps them all
        # unless told. One is enough to resume; it is deleted after the merge.
        "trainer.max_actor_ckpt_to_keep=1",
        "trainer.test_freq=-1",
        "trainer.val_before_train=False",
        f"trainer.nnodes={nnodes}",
        f"trainer.n_gpus_per_node={gpus_per_node}",
        # A fresh directory per stage: resume_mode=auto would otherwise pick up stage 1's checkpoint.
        f"trainer.default_local_dir={_q(checkpoint_dir)}",
        "trainer.resume_mode=auto",
        "trainer.project_name=viper",
        f"trainer.experiment_name={experiment}",
        "trainer.logger=['console']",
    ]


def verl_python(rl: Any) -> Path:
    """rl.verl_python, relative paths taken from the project root."""
    path = Path(rl.verl_python).expanduser()
    return path if path.is_absolute() else ROOT / path


def launch_command(overrides: list[str], python: str | Path) -> list[str]:
    """Run on the head node of a Ray cluster (`ray start --head` there, `ray start --address=...` on the
    others); verl spreads FSDP workers and vLLM rollouts over trainer.nnodes x n_gpus_per_node."""
    return [str(python), "-m", "verl.trainer.main_ppo", *overrides]


def checkpointed_step(checkpoint_dir: str | Path) -> int:
    """The step of verl's last complete checkpoint (its tracker file), 0 if there is none."""
    tracker = Path(checkpoint_dir) / TRACKER
    if not tracker.is_file():
        return 0
    return int(tracker.read_text().strip())


def last_actor_checkpoint(checkpoint_dir: str | Path) -> Path:
    step = checkpointed_step(checkpoint_dir)
    actor = Path(checkpoint_dir) / f"global_step_{step}" / "actor"
    if not step or not actor.is_dir():
        raise RuntimeError(f"no complete verl checkpoint under {checkpoint_dir} ({TRACKER} names "
                           f"{step or 'none'}); did training run?")
    return actor


def merge_command(checkpoint_dir: str | Path, target_dir: str | Path, python: str | Path) -> list[str]:
    """FSDP shards of the last step -> a Hugging Face directory (the DVC out, as with TRL)."""
    return [str(python), "-m", "verl.model_merger", "merge", "--backend", "fsdp",
            "--local_dir", str(last_actor_checkpoint(checkpoint_dir)), "--target_dir", str(target_dir)]


_STEP = re.compile(r"step:(\d+)\b")
_METRIC = re.compile(r"(critic/score/mean|critic/rewards/mean):\s*([-\d.eE]+)")


def log_rows(console: str | Iterable[str]) -> list[dict]:
    """Per-step reward from verl's console logger lines (`step:N - ... critic/score/mean:x ...`).

    A resumed run logs again the steps after its checkpoint: the last line of a step wins."""
    lines = console.splitlines() if isinstance(console, str) else console
    by_step: dict[int, dict] = {}
    for line in lines:
        step, score = _STEP.search(line), _METRIC.search(line)
        if step and score:
            by_step[int(step.group(1))] = {
                "step": int(step.group(1)), "reward": float(score.group(2)), "reward_std": None,
                "format": None, "correct": None, "completion_length": None}
    return [by_step[s] for s in sorted(by_step)]


def run_logged(command: list[str], log_path: Path) -> int:
    """Run `command` with its output going straight to `log_path` (appended: a resumed run keeps the log of
    the killed one), so that hours of output are readable while verl runs and never held in memory."""
    with open(log_path, "a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command[:4])} ...\n")
        f.flush()
        return subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode


def _tail(path: Path, chars: int = 3000) -> str:
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - chars))
        return f.read().decode(errors="replace")


def train(init_path: str, examples: list[dict], out_dir: Path, rl: Any, reward: Any, steps: int, *,
          embedder: tuple[str, str | None], embedder_device: str, work_dir: Path,
          experiment: str) -> tuple[list[dict], int]:
    """Run verl on a Ray cluster that is already up, then merge its last checkpoint into `out_dir`.

    `work_dir` is specific to this stage's configuration (see viper.rl.stages), so verl's
    resume_mode=auto resumes a killed run of this stage and never another stage's checkpoints.
    Returns (per-step log rows, verl's step resumed from or 0)."""
    python = verl_python(rl)
    if not python.is_file():
        raise SystemExit(f"rl.verl_python is {rl.verl_python!r}, but {python} does not exist: build verl's "
                         "environment there (see requirements-verl-gpu.in) or point rl.verl_python at it")
    work_dir.mkdir(parents=True, exist_ok=True)
    data = parquet_rows(examples, rl.min_pixels, rl.max_pixels)
    train_file = write_parquet(data, work_dir / "train.parquet")
    val_file = write_parquet(data[:VAL_ROWS], work_dir / "val.parquet")
    ckpt = work_dir / "checkpoints"
    resumed = checkpointed_step(ckpt)
    overrides = hydra_overrides(rl, reward, train_file=train_file, val_file=val_file, model_path=init_path,
                                checkpoint_dir=ckpt, optimizer_steps=steps, embedder=embedder,
                                embedder_device=embedder_device,
                                images_per_prompt=max(len(ex["images"]) for ex in examples),
                                nnodes=rl.nnodes, gpus_per_node=rl.gpus_per_node, experiment=experiment)
    log_path = work_dir / "verl.log"
    log.info("verl %s: %s (from step %d); its output goes to %s", experiment, python, resumed, log_path)
    code = run_logged(launch_command(overrides, python), log_path)
    if code:
        raise SystemExit(f"verl training failed (exit {code}); its log is {log_path}:\n{_tail(log_path)}")
    code = run_logged(merge_command(ckpt, out_dir, python), log_path)
    if code:
        raise SystemExit(f"verl's model merger failed (exit {code}); its log is {log_path}:\n"
                         f"{_tail(log_path)}")
    from transformers import AutoProcessor  # the merged directory gets the processor of the start model

    AutoProcessor.from_pretrained(init_path).save_pretrained(str(out_dir))
    with open(log_path, errors="replace") as f:
        rows = log_rows(f)
    # The model is merged: the checkpoints (about 100 GB each at 7B) and the parquet copies of the
    # examples go; the log stays for reading.
    shutil.rmtree(ckpt, ignore_errors=True)
    for name in ("train.parquet", "val.parquet"):
        (work_dir / name).unlink(missing_ok=True)
    return rows, resumed
