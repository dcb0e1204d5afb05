"""VLM inference with transformers: batched, greedy or seeded sampling, JSON-schema constrained.

One class serves the tiny random Qwen2.5-VL and Qwen2.5-VL-7B alike; only the path differs.
A request whose `schema` is set is decoded under an xgrammar grammar compiled from that schema,
so even a random model emits text that parses (unless `max_new_tokens` cuts it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch
from tqdm import tqdm

from viper.backends.requests import VLMRequest, chat_messages  # noqa: F401  (re-exported)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Tokens a policy must never emit as text: the processor would treat them as image slots.
_NEVER_GENERATE = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def _load_error(what: str, path_or_id: str, revision: str | None, exc: Exception) -> RuntimeError:
    return RuntimeError(f"cannot load the VLM {what} from {path_or_id!r} (revision {revision!r}): {exc}. "
                        "For the tiny default run `dvc repro models`; for a hub id check it and the "
                        "revision, and that the weights are in the local cache.")


def load_processor(path_or_id: str, revision: str | None, min_pixels: int, max_pixels: int,
                   trust_remote_code: bool = False):
    from transformers import AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(path_or_id, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # a missing local dir surfaces as an invalid hub id (ValueError)
        raise _load_error("processor", path_or_id, revision, exc) from None
    # Pixel bounds decide the visual token count; set them explicitly so they are a param, not a default.
    proc.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    proc.tokenizer.padding_side = "left"
    return proc


def load_vlm_model(path_or_id: str, revision: str | None, device: str, dtype: str,
                   trust_remote_code: bool = False):
    from transformers import AutoModelForImageTextToText

    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path_or_id, revision=revision, dtype=DTYPES[dtype], use_safetensors=True,
            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error("weights", path_or_id, revision, exc) from None
    return model.to(device).eval()


class SeededSampler:
    """Samples each row with its own generator, then masks all other tokens.

    `generate` then runs greedy over the masked scores, so a batched call gives every row the
    tokens it would get alone: outputs do not depend on batch composition (resume, incremental runs).
    """

    def __init__(self, seeds: list[int], temperature: float):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        picks = [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, self.gens)]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(picks)), torch.tensor(picks, device=scores.device)] = 0.0
        return out


class TransformersVLM:
    def __init__(self, path_or_id: str, revision: str | None = None, *, device: str = "cpu",
                 dtype: str = "float32", min_pixels: int, max_pixels: int, batch_size: int = 8,
                 trust_remote_code: bool = False):
        self.model_id, self.revision = path_or_id, revision
        self.device, self.batch_size = device, batch_size
        self.processor = load_processor(path_or_id, revision, min_pixels, max_pixels, trust_remote_code)
        self.model = load_vlm_model(path_or_id, revision, device, dtype, trust_remote_code)
        tok = self.processor.tokenizer
        self.suppress = [i for i in (tok.convert_tokens_to_ids(t) for t in _NEVER_GENERATE)
                         if i is not None and i != tok.unk_token_id]
        self.calls = 0  # generate() model calls, counted for tests and metrics

    # -- grammar ---------------------------------------------------------------------------------
    @lru_cache(maxsize=32)
    def _compiled(self, schema_json: str):
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(self.processor.tokenizer,
                                                  vocab_size=self.model.config.get_text_config().vocab_size)
        compiler = xgr.GrammarCompiler(info)
        # any_whitespace=False: no unbounded runs of spaces, so bounded schemas always close.
        return compiler.compile_json_schema(schema_json, any_whitespace=False)

    def _grammar_processor(self, schema: dict, n: int):
        import xgrammar as xgr

        compiled = self._compiled(json.dumps(schema, sort_keys=True))
        return xgr.contrib.hf.LogitsProcessor([compiled] * n)

    # -- generation ------------------------------------------------------------------------------
    def generate(self, requests: list[VLMRequest]) -> list[str]:
        """Texts in request order, batched by (schema, length, image count, greedy or sampled)."""
        return [text for text, _ in self._generate_all(requests)]

    def generate_with_ids(self, requests: list[VLMRequest]) -> list[tuple[str, list[int]]]:
        """As `generate`, with each reply's token ids up to and including its end token: what RL scores is
        exactly what was sampled (decoding then re-tokenising a reply can give other tokens)."""
        return self._generate_all(requests)

    def _generate_all(self, requests: list[VLMRequest]) -> list[tuple[str, list[int]]]:
        out: list[tuple[str, list[int]] | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            sig = (json.dumps(r.schema, sort_keys=True) if r.schema else None, r.max_new_tokens,
                   len(r.images), r.seed is None, r.temperature)
            groups.setdefault(sig, []).append(i)
        chunks = [idxs[s:s + self.batch_size] for idxs in groups.values()
                  for s in range(0, len(idxs), self.batch_size)]
        for chunk in tqdm(chunks, desc="generate", unit="batch", disable=len(chunks) < 2):
            for i, pair in zip(chunk, self._generate_batch([requests[i] for i in chunk])):
                out[i] = pair
        return [pair or ("", []) for pair in out]

    @torch.inference_mode()
    def _generate_batch(self, reqs: list[VLMRequest]) -> list[tuple[str, list[int]]]:
        proc = self.processor
        texts = [proc.apply_chat_template(chat_messages(r.text, len(r.images)), tokenize=False,
                                          add_generation_prompt=True) for r in reqs]
        images = [img for r in reqs for img in r.images] or None
        inputs = proc(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
        processors: list = []
        if reqs[0].schema is not None:  # the grammar masks first, then the sampler draws from what is left
            processors.append(self._grammar_processor(reqs[0].schema, len(reqs)))
        if reqs[0].seed is not None:
            processors.append(SeededSampler([r.seed for r in reqs], reqs[0].temperature))
        kwargs: dict[str, Any] = dict(max_new_tokens=reqs[0].max_new_tokens, suppress_tokens=self.suppress,
                                      do_sample=False, temperature=None, top_p=None, top_k=None,
                                      logits_processor=processors)
        self.calls += 1
        gen = self.model.generate(**inputs, **kwargs)
        new = gen[:, inputs["input_ids"].shape[1]:]
        texts = proc.batch_decode(new, skip_special_tokens=True)
        return [(text, self._until_end(row.tolist())) for text, row in zip(texts, new)]

    def _until_end(self, ids: list[int]) -> list[int]:
        """A generated row without the padding after its end token (the end token itself is kept)."""
        ends = self.model.generation_config.eos_token_id
        ends = set(ends if isinstance(ends, list) else [ends]) | {self.processor.tokenizer.pad_token_id}
        for n, tok in enumerate(ids):
            if tok in ends:
                return ids[:n + 1]
        return ids
