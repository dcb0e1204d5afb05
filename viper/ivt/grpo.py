"""GRPO over multi-step IVT rollouts: reward = IoU of the last step's box + w_format * format.

Why our own loop and not TRL's GRPOTrainer: a rollout here is step 0 plus T refinements, and refinement t sees
a new image (the previous box drawn on the original). TRL 1.16's `rollout_func` builds the policy's forward
pass from the dataset's images only (the images a rollout makes are dropped), and its tool loop feeds images
back only when the model emits tool calls, which a policy that answers in JSON boxes never does. So each turn
here is one (image, prompt) -> reply sequence, exactly the request `viper.ivt.loop` sends at evaluation, and a
rollout's turns share the rollout's group-normalised advantage.

Only model tokens carry loss: each turn's prompt (the drawn image and the text) is input, never target; the
reply's tokens are the ids the policy sampled (`TransformersVLM.generate_with_ids`), not a re-tokenisation.
The objective per token is TRL's GRPO one with one update per batch of rollouts (old log-probs = current,
so the clip is inactive, as in TRL with num_iterations 1) minus beta times the k3 estimate of the KL to the
frozen start model (the SFT checkpoint); per-sequence token means are averaged over sequences.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from viper.ivt import loop

log = logging.getLogger("viper")


def episode_reward(traj: dict, steps: int, w_format: float) -> tuple[float, float, float]:
    """(reward, format, final IoU) of one rollout. Format is the share of the `steps` + 1 steps that gave a
    usable box (a failure ends the rollout, so later steps count as missing); the final IoU is step `steps`'s,
    0 when the rollout ended early. A partial format credit, rather than all-or-nothing, is what gives a
    policy that rarely completes a rollout any signal at all."""
    fmt = len(traj["boxes"]) / (steps + 1)
    final = traj["ious"][steps] if len(traj["ious"]) == steps + 1 else 0.0
    return final + w_format * fmt, fmt, final


def group_advantages(rewards: list[float], group: int) -> list[float]:
    """(r - mean) / (std + 1e-4) within each consecutive group of `group` rollouts of one prompt; a group
    whose rewards are all equal teaches nothing (advantage 0)."""
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, group)
    adv = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + 1e-4)
    return adv.reshape(-1).tolist()


def rollouts(policy: Any, samples: list[dict], steps: int, n: int, seed: int, *, min_pixels: int, max_pixels: int,
             max_new_tokens: int, temperature: float) -> list[dict]:
    """`n` sampled rollouts of every sample (grouped by sample): {traj, turns: [(request, reply ids)]}."""
    from viper.synth.runner import derive_seed

    eps = [{"sample": s, "frame": loop.frame_of(s, min_pixels, max_pixels), "traj": loop.new_trajectory(s["id"]),
            "turns": [], "g": g} for s in samples for g in range(n)]
    for t in range(steps + 1):
        alive = [e for e in eps if e["traj"]["failure"] is None]
        if not alive:
            break
        requests = [loop.step_request(e["sample"], e["frame"], e["traj"]["boxes"][-1] if t else None,
                                      min_pixels=min_pixels, max_pixels=max_pixels, max_new_tokens=max_new_tokens,
                                      seed=derive_seed("ivt-grpo", seed, e["sample"]["id"], e["g"], t),
                                      temperature=temperature)[0] for e in alive]
        for e, req, (text, ids) in zip(alive, requests, policy.generate_with_ids(requests)):
            e["turns"].append((req, ids))
            loop.absorb(e["traj"], e["sample"], e["frame"], t, text)
    for e in eps:
        loop.add_ious([e["traj"]], [e["sample"]])
    return eps


def sequence_logprobs(model: Any, processor: Any, turns: list[tuple[Any, list[int]]]) -> list[Any]:
    """Per-token log-probabilities of each turn's reply ids given its request (image + text), in one padded
    forward pass: prompts left-padded as at generation, replies right-padded."""
    import torch

    from viper.backends.vlm import chat_messages

    texts = [processor.apply_chat_template(chat_messages(r.text, len(r.images)), tokenize=False,
                                           add_generation_prompt=True) for r, _ in turns]
    images = [img for r, _ in turns for img in r.images]
    inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(model.device)
    width = max(len(ids) for _, ids in turns)
    pad = processor.tokenizer.pad_token_id
    comp = torch.tensor([ids + [pad] * (width - len(ids)) for _, ids in turns], device=model.device)
    comp_mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for _, ids in turns], device=model.device)
    input_ids = torch.cat([inputs["input_ids"], comp], dim=1)
    attention = torch.cat([inputs["attention_mask"], comp_mask], dim=1)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    for k in ("mm_token_type_ids", "token_type_ids"):  # per-token types: reply tokens are text (0)
        if k in extra:
            extra[k] = torch.cat([extra[k], torch.zeros_like(comp)], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention, **extra).logits
    logits = logits[:, inputs["input_ids"].shape[1] - 1:-1].float()  # the positions that predict each reply token
    logps = torch.log_softmax(logits, dim=-1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    return [row[:len(ids)] for row, (_, ids) in zip(logps, turns)]


def turn_loss(logp: Any, ref: Any | None, advantage: float, beta: float, epsilon: float) -> Any:
    """The per-sequence token mean of the clipped GRPO objective minus beta * KL (k3), negated."""
    import torch

    ratio = torch.exp(logp - logp.detach())
    objective = torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantage)
    if ref is not None and beta:
        d = ref - logp
        objective = objective - beta * (torch.exp(d) - d - 1)
    return -objective.mean()


def train(init: str, samples: list[dict], out_dir: str | Path, g: Any, *, steps: int, seed: int, device: str,
          min_pixels: int, max_pixels: int, max_new_tokens: int,
          curves_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """`g.steps` GRPO updates from `init` on `samples` (train split); saves the policy to `out_dir`.

    Returns (per-step rows as the curves hold them, per-rollout records {step, group, reward, format, iou})."""
    import torch
    from transformers import set_seed

    from viper.backends.vlm import TransformersVLM, load_vlm_model
    from viper.rl.curves import CurveLog

    set_seed(seed)
    policy = TransformersVLM(init, None, device=device, dtype="float32", min_pixels=min_pixels,
                             max_pixels=max_pixels, batch_size=g.batch_prompts * g.num_generations)
    ref = load_vlm_model(init, None, device, "float32") if g.beta else None
    model, processor = policy.model, policy.processor
    optimizer = torch.optim.AdamW(model.parameters(), lr=g.learning_rate, weight_decay=0.0)
    order = np.random.default_rng(seed).permutation(len(samples))
    curves, rows, records = CurveLog(curves_dir), [], []
    for step in range(1, g.steps + 1):
        picks = [samples[order[(k + (step - 1) * g.batch_prompts) % len(samples)]] for k in range(g.batch_prompts)]
        model.eval()
        eps = rollouts(policy, picks, steps, g.num_generations, seed * 100_003 + step, min_pixels=min_pixels,
                       max_pixels=max_pixels, max_new_tokens=max_new_tokens, temperature=g.temperature)
        scored = [episode_reward(e["traj"], steps, g.w_format) for e in eps]
        advantages = group_advantages([s[0] for s in scored], g.num_generations)
        turns = [(turn, adv) for e, adv in zip(eps, advantages) for turn in e["turns"]]
        model.train()
        optimizer.zero_grad()
        for start in range(0, len(turns), g.micro_batch):
            chunk = turns[start:start + g.micro_batch]
            logps = sequence_logprobs(model, processor, [t for t, _ in chunk])
            refs = [None] * len(chunk)
            if ref is not None:
                with torch.no_grad():
                    refs = sequence_logprobs(ref, processor, [t for t, _ in chunk])
            loss = sum(turn_loss(lp, rf, adv, g.beta, g.epsilon) for lp, rf, (_, adv) in zip(logps, refs, chunk))
            (loss / len(turns)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        rewards = [s[0] for s in scored]
        row = {"step": step, "reward": float(np.mean(rewards)), "reward_std": float(np.std(rewards)),
               "format": float(np.mean([s[1] for s in scored])), "correct": float(np.mean([s[2] for s in scored])),
               "completion_length": float(np.mean([sum(len(ids) for _, ids in e["turns"]) for e in eps]))}
        rows.append(row)
        curves.add([row])
        records += [{"step": step, "group": (step - 1) * g.batch_prompts + i // g.num_generations, "reward": s[0],
                     "format": s[1], "iou": s[2]} for i, s in enumerate(scored)]
        log.info("grpo step %d/%d: reward %.3f format %.2f final IoU %.3f", step, g.steps, row["reward"],
                 row["format"], row["correct"])
        if not math.isfinite(row["reward"]):
            raise RuntimeError(f"GRPO step {step}: non-finite reward")
    model.eval()
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    return rows, records
