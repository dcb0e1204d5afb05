"""GPU smoke test: every model path the presets use, once, through the project's own code.

Paths (each runs even if an earlier one failed; one line each, then exit 1 if any failed):
  reward    ViperReward on the tiny BGE-M3 through `viper.models.load_embedder` (fp32, as in the stages)
  t2i       tiny QwenImagePipeline through `viper.models.load_t2i` (bf16, 1024x1024 like the presets)
  edit      tiny QwenImageEditPipeline through `viper.models.load_editor` (bf16, ~1 MP working area)
  grpo      two TRL GRPO steps through `viper.rl.trl_backend.build_trainer` (device cuda, dtype bfloat16):
            asserts fp32 master weights, bf16 autocast on, and that the paper's lr 1e-6 moved them
  vlm       Qwen2.5-VL generate through `viper.models.load_vlm` (transformers backend, bf16) at the real 7B
            shapes (or 3B, `--vlm-shape`) with random weights: initialised on the GPU, saved, then loaded and
            run by the project's loader, greedy and seeded requests with two images each
Each line reads `<path> ok|failed <seconds>s peak_gpu_mem=<GiB>`, plus a note, or the exception's last line.
The tiny models come from `viper.zoo` (the `models` stage's builders), built into a temporary folder first
(line `build`). The real-shape VLM uses the tiny tokenizer: the token ids are the tiny ones, the tensor
shapes are Qwen2.5-VL's. It runs last, being the slowest (about 16 GiB written and read back).

`--device cpu` is a dry run of the same code for machines without a GPU: float32, tiny VLM, small images.

On the GPU machine (torch and transformers are there, not the rest; see benchmarks/gpu_smoke_wheels.sh):
  bash benchmarks/gpu_smoke_wheels.sh     # here, once: 12 wheels into .whl/ (about 24 MiB; the repo ~1 MiB)
then the device tool's `run` with carry [".whl"], timeout_s 420, and the command
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; set -o pipefail; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_smoke.py --device cuda 2>&1 | tee $OUT/gpu_smoke.log
To rerun only what failed: `--paths grpo,vlm`; if the 7B round trip is too slow, `--vlm-shape 3b`.
The machine's torch (2.11) differs from requirements.lock's (2.14) and is used as is, as are its
huggingface_hub (1.33; the lock's 2.x needs httpx2, absent there) and tokenizers (0.23.2), which satisfy the
carried packages; `datasets` 5.2 needs its pyarrow to be 24 or later (pyarrow's wheel, 55 MiB, cannot travel).
The header line prints the versions found. Not exercised: xgrammar (schema-constrained decoding; not
there), vLLM and verl (environments of their own), open_clip (the `clip` role), real tokenizers and weights.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from viper.models import TINY_CLASSES  # noqa: E402

# Qwen2.5-VL-Instruct text towers (config.json of the hub checkpoints); the vision tower is shared.
REAL_TEXT = {
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
    "3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
}
REAL_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, window_size=112, hidden_act="silu",
                   fullatt_block_indexes=[7, 15, 23, 31])


def image(i: int, size=(448, 336)):
    from PIL import Image

    return Image.new("RGB", size, (40 * i % 256, 120, 200 - 20 * i))


def build_tiny(models_dir: Path) -> str:
    """The tiny models of the four roles, and a manifest naming them, as the `models` stage writes it."""
    from viper.zoo.embed import build_tiny_bge_m3
    from viper.zoo.vlm import build_tiny_vlm

    builders, errors, manifest = {"vlm": build_tiny_vlm, "embed": build_tiny_bge_m3}, [], {}
    try:  # imports diffusers: a broken install fails t2i and edit, not the other paths
        from viper.zoo.diffusion import build_tiny_edit, build_tiny_t2i
        builders.update(t2i=build_tiny_t2i, edit=build_tiny_edit)
    except Exception as e:
        errors.append(f"t2i/edit: {last_line(e)}")
    for role, build in builders.items():
        try:
            build(models_dir / role, 0)
            manifest[role] = {"path": role, "id": f"smoke/{role}", "revision": None, "class": TINY_CLASSES[role]}
        except Exception as e:
            errors.append(f"{role}: {last_line(e)}")
    (models_dir / "manifest.json").write_text(json.dumps(manifest))
    if errors:
        raise RuntimeError("; ".join(errors))
    return "built " + ", ".join(manifest)


def reward_path(models_dir: Path, device: str, dtype: str) -> str:
    from viper.config import load_params
    from viper.models import load_embedder
    from viper.rl.reward import ViperReward
    from viper.rl.trl_backend import reward_functions

    r = load_params(ROOT / "params.yaml").reward
    # The embedder is fp32 on every device (viper.backends.embed); `dtype` concerns the other paths.
    embedder = load_embedder(models_dir, SimpleNamespace(device=device))
    reward = ViperReward(embedder, tau=r.tau, w_format=r.w_format, w_correct=r.w_correct)
    truth = "The red circle is on the left of the blue square."
    texts = [f"<think>look</think><answer>{truth}</answer>", truth, "<think>x</think><answer></answer>"]
    truths = [[truth], [truth], ["Add a white square."]]
    got = [(p.format, round(p.correct, 4)) for p in reward.score(texts, truths)]
    assert got == [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0)], got
    fmt, cor = reward_functions(reward)  # the callables TRL is handed, on conversational completions
    conv = [[{"role": "assistant", "content": t}] for t in texts]
    assert fmt(conv, truths) == [1.0, 0.0, 1.0] and cor(conv, truths)[2] == 0.0
    where = next(embedder._m.model.parameters()).device.type
    assert where == device, f"the embedder ran on {where}, not {device}"
    return f"scores {got}"


def t2i_path(models_dir: Path, device: str, dtype: str) -> str:
    from viper.models import load_t2i

    side, steps = (1024, 4) if device == "cuda" else (64, 2)
    t2i = load_t2i(models_dir, SimpleNamespace(device=device, dtype=dtype))
    imgs = t2i.generate(["a red circle", "two blue squares on grass"], seeds=[1, 2], steps=steps,
                        guidance_scale=4.0, height=side, width=side)
    assert [im.size for im in imgs] == [(side, side)] * 2
    assert next(t2i.pipe.transformer.parameters()).dtype == getattr(torch, dtype)
    return f"2 images {side}x{side}, {steps} steps"


def edit_path(models_dir: Path, device: str, dtype: str) -> str:
    from viper.backends.diffusion import working_size
    from viper.models import load_editor

    size, pixels, steps = ((768, 512), 1024 * 1024, 4) if device == "cuda" else ((64, 64), None, 2)
    editor = load_editor(models_dir, SimpleNamespace(device=device, dtype=dtype))
    out = editor.edit([image(1, size), image(2, size)], ["remove the circle", "make it night"], seeds=[1, 2],
                      steps=steps, guidance_scale=4.0, image_guidance_scale=1.5, process_pixels=pixels)
    assert [im.size for im in out] == [size] * 2
    return f"2 edits of {size[0]}x{size[1]} at {working_size(editor.pipe, size, pixels)}, {steps} steps"


def grpo_path(models_dir: Path, device: str, dtype: str) -> str:
    from viper.config import load_params
    from viper.prompts import templates
    from viper.rl.reward import completion_text
    from viper.rl.trl_backend import build_trainer, mixed_precision

    # the tiny default's batches at the paper's lr: the point is that fp32 master weights move at 1e-6
    rl = load_params(ROOT / "params.yaml").rl.model_copy(update={"learning_rate": 1e-6})

    def length_reward(completions, **_):  # varies within a group, so advantages (and gradients) are non-zero
        return [len(completion_text(c)) / 100.0 for c in completions]

    examples = [{"prompt": [{"role": "user", "content": templates.POLICY_OPERATION}],
                 "images": [image(i, (64, 64)), image(i, (64, 64)).rotate(90)],
                 "ground_truth": ["rotate the picture"], "task": "visual_operation", "key": f"k{i}"}
                for i in range(rl.batch_prompts)]
    with tempfile.TemporaryDirectory() as work:
        trainer = build_trainer(str(models_dir / "vlm"), examples, rl, [length_reward], [1.0], steps=2, seed=0,
                                device=device, dtype=dtype, work_dir=work)
        before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
        trainer.train()
    params = dict(trainer.model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values()), "master weights are not float32"
    assert all(p.device.type == device for p in params.values())
    autocast = "bfloat16" if trainer.args.bf16 else "float16" if trainer.args.fp16 else "no"
    assert autocast == (mixed_precision(device, dtype) or "no"), f"autocast {autocast} for {device}/{dtype}"
    assert trainer.state.global_step == 2, trainer.state.global_step
    moved = sum(not torch.equal(before[k], p) for k, p in params.items())
    assert moved, f"no parameter moved at lr {rl.learning_rate}"
    return f"{moved}/{len(params)} tensors moved at lr {rl.learning_rate}, fp32 weights, autocast {autocast}"


def real_vlm(models_dir: Path, shape: str, device: str) -> str:
    """Random Qwen2.5-VL weights at real shapes, built on the GPU in bf16 and saved beside the tiny VLM, with its
    tokenizer and processor. Returns the folder's name."""
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tiny, out = models_dir / "vlm", models_dir / f"vlm_{shape}"
    shutil.copytree(tiny, out, ignore=shutil.ignore_patterns("*.safetensors*", "config.json"))
    ids = json.loads((tiny / "config.json").read_text())
    tok = {k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                               "vision_end_token_id", "bos_token_id", "eos_token_id", "pad_token_id")}
    text = REAL_TEXT[shape]
    config = Qwen2_5_VLConfig(
        text_config=dict(text, max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1e6,
                         rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
                         **{k: tok[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}),
        vision_config=dict(REAL_VISION, out_hidden_size=text["hidden_size"]),
        tie_word_embeddings=text["tie_word_embeddings"], **tok)
    with torch.device(device):  # initialise on the GPU: minutes faster than on the CPU at this size
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=tok["eos_token_id"], pad_token_id=tok["pad_token_id"])
    model.save_pretrained(out, safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    return out.name


def vlm_path(models_dir: Path, device: str, dtype: str, shape: str) -> str:
    from viper.backends.requests import VLMRequest
    from viper.models import load_vlm

    note, t0 = "tiny", time.perf_counter()
    if shape != "tiny":
        manifest = json.loads((models_dir / "manifest.json").read_text())
        manifest["vlm"]["path"] = real_vlm(models_dir, shape, device)
        (models_dir / "manifest.json").write_text(json.dumps(manifest))
        note = f"qwen2.5-vl-{shape} shapes, init+save {time.perf_counter() - t0:.0f}s"
    # The presets' pixel bounds (256..1280 visual tokens per image) on a cuda run; the tiny default's on cpu.
    pixels = (200704, 1003520) if device == "cuda" else (784, 3136)
    vlm = load_vlm(models_dir, SimpleNamespace(device=device, dtype=dtype, trust_remote_code=False), *pixels,
                   batch_size=4)
    t1 = time.perf_counter()
    n_params = sum(p.numel() for p in vlm.model.parameters())  # loads the model
    assert next(vlm.model.parameters()).dtype == getattr(torch, dtype)
    t2 = time.perf_counter()
    reqs = [VLMRequest(f"Describe picture {i}.", (image(i), image(i + 1)), max_new_tokens=32,
                       seed=None if i < 2 else i) for i in range(4)]
    texts = vlm.generate(reqs)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts) and vlm.calls == 2
    return (f"{note}, {n_params / 1e6:,.0f}M params, load {t2 - t1:.0f}s, "
            f"generate 2x2 requests x 32 tokens {time.perf_counter() - t2:.1f}s")


def last_line(exc: BaseException) -> str:
    """The traceback's last line, `Type: message`, kept to one line (a long message's first and last lines)."""
    lines = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"


def run(name: str, fn, device: str) -> bool:
    cuda = device == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start, ok = time.perf_counter(), True
    try:
        tail = fn()
    except Exception as e:
        ok, tail = False, last_line(e)
        traceback.print_exc(file=sys.stdout)
        traceback.clear_frames(e.__traceback__)  # let go of the path's models before the next one
    mem = f"{torch.cuda.max_memory_allocated() / 2**30:.2f}" if cuda else "n/a"
    print(f"{name} {'ok' if ok else 'failed'} {time.perf_counter() - start:.1f}s peak_gpu_mem={mem}  {tail}",
          flush=True)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return ok


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {sys.version.split()[0]}"]
    for pkg in ("torch", "transformers", "trl", "accelerate", "datasets", "pyarrow", "diffusers", "FlagEmbedding",
                "peft", "pydantic", "huggingface_hub", "tokenizers"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} missing")
    if torch.cuda.is_available():
        out.append(torch.cuda.get_device_name())
    return ", ".join(out)


def main() -> int:
    paths = ["reward", "t2i", "edit", "grpo", "vlm"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--vlm-shape", choices=["7b", "3b", "tiny"], default=None,
                    help="the VLM path's model: real shapes (default on cuda: 7b) or the tiny one (cpu)")
    ap.add_argument("--paths", default=",".join(paths), help=f"comma-separated subset of {','.join(paths)}")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible; use --device cpu for a dry run", flush=True)
        return 2
    shape = args.vlm_shape or ("7b" if args.device == "cuda" else "tiny")
    if shape != "tiny" and args.device != "cuda":
        ap.error("real-shape VLMs are initialised on the GPU: --vlm-shape tiny with --device cpu")
    dtype = "bfloat16" if args.device == "cuda" else "float32"  # the presets' dtype; float32 on cpu
    print("#", versions(), flush=True)
    chosen = [p for p in args.paths.split(",") if p]
    unknown = set(chosen) - set(paths)
    if unknown:
        ap.error(f"unknown paths {sorted(unknown)}")
    fns = {"reward": reward_path, "t2i": t2i_path, "edit": edit_path, "grpo": grpo_path,
           "vlm": lambda d, dev, dt: vlm_path(d, dev, dt, shape)}
    with tempfile.TemporaryDirectory(prefix="viper-smoke-") as tmp:
        models_dir = Path(tmp)
        results = [run("build", lambda: build_tiny(models_dir), args.device)]
        for name in chosen:
            results.append(run(name, lambda f=fns[name]: f(models_dir, args.device, dtype), args.device))
    print(f"# {sum(results)}/{len(results)} ok", flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
