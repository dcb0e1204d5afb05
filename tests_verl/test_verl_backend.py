"""The verl backend against verl 0.9.1 itself (run in .venv-verl: verl pins an older transformers).

Each test drives our rows, overrides and reward through verl's own code: its dataset and multimodal path,
its Hydra config and `validate_config` (as main_ppo calls it), its reward-loop worker and reward manager, its
Ray runtime-env merge, its dynamic micro-batching and its model merger's argument parser. verl itself cannot
train here (no GPU); `train` runs against a stand-in for verl's two commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from viper.config import load_params
from viper.prompts import templates
from viper.rl import verl_backend
from viper.rl.verl_backend import (hydra_overrides, log_rows, parquet_rows, token_budget, training_steps,
                                   write_parquet)

ROOT = Path(__file__).resolve().parent.parent
VERL_CONFIG = Path(verl.__file__).parent / "trainer" / "config"
PERFECT = "<think>look</think><answer>the square is blue</answer>"


def examples() -> list[dict]:
    a = Image.new("RGB", (64, 64), (200, 30, 30))
    b = Image.new("RGB", (1600, 1200), (30, 30, 200))
    return [
        {"prompt": [{"role": "user", "content": templates.POLICY_REFINE.format(caption="a red square")}],
         "images": [a], "ground_truth": ["the square is blue"], "task": "caption_refining", "key": "c1"},
        {"prompt": [{"role": "user", "content": templates.POLICY_OPERATION}], "images": [a, b],
         "ground_truth": ["make the square blue"], "task": "visual_operation", "key": "o1"},
    ]


def paper():
    return load_params(ROOT / "presets" / "paper-7b.yaml")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from viper.zoo.vlm import build_tiny_vlm

    out = tmp_path_factory.mktemp("vlm")
    build_tiny_vlm(out, seed=0)
    return out


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory) -> Path:
    from viper.zoo.embed import build_tiny_bge_m3

    out = tmp_path_factory.mktemp("embed")
    build_tiny_bge_m3(out, seed=0)
    return out


def overrides(tmp_path: Path, p=None, **kw) -> list[str]:
    p = p or paper()
    args = dict(train_file=tmp_path / "t.parquet", val_file=tmp_path / "v.parquet", model_path="/models/base",
                checkpoint_dir=tmp_path / "ckpt", optimizer_steps=p.rl.stage1_steps,
                embedder=("BAAI/bge-m3", "5617a9f61b028005a4858fdac845db406aefb181"), embedder_device="cuda",
                nnodes=2, gpus_per_node=8)
    args.update(kw)
    return hydra_overrides(p.rl, p.reward, **args)


def composed(ov: list[str]):
    with initialize_config_dir(config_dir=str(VERL_CONFIG), version_base=None):
        return compose(config_name="ppo_trainer", overrides=ov)  # an unknown key raises here


def validate(cfg) -> None:
    """What verl's main_ppo.main does with the composed config before Ray starts."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def dataset(tmp_path: Path, tiny_vlm: Path, rows: list[dict]):
    from transformers import AutoProcessor, AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset

    path = write_parquet(rows, tmp_path / "train.parquet")
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 10240,
                               "filter_overlong_prompts": True, "truncation": "error",
                               "return_raw_chat": False, "cache_dir": str(tmp_path / "cache")})
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm)
    ds = RLHFDataset(data_files=[str(path)], tokenizer=tokenizer, config=config, processor=processor)
    return ds, processor, config


def test_rows_load_with_verls_dataset(tmp_path, tiny_vlm):
    ds, processor, _ = dataset(tmp_path, tiny_vlm, parquet_rows(examples(), 784, 3136))
    assert len(ds) == 2
    for i, n_images in enumerate((1, 2)):
        item = ds[i]
        content = item["raw_prompt"][0]["content"]  # verl 0.9 hands structured messages to its agent loop
        assert [c["type"] for c in content] == ["image"] * n_images + ["text"]
        assert content[-1]["text"] == examples()[i]["prompt"][0]["content"]
        chat = processor.apply_chat_template(item["raw_prompt"], tokenize=False, add_generation_prompt=True)
        assert chat.count("<|vision_start|><|image_pad|><|vision_end|>") == n_images
        assert json.loads(item["reward_model"]["ground_truth"]) == examples()[i]["ground_truth"]
        assert item["data_source"] == f"viper/{examples()[i]['task']}"


def test_verl_resizes_images_within_our_pixel_bounds(tmp_path, tiny_vlm):
    """B4: the images verl's agent loop feeds the policy (RLHFDataset.process_multi_modal_info, i.e.
    qwen-vl-utils) have rl.min_pixels..rl.max_pixels pixels; without the bounds in the image dicts a 64x64
    image stays at 56x56 (3,136 px, below the 200,704 floor) and large ones go up to 12.8 M px."""
    from verl.utils.dataset.rl_dataset import RLHFDataset

    rl = paper().rl
    rows = parquet_rows(examples(), rl.min_pixels, rl.max_pixels)
    assert all((im["min_pixels"], im["max_pixels"]) == (200704, 1003520) for r in rows for im in r["images"])
    ds, _, config = dataset(tmp_path, tiny_vlm, rows)
    sizes = []
    for i in range(len(ds)):
        messages = ds[i]["raw_prompt"]
        images, _, _ = asyncio.run(RLHFDataset.process_multi_modal_info(messages, image_patch_size=14,
                                                                        config=config))
        sizes += [im.width * im.height for im in images]
    assert len(sizes) == 3
    assert all(rl.min_pixels <= s <= rl.max_pixels for s in sizes), sizes
    assert sizes[0] == 448 * 448  # 64x64 scaled up to the 200,704-pixel floor (multiples of 28)


def test_overrides_compose_and_pass_verls_validate_config(tmp_path):
    p = paper()
    cfg = composed(overrides(tmp_path, p))
    validate(cfg)  # A2: rejected the old overrides (no rollout log-prob micro-batch)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves, as TaskRunner does
    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.use_kl_loss) == (0.2, 0.28, False)
    assert actor.loss_agg_mode == "seq-mean-token-mean" and actor.optim.lr == p.rl.learning_rate
    assert actor.optim.weight_decay == 0.0  # B7: verl's default is 0.01, TRL's 0.0
    assert (cfg.data.train_batch_size, actor.ppo_mini_batch_size) == (128, 64)
    assert (rollout.n, rollout.temperature) == (5, 1.0)
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (10240, 4096)
    assert cfg.algorithm.adv_estimator == "grpo" and cfg.algorithm.use_kl_in_reward is False
    assert cfg.trainer.total_training_steps == training_steps(p.rl.stage1_steps, p.rl)
    assert cfg.trainer.save_freq == 5  # save_steps 10 optimizer steps = 5 rollout batches
    assert (cfg.trainer.nnodes, cfg.trainer.n_gpus_per_node) == (2, 8)
    # C3: token-budget micro-batches; verl's workers assert that actor and log-prob pass agree
    assert actor.use_dynamic_bsz is True and rollout.log_prob_use_dynamic_bsz is True
    assert actor.ppo_max_token_len_per_gpu == rollout.log_prob_max_token_len_per_gpu == 10240 + 4096
    assert rollout.log_prob_micro_batch_size_per_gpu == actor.ppo_micro_batch_size_per_gpu == 4
    # A9, C5
    assert cfg.trainer.max_actor_ckpt_to_keep == 1
    assert list(cfg.data.val_files) == [str(tmp_path / "v.parquet")]
    assert cfg.data.filter_overlong_prompts_workers == verl_backend.FILTER_WORKERS
    # A1, B6, C1
    assert (cfg.reward.reward_manager.source, cfg.reward.reward_manager.name) == ("register", "naive")
    fn = cfg.reward.custom_reward_function
    assert (fn.path, fn.name) == (str(verl_backend.REWARD_ENTRY), "compute_score")
    assert dict(fn.reward_kwargs) == {"embedder_path": "BAAI/bge-m3",
                                      "embedder_revision": "5617a9f61b028005a4858fdac845db406aefb181",
                                      "device": "cuda", "tau": 0.85, "w_format": 0.05, "w_correct": 0.95}
    assert cfg.reward.num_workers == p.rl.verl_reward_workers
    # A4
    assert cfg.ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH == str(verl_backend.ROOT)


def test_dynamic_bsz_off_still_validates(tmp_path):
    """The fixed micro-batches stay valid for verl should dynamic batching be turned off."""
    validate(composed(overrides(tmp_path) + ["actor_rollout_ref.actor.use_dynamic_bsz=False",
                                             "actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=False"]))


def test_limit_images_reaches_verls_rollout_config(tmp_path):
    """C8: verl's own key (a RolloutConfig field its yaml does not list), which its vLLM server turns into
    limit_mm_per_prompt."""
    from verl.utils.config import omega_conf_to_dataclass

    for n in (1, 2):
        cfg = composed(overrides(tmp_path, images_per_prompt=n))
        assert omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout).limit_images == n
        assert "limit_mm_per_prompt" not in json.dumps(OmegaConf.to_container(cfg.actor_rollout_ref.rollout))


def test_paths_and_revisions_survive_hydra_parsing(tmp_path):
    odd = tmp_path / "a b,c=d"
    cfg = composed(overrides(odd, embedder=(str(odd / "embed"), "1234567")))
    assert list(cfg.data.train_files) == [str(odd / "t.parquet")]
    assert cfg.trainer.default_local_dir == str(odd / "ckpt")
    kw = cfg.reward.custom_reward_function.reward_kwargs
    assert (kw.embedder_path, kw.embedder_revision) == (str(odd / "embed"), "1234567")  # a str, not an int
    cfg = composed(overrides(tmp_path, embedder=("/models/embed", None)))
    assert cfg.reward.custom_reward_function.reward_kwargs.embedder_revision is None


def test_worst_case_sequence_fits_the_token_budget():
    """C3: verl's dynamic batching asserts that the longest prompt + response fits a micro-batch."""
    from tensordict import TensorDict
    from verl.utils.seqlen_balancing import rearrange_micro_batches

    rl = paper().rl
    budget = token_budget(rl)
    length = rl.max_prompt_length + rl.max_completion_length
    batch = TensorDict({"attention_mask": torch.ones(4, length, dtype=torch.long),
                        "input_ids": torch.zeros(4, length, dtype=torch.long)}, batch_size=4)
    micro, _ = rearrange_micro_batches(batch, max_token_len=budget)
    assert len(micro) == 4  # one full-length sequence per pass: logits of 14,336 tokens, not 4 x that
    with pytest.raises(AssertionError):
        rearrange_micro_batches(batch, max_token_len=budget - 1)


RAY_TIMEOUT_S = 120


@pytest.fixture
def fresh_ray():
    """No Ray cluster before the test (run_ppo calls ray.init only when none is up); ours shut down after."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    ray.shutdown()


def test_python_path_reaches_ray_init(tmp_path, fresh_ray):
    """A4: main_ppo.run_ppo merges ray_kwargs.ray_init.runtime_env over verl's defaults, starts a real local
    Ray cluster with it and runs the task runner there: the worker sees our PYTHONPATH and imports our reward
    module from this checkout. One CPU, a fresh cluster (address=local, never one found on the machine),
    include_dashboard=False; on CPU run_ppo skips its nsys check (is_cuda_available is False) and calls
    Runner.remote() then ray.get(runner.run.remote(config))."""
    import signal

    import ray
    from verl.trainer import main_ppo

    seen = tmp_path / "worker.json"

    @ray.remote
    class Runner:
        def run(self, config):
            import viper.rl.verl_reward as reward_module

            seen.write_text(json.dumps({"pid": os.getpid(), "PYTHONPATH": os.environ.get("PYTHONPATH"),
                                        "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL"),
                                        "reward_file": reward_module.__file__}))

    cfg = composed(overrides(tmp_path) + ["ray_kwargs.ray_init.num_cpus=1",
                                          "+ray_kwargs.ray_init.address=local",
                                          "+ray_kwargs.ray_init.include_dashboard=False"])

    timed_out = []

    def too_slow(signum, frame):
        # A KeyboardInterrupt, since ray.get (called without a timeout by run_ppo) lets only that one out of
        # a signal handler: it swallows a TimeoutError and waits on.
        timed_out.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(RAY_TIMEOUT_S)
    try:
        main_ppo.run_ppo(cfg, task_runner_class=Runner)
    except KeyboardInterrupt:
        if not timed_out:
            raise
        pytest.fail(f"run_ppo did not finish within {RAY_TIMEOUT_S} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    worker = json.loads(seen.read_text())
    assert worker["pid"] != os.getpid()  # ran in a Ray worker process, not here
    assert worker["PYTHONPATH"] == str(verl_backend.ROOT)
    assert Path(worker["reward_file"]).resolve() == verl_backend.REWARD_ENTRY.resolve()
    # verl's own defaults are kept alongside ours (verl drops one the launching shell already sets)
    assert worker["VLLM_LOGGING_LEVEL"] == os.environ.get("VLLM_LOGGING_LEVEL", "WARN")


def reward_config(tmp_path: Path, tiny_vlm: Path, tiny_embedder: Path):
    return composed(overrides(tmp_path, model_path=str(tiny_vlm), embedder=(str(tiny_embedder), None),
                              embedder_device="cpu"))


def rollout_batch(tokenizer, row: dict, responses: list[str]):
    """Rollout samples of one prompt as verl hands them to its reward workers (agent_loop.py `_compute_score`,
    reward_loop.py `compute_rm_score`): prompt and response ids, responses right-padded with attention mask 0,
    and the dataset row's fields."""
    from tensordict import TensorDict
    from verl import DataProto

    prompt = torch.tensor(tokenizer("a prompt")["input_ids"], dtype=torch.int64)
    resps = [torch.tensor(tokenizer(r, add_special_tokens=False)["input_ids"], dtype=torch.int64)
             for r in responses]
    width, n = max(len(r) for r in resps), len(resps)
    responses_t = torch.zeros(n, width, dtype=torch.int64)
    mask = torch.zeros(n, len(prompt) + width, dtype=torch.int64)
    for i, r in enumerate(resps):
        responses_t[i, :len(r)] = r
        mask[i, :len(prompt) + len(r)] = 1
    ids = torch.cat([prompt.expand(n, -1), responses_t], dim=1)
    positions = torch.arange(ids.shape[1]).expand(n, -1).clone()
    batch = TensorDict({"prompts": prompt.expand(n, -1).clone(), "responses": responses_t, "input_ids": ids,
                        "attention_mask": mask, "position_ids": positions}, batch_size=n)
    fields = {k: row[k] for k in ("data_source", "reward_model", "extra_info", "ability")}
    non_tensor = {**{k: np.array([v] * n, dtype=object) for k, v in fields.items()},
                  "__num_turns__": np.array([2] * n), "tool_extra_fields": np.array([{}] * n, dtype=object)}
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


def test_reward_through_verls_reward_loop(tmp_path, tiny_vlm, tiny_embedder):
    """A1: verl's reward-loop worker resolves the manager from our config, loads our reward function with
    its reward kwargs, and scores real rows (w_format .05 + w_correct .95)."""
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    cfg = reward_config(tmp_path, tiny_vlm, tiny_embedder)
    assert resolve_reward_manager_cls(cfg) is NaiveRewardManager  # `batch` raised "Unknown reward manager"
    rows = parquet_rows(examples(), 784, 3136)
    responses = [PERFECT,                                        # format 1, correct 1
                 "the square is blue",                           # no tags: format 0, content still scored
                 "<think>hmm</think><answer></answer>"]          # nothing answered: correct 0

    async def score():
        worker = RewardLoopWorker(cfg)  # what RewardLoopManager starts as a Ray actor
        data = rollout_batch(worker.input_tokenizer, rows[0], responses)
        return data, await worker.compute_score_batch(data)  # what compute_rm_score calls on each worker

    data, out = asyncio.run(score())
    assert [o["reward_score"] for o in out] == pytest.approx([1.0, 0.95, 0.05], abs=1e-6)
    assert [o["reward_extra_info"]["format"] for o in out] == [1.0, 0.0, 1.0]
    assert [o["reward_extra_info"]["correct"] for o in out] == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)
    rm = NaiveRewardManager.assemble_rm_scores(data, [o["reward_score"] for o in out])
    last = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(1) - 1
    assert rm.sum(1).tolist() == pytest.approx([1.0, 0.95, 0.05], abs=1e-6)  # on each last response token
    assert rm[torch.arange(3), last].tolist() == pytest.approx([1.0, 0.95, 0.05], abs=1e-6)


def test_reward_function_takes_revision_and_device(tiny_embedder, monkeypatch):
    """B6/C1: the reward workers build the embedder at the pinned revision, on the given device."""
    import viper.backends.embed as embed
    from viper.rl import verl_reward

    built = []
    real = embed.Embedder

    def spy(path, revision=None, device="cpu", **kw):
        built.append((path, revision, device))
        return real(path, revision=revision, device=device, **kw)

    monkeypatch.setattr(embed, "Embedder", spy)
    verl_reward._reward.cache_clear()
    gt = json.dumps(["the square is blue"])
    kw = {"embedder_path": str(tiny_embedder), "embedder_revision": "abc", "device": "cpu"}
    out = verl_reward.compute_score("viper/caption_refining", PERFECT, gt, {"num_turns": 2}, **kw)
    assert out == {"score": pytest.approx(1.0, abs=1e-6), "format": 1.0, "correct": pytest.approx(1.0)}
    verl_reward.compute_score("viper/caption_refining", "x", gt, None, **kw)
    assert built == [(str(tiny_embedder), "abc", "cpu")]  # loaded once per worker process
    verl_reward._reward.cache_clear()


def test_console_log_rows():
    console = ("(TaskRunner) step:1 - actor/lr:1e-06 - critic/score/mean:0.125 - x:1\n"
               "noise line\nstep:2 - critic/score/mean:0.25\n"
               "step:2 - critic/score/mean:0.5\n")  # a resumed run logs step 2 again: the last one wins
    assert [(r["step"], r["reward"]) for r in log_rows(console)] == [(1, 0.125), (2, 0.5)]


def test_commands_use_verl_python_and_verls_merger_parses_ours(tmp_path, monkeypatch):
    """A4: both commands start from rl.verl_python (relative to the project root), never the stage's
    interpreter; the merge command is one verl's model merger accepts, for the tracked checkpoint."""
    from verl.model_merger.base_model_merger import generate_config_from_args, parse_args

    rl = SimpleNamespace(verl_python=".venv-verl/bin/python")
    assert verl_backend.verl_python(rl) == verl_backend.ROOT / ".venv-verl" / "bin" / "python"
    absolute = SimpleNamespace(verl_python="/opt/verl/bin/python")
    assert verl_backend.verl_python(absolute) == Path("/opt/verl/bin/python")
    python = verl_backend.verl_python(rl)
    assert verl_backend.launch_command(["a=1"], python) == [str(python), "-m", "verl.trainer.main_ppo", "a=1"]

    ckpt = tmp_path / "ckpt"
    for step in (10, 20):
        (ckpt / f"global_step_{step}" / "actor").mkdir(parents=True)
    (ckpt / "global_step_30").mkdir()  # a save cut short: no tracker entry, no actor
    (ckpt / verl_backend.TRACKER).write_text("20")
    cmd = verl_backend.merge_command(ckpt, tmp_path / "out", python)
    assert cmd[:3] == [str(python), "-m", "verl.model_merger"]
    monkeypatch.setattr(sys, "argv", ["verl.model_merger", *cmd[3:]])
    config = generate_config_from_args(parse_args())
    assert (config.operation, config.backend) == ("merge", "fsdp")
    assert config.local_dir == str(ckpt / "global_step_20" / "actor")
    assert config.target_dir == str(tmp_path / "out")


def test_checkpointed_step_reads_verls_tracker(tmp_path):
    """C2: the step verl resumes from is its tracker's, not a count of global_step_* directories."""
    assert verl_backend.checkpointed_step(tmp_path) == 0
    for step in (10, 20):
        (tmp_path / f"global_step_{step}").mkdir()
    (tmp_path / verl_backend.TRACKER).write_text("20\n")
    assert verl_backend.checkpointed_step(tmp_path) == 20


FAKE_VERL = r'''
import json, os, sys, time
args = sys.argv[1:]
log = os.environ["FAKE_VERL_CALLS"]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\n")
if args[:2] == ["-m", "verl.trainer.main_ppo"]:
    ov = dict(a.lstrip("+").split("=", 1) for a in args[2:])
    import pandas
    val = ov["data.val_files"].strip("[]'")
    with open(log, "a") as f:
        f.write(json.dumps({"val_rows": len(pandas.read_parquet(val))}) + "\n")
    ckpt = ov["trainer.default_local_dir"].strip("'")
    total = int(ov["trainer.total_training_steps"])
    tracker = os.path.join(ckpt, "latest_checkpointed_iteration.txt")
    start = int(open(tracker).read()) if os.path.exists(tracker) else 0
    for step in range(start + 1, total + 1):
        print(f"(TaskRunner pid=1) step:{step} - critic/score/mean:{step / 10}", flush=True)
    # the output is in the log file while the process runs, not handed over at its end
    text = open(os.environ["FAKE_VERL_LOG"]).read()
    if f"step:{total} -" not in text:
        sys.exit(3)
    os.makedirs(os.path.join(ckpt, f"global_step_{total}", "actor"), exist_ok=True)
    with open(tracker, "w") as f:
        f.write(str(total))
elif args[:3] == ["-m", "verl.model_merger", "merge"]:
    target = args[args.index("--target_dir") + 1]
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "merged_from.txt"), "w") as f:
        f.write(args[args.index("--local_dir") + 1])
else:
    sys.exit(2)
'''


def test_train_runs_verl_python_logs_as_it_runs_and_frees_checkpoints(tmp_path, tiny_vlm, monkeypatch):
    """A4, A9, C2, C5, C6 through `train`, with a stand-in for verl's two commands at rl.verl_python."""
    script = tmp_path / "fake_verl.py"
    script.write_text(FAKE_VERL)
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    python.chmod(0o755)
    work = tmp_path / "work"
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_VERL_CALLS", str(calls))
    monkeypatch.setenv("FAKE_VERL_LOG", str(work / "verl.log"))
    p = paper()
    rl = p.rl.model_copy(update={"verl_python": str(python)})
    # a killed earlier run of this stage left steps 10 and 20; verl resumes from its tracker's step 20
    ckpt = work / "checkpoints"
    for step in (10, 20):
        (ckpt / f"global_step_{step}" / "actor").mkdir(parents=True)
    (ckpt / verl_backend.TRACKER).write_text("20")

    out = tmp_path / "out"
    rows, resumed = verl_backend.train(str(tiny_vlm), examples(), out, rl, p.reward, p.rl.stage1_steps,
                                       embedder=("BAAI/bge-m3", "abc"), embedder_device="cuda", work_dir=work,
                                       experiment="stage1")
    total = training_steps(p.rl.stage1_steps, p.rl)
    assert resumed == 20
    assert [r["step"] for r in rows] == list(range(21, total + 1))
    assert rows[-1]["reward"] == pytest.approx(total / 10)
    launched, val, merged = [json.loads(line) for line in calls.read_text().splitlines()]
    assert val == {"val_rows": 1}  # C5: verl builds a validation set at startup; not the training set again
    assert launched[:2] == ["-m", "verl.trainer.main_ppo"]
    assert merged[:3] == ["-m", "verl.model_merger", "merge"]
    assert (out / "merged_from.txt").read_text() == str(ckpt / f"global_step_{total}" / "actor")
    assert (out / "processor_config.json").exists()  # the start model's processor
    assert "+actor_rollout_ref.rollout.limit_images=2" in launched
    assert not ckpt.exists() and not (work / "train.parquet").exists()  # A9: freed after the merge
    assert (work / "verl.log").read_text().count("critic/score/mean") == total - 20


def test_train_keeps_the_log_tail_when_verl_fails(tmp_path, tiny_vlm):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'Traceback: ValueError: Unknown reward manager: batch'\nexit 1\n")
    python.chmod(0o755)
    p = paper()
    rl = p.rl.model_copy(update={"verl_python": str(python)})
    with pytest.raises(SystemExit, match="Unknown reward manager"):
        verl_backend.train(str(tiny_vlm), examples(), tmp_path / "out", rl, p.reward, 2,
                           embedder=("BAAI/bge-m3", None), embedder_device="cuda", work_dir=tmp_path / "work",
                           experiment="stage1")
    assert (tmp_path / "work" / "checkpoints").exists() is False and (tmp_path / "work" / "verl.log").exists()


def test_missing_verl_python_is_named(tmp_path, tiny_vlm):
    p = paper()
    rl = p.rl.model_copy(update={"verl_python": "no/such/python"})
    with pytest.raises(SystemExit, match="rl.verl_python"):
        verl_backend.train(str(tiny_vlm), examples(), tmp_path / "out", rl, p.reward, 2,
                           embedder=("BAAI/bge-m3", None), embedder_device="cuda", work_dir=tmp_path / "work",
                           experiment="stage1")
