"""The ViPER reward (paper eq. 5-7), shared by every RL backend.

Policy output format: reasoning inside <think>...</think>, then the answer inside <answer>...</answer>,
one item per line (see viper/prompts/templates.py). With S = the answer's sentences s_1..s_N and
G = the ground-truth items g_1..g_M (refinement points, or the edit instruction):

    hit(s_i)  = max_j cos(e(s_i), e(g_j)) >= tau           e = BGE-M3 dense embedding
    R_correct = (#hits / N) * (sum of len(s_i) over hits / sum of len(s_i))     len in characters
    R_format  = 1 if the output has exactly the think-then-answer shape, else 0
    R         = w_f * R_format + w_c * R_correct

Edge cases (the paper does not define them; these are ours):
- N = 0 and M = 0 (a faithful caption, and the policy lists nothing): R_correct = 1.
- N = 0 and M > 0, or N > 0 and M = 0: R_correct = 0.
- Without the tags, the whole output (minus stray tags) is the answer, so R_correct still measures
  content and only the format term is lost.
- A duplicated sentence counts each time it appears (the formula sums over s_i).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

_FORMAT = re.compile(r"^\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)
_TAG = re.compile(r"</?(think|answer)>")
# Sentence ends: . ! ? ; followed by whitespace. Decimal points ("3.5") do not split. Lines split first.
_SPLIT = re.compile(r"(?<=[.!?;])\s+")
# A list marker: "-", "*", "•", "1.", "2)", "(3)". Removed at the start of a piece, and a piece that is
# nothing but a marker ("1. The cup" splits into "1." and "The cup") is dropped: numbering adds no sentence.
_MARKER = r"(?:[-*\u2022]|\(?\d{1,3}[.)])"
_BULLET = re.compile(rf"^\s*{_MARKER}\s+")
_ONLY_MARKER = re.compile(rf"^{_MARKER}$")


class TextEmbedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def parse_output(text: str) -> tuple[bool, str]:
    """(format ok, answer text)."""
    m = _FORMAT.match(text)
    if m and "<think>" not in m["answer"] and "<answer>" not in m["think"]:
        return True, m["answer"]
    if "<answer>" in text:
        text = text.rsplit("<answer>", 1)[1]
    return False, _TAG.sub(" ", text)


def split_sentences(answer: str) -> list[str]:
    """The answer's sentences: lines split at sentence ends, each piece without a leading list marker."""
    out = []
    for line in answer.splitlines():
        for piece in _SPLIT.split(line):
            piece = _BULLET.sub("", piece).strip().strip('"').strip()
            if piece and not _ONLY_MARKER.match(piece):
                out.append(piece)
    return out


def r_correct(sentences: list[str], sim: np.ndarray, tau: float) -> float:
    """Eq. 6 given the N x M similarity matrix between answer sentences and ground-truth items."""
    n, m = len(sentences), sim.shape[1] if sim.ndim == 2 else 0
    if n == 0:
        return 1.0 if m == 0 else 0.0
    if m == 0:
        return 0.0
    hits = sim.max(axis=1) >= tau
    lengths = np.array([len(s) for s in sentences], dtype=np.float64)
    return float(hits.mean() * (lengths[hits].sum() / lengths.sum()))


@dataclass(frozen=True)
class RewardParts:
    format: float
    correct: float
    total: float


class ViperReward:
    """Scores a batch of completions with one embedding call (ground-truth embeddings are cached)."""

    def __init__(self, embedder: TextEmbedder, tau: float, w_format: float, w_correct: float):
        self.embedder, self.tau, self.w_format, self.w_correct = embedder, tau, w_format, w_correct
        self._truth_cache: dict[str, np.ndarray] = {}

    def _embed_truths(self, texts: list[str]) -> None:
        new = sorted({t for t in texts if t not in self._truth_cache})
        if new:
            for t, v in zip(new, self.embedder.encode(new)):
                self._truth_cache[t] = v

    def score(self, completions: list[str], truths: list[list[str]]) -> list[RewardParts]:
        parsed = [parse_output(c) for c in completions]
        sentences = [split_sentences(answer) for _, answer in parsed]
        self._embed_truths([g for gs in truths for g in gs])
        flat = [s for ss in sentences for s in ss]
        vecs = self.embedder.encode(flat) if flat else np.zeros((0, 1), dtype=np.float32)
        out, k = [], 0
        for (ok, _), ss, gs in zip(parsed, sentences, truths):
            s_vecs = vecs[k:k + len(ss)]
            k += len(ss)
            if ss and gs:
                sim = s_vecs @ np.stack([self._truth_cache[g] for g in gs]).T
            else:
                sim = np.zeros((len(ss), len(gs)))
            fmt, cor = float(ok), r_correct(ss, sim, self.tau)
            out.append(RewardParts(fmt, cor, self.w_format * fmt + self.w_correct * cor))
        return out


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as [{"role": "assistant", "content": ...}]."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content
