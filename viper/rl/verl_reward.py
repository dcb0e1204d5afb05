"""The reward function verl loads (reward.custom_reward_function.path/name): paper eq. 5-7 via ViperReward.

verl 0.9.1 scores through its reward loop (verl/experimental/reward_loop): each reward worker is a Ray actor
holding the reward manager named by `reward.reward_manager.name`, looked up in the reward-loop registry
(naive, dapo, gdpo, rate_limited, remote). We use `naive`, which calls `compute_score(data_source=,
solution_str=, ground_truth=, extra_info=, **reward_kwargs)` once per sample. A custom manager would not
see batches either: the workers call the manager's `run_single` on one sample at a time, as each rollout
finishes (reward_loop.py `compute_score_batch` -> `compute_score`, agent_loop.py `_compute_score`), so one
embedding call per rollout batch is not on offer in 0.9.1, and per-sample scoring (a few sentences against a
few ground-truth items) costs milliseconds on the GPU.

The embedder is loaded once per worker process, at the pinned revision and on the given device (reward
kwargs). The naive manager runs synchronous score functions on a thread pool, several samples at once; one
lock per process serialises them, since a fast tokenizer must not be used from two threads at once.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache

from viper.rl.reward import ViperReward

_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _reward(embedder_path: str, embedder_revision: str | None, device: str, tau: float, w_format: float,
            w_correct: float) -> ViperReward:
    from viper.backends.embed import Embedder

    return ViperReward(Embedder(embedder_path, revision=embedder_revision, device=device), tau, w_format,
                       w_correct)


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, *,
                  embedder_path: str, embedder_revision: str | None = None, device: str = "cpu",
                  tau: float = 0.85, w_format: float = 0.05, w_correct: float = 0.95, **_: object) -> dict:
    """One sample's reward. `ground_truth` is the JSON list parquet_rows wrote; verl adds keys of its own to
    `extra_info` (num_turns, rollout_reward_scores) and may pass more keyword arguments, which we ignore.
    The dict's keys besides "score" become verl's reward_extra_info."""
    with _LOCK:
        reward = _reward(embedder_path, embedder_revision, device, float(tau), float(w_format),
                         float(w_correct))
        part = reward.score([solution_str], [json.loads(ground_truth)])[0]
    return {"score": part.total, "format": part.format, "correct": part.correct}
