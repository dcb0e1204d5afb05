import pytest
import yaml

from viper.config import load_params, parse_params

PRESETS = ["paper-7b.yaml", "paper-3b.yaml"]


def leaves(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates_and_is_paper_scale(root, name):
    p = load_params(root / "presets" / name)
    assert p.models.source == "hub" and p.vlm.backend == "vllm" and p.benchmark.backend == "vllm"
    assert p.models.vlm.id == {"paper-7b.yaml": "Qwen/Qwen2.5-VL-7B-Instruct",
                               "paper-3b.yaml": "Qwen/Qwen2.5-VL-3B-Instruct"}[name]
    assert (p.models.t2i.id, p.models.embed.id) == ("Qwen/Qwen-Image", "BAAI/bge-m3")
    assert (p.viper10k.max_caption_refining, p.viper10k.max_visual_operation) == (7000, 3000)
    rl = p.rl
    assert (rl.batch_prompts, rl.mini_batch_prompts, rl.num_generations, rl.temperature) == (128, 64, 5, 1.0)
    assert (rl.learning_rate, rl.beta, rl.loss_type) == (1e-6, 0.0, "grpo")
    assert (rl.max_prompt_length, rl.max_completion_length) == (10240, 4096)
    # two images at max_pixels (about pixels/784 tokens each) leave room for the text in the prompt budget
    assert 2 * rl.max_pixels / 784 < rl.max_prompt_length / 2
    assert (p.reward.w_format, p.reward.w_correct, p.reward.tau) == (0.05, 0.95, 0.85)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_complete(root, name):
    """Every key is spelled out, as in params.yaml, so a preset never silently inherits a tiny default."""
    data = yaml.safe_load((root / "presets" / name).read_text())
    parse_params(data)
    assert leaves(data) == leaves(yaml.safe_load((root / "params.yaml").read_text()))


def test_presets_and_default_name_the_same_classes(root):
    """DESIGN §1: the tiny world instantiates the classes the presets use, for every role."""
    from viper.models import ROLES, TINY_CLASSES

    default = load_params(root / "params.yaml").models
    assert {r: getattr(default, r).class_ for r in ROLES} == TINY_CLASSES
    assert (TINY_CLASSES["t2i"], TINY_CLASSES["edit"]) == ("QwenImagePipeline", "QwenImageEditPipeline")
    for name in PRESETS:
        models = load_params(root / "presets" / name).models
        assert {r: getattr(models, r).class_ for r in ROLES} == TINY_CLASSES, name
