"""IVT's multi-step GRPO: reward and advantage literals, the loss, and the log-probabilities it trains on,
checked against what generation itself computed (the alignment a shift-by-one bug would break)."""

import math

import pytest
import torch

from viper.backends.requests import VLMRequest
from viper.backends.vlm import TransformersVLM
from viper.ivt import grpo
from viper.ivt.world import samples


def traj(ious, failure=None):
    return {"boxes": [(0, 0, 1, 1)] * len(ious), "ious": ious, "failure": failure,
            "failed_at": len(ious) if failure else None}


def test_reward_is_final_iou_plus_weighted_share_of_steps_with_a_box():
    assert grpo.episode_reward(traj([0.2, 0.4, 0.6]), 2, 0.1) == pytest.approx((0.7, 1.0, 0.6))
    # ended at step 1: no final box (IoU 0), one step of three gave a box
    assert grpo.episode_reward(traj([0.3], "inverted"), 2, 0.1) == pytest.approx((0.1 / 3, 1 / 3, 0.0))
    assert grpo.episode_reward(traj([], "no_box"), 2, 0.1) == (0.0, 0.0, 0.0)


def test_advantages_are_normalised_within_each_prompt_group():
    adv = grpo.group_advantages([1.0, 0.0, 0.5, 0.5], 2)
    assert adv[0] == pytest.approx(0.5 / 0.5001) and adv[1] == pytest.approx(-0.5 / 0.5001)
    assert adv[2:] == [0.0, 0.0]  # equal rewards teach nothing


def test_turn_loss_is_minus_advantage_plus_beta_k3():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    assert grpo.turn_loss(logp, logp.detach(), 0.5, 0.04, 0.2).item() == pytest.approx(-0.5)
    ref = logp.detach() + 0.5  # k3 = e^0.5 - 0.5 - 1 per token
    k3 = math.exp(0.5) - 1.5
    loss = grpo.turn_loss(logp, ref, 0.5, 0.04, 0.2)
    assert loss.item() == pytest.approx(-(0.5 - 0.04 * k3))
    loss.backward()  # a positive advantage pushes every reply token's log-probability up
    assert (logp.grad < 0).all()


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir):
    return TransformersVLM(str(tiny_vlm_dir), None, min_pixels=784, max_pixels=3136, batch_size=4)


def test_logprobs_match_the_scores_generation_used(vlm):
    """Two requests of different lengths (so padding differs): the trained log-probabilities of each reply
    token equal log-softmax of the logits generate() produced for it."""
    imgs = [s["image"] for s in samples(2, 96, seed=1)]
    reqs = [VLMRequest("Describe it.", (imgs[0],), max_new_tokens=6),
            VLMRequest("Where is the largest object in this picture, and what colour is it?", (imgs[1],),
                       max_new_tokens=6)]
    pairs = vlm.generate_with_ids(reqs)
    turns = [(r, ids) for r, (_, ids) in zip(reqs, pairs)]
    with torch.no_grad():
        ours = grpo.sequence_logprobs(vlm.model, vlm.processor, turns)
    for (req, ids), got in zip(turns, ours):
        alone = vlm.processor(text=[vlm.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": req.text}]}],
            tokenize=False, add_generation_prompt=True)], images=list(req.images), return_tensors="pt")
        out = vlm.model.generate(**alone, max_new_tokens=6, do_sample=False, suppress_tokens=vlm.suppress,
                                 output_logits=True, return_dict_in_generate=True)
        assert out.sequences[0, alone["input_ids"].shape[1]:].tolist()[:len(ids)] == ids
        want = [torch.log_softmax(out.logits[t][0].float(), -1)[tok].item() for t, tok in enumerate(ids)]
        assert len(got) == len(ids)
        assert got.tolist() == pytest.approx(want, abs=1e-4)


def test_rollout_turns_feed_the_drawn_box_back(vlm):
    data = list(samples(2, 96, seed=2))
    eps = grpo.rollouts(vlm, data, 2, 2, seed=0, min_pixels=784, max_pixels=3136, max_new_tokens=160,
                        temperature=1.0)
    assert [e["sample"]["id"] for e in eps] == [data[0]["id"]] * 2 + [data[1]["id"]] * 2
    for e in eps:
        assert len(e["turns"]) == len(e["traj"]["replies"]) >= 1
        assert all(ids for _, ids in e["turns"])
        first = e["turns"][0][0]
        assert first.images[0].tobytes() == e["sample"]["image"].tobytes() and first.seed is not None
        for req, _ in e["turns"][1:]:  # a refinement sees the image with the previous box drawn on it
            assert req.images[0].tobytes() != e["sample"]["image"].tobytes() and "red box" in req.text


def test_training_updates_the_policy_and_logs_every_step(tiny_vlm_dir, tmp_path):
    from types import SimpleNamespace

    from transformers import AutoModelForImageTextToText

    from viper.rl.curves import read_curves

    g = SimpleNamespace(steps=2, num_generations=2, batch_prompts=1, micro_batch=4, beta=0.04, w_format=0.1,
                        learning_rate=1e-2, temperature=1.0, epsilon=0.2)
    data = [s for s in samples(8, 96, seed=3)]
    rows, records = grpo.train(str(tiny_vlm_dir), data, tmp_path / "out", g, steps=1, seed=1, device="cpu",
                               min_pixels=784, max_pixels=3136, max_new_tokens=160, curves_dir=tmp_path / "curves")
    assert [r["step"] for r in rows] == [1, 2] and len(records) == 4
    assert [r["step"] for r in read_curves(tmp_path / "curves")] == [1, 2]
    before = AutoModelForImageTextToText.from_pretrained(str(tiny_vlm_dir))
    after = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "out"))
    changed = [n for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters())
               if not torch.equal(a, b)]
    # with seed 1 the first group's two rollouts earn different rewards, so there is a gradient to follow
    assert records[0]["reward"] != records[1]["reward"]
    assert changed
