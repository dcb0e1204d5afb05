"""A few real GRPO steps on the tiny Qwen2.5-VL with a reward that varies within each group."""

import pytest
import torch
from PIL import Image

from viper.config import load_params
from viper.prompts import templates
from viper.rl.reward import completion_text
from viper.rl.trl_backend import build_trainer


def length_reward(completions, **_):
    """Varies within a group (sampled completions differ in length), so advantages are non-zero."""
    return [len(completion_text(c)) / 100.0 for c in completions]


def examples(n):
    out = []
    for i in range(n):
        img = Image.new("RGB", (64, 64), (30 * i, 120, 200 - 20 * i))
        out.append({"prompt": [{"role": "user", "content": templates.POLICY_OPERATION}],
                    "images": [img, img.rotate(90)], "ground_truth": ["rotate the picture"],
                    "task": "visual_operation", "key": f"k{i}"})
    return out


@pytest.fixture(scope="module")
def trained(root, tiny_vlm_dir, tmp_path_factory):
    rl = load_params(root / "params.yaml").rl.model_copy(update={"learning_rate": 1e-3, "epsilon_low": 0.15,
                                                                  "epsilon_high": 0.3})
    before = {k: v.clone() for k, v in
              build_trainer(str(tiny_vlm_dir), examples(4), rl, [length_reward], [1.0], 2, 0, "cpu", "float32",
                            tmp_path_factory.mktemp("w0")).model.state_dict().items()}
    # bfloat16 is the inference dtype (models.dtype); the trained policy must still hold float32 weights
    trainer = build_trainer(str(tiny_vlm_dir), examples(4), rl, [length_reward], [1.0], steps=2, seed=0,
                            device="cpu", dtype="bfloat16", work_dir=tmp_path_factory.mktemp("work"))
    trainer.train()
    return trainer, before, rl


def test_weights_change(trained):
    trainer, before, _ = trained
    after = trainer.model.state_dict()
    assert {v.dtype for v in after.values()} == {torch.float32}  # master weights, not models.dtype
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no parameter moved"
    assert any("lm_head" in k or "embed_tokens" in k for k in changed)
    rewards = [h for h in trainer.state.log_history if "reward_std" in h]
    assert rewards and rewards[0]["reward_std"] > 0


def test_recipe_as_configured(trained):
    trainer, _, rl = trained
    assert (trainer.epsilon_low, trainer.epsilon_high) == (0.15, 0.3)  # the decoupled clip bounds
    assert trainer.beta == 0.0 and trainer.ref_model is None           # no KL term, no reference model
    assert trainer.loss_type == "grpo" and trainer.num_generations == rl.num_generations
    assert trainer.args.generation_batch_size == rl.batch_prompts * rl.num_generations
    assert trainer.state.global_step == 2


def test_curves_stream_one_row_per_step_through_the_callback(root, tiny_vlm_dir, tmp_path):
    from viper.rl.curves import CurveLog, read_curves
    from viper.rl.trl_backend import _log_rows, curve_callback

    rl = load_params(root / "params.yaml").rl.model_copy(update={"learning_rate": 1e-3})
    trainer = build_trainer(str(tiny_vlm_dir), examples(4), rl, [length_reward], [1.0], steps=2, seed=0,
                            device="cpu", dtype="float32", work_dir=tmp_path / "work")
    log = CurveLog(tmp_path / "curves")
    trainer.add_callback(curve_callback(log))
    trainer.train()
    rows = read_curves(tmp_path / "curves")
    assert [r["step"] for r in rows] == [1, 2]  # both steps, the second sharing the first's rollout figures
    expected = _log_rows(trainer.state.log_history)
    assert [(r["step"], r["reward"]) for r in rows] == [(e["step"], pytest.approx(e["reward"])) for e in expected]
    log.add(expected)  # a replay (resume) adds nothing
    assert len(read_curves(tmp_path / "curves")) == 2
