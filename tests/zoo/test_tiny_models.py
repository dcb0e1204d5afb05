"""The tiny model builders: byte-identical output for a seed, safetensors weights, usable tokenizers."""

import hashlib
import json
from pathlib import Path

import pytest

from viper.zoo.clip import build_tiny_clip
from viper.zoo.diffusion import build_tiny_edit, build_tiny_t2i
from viper.zoo.embed import build_tiny_bge_m3
from viper.zoo.vlm import build_tiny_vlm

BUILDERS = {"vlm": build_tiny_vlm, "t2i": build_tiny_t2i, "edit": build_tiny_edit, "embed": build_tiny_bge_m3,
            "clip": build_tiny_clip}
# FlagEmbedding reads BGE-M3's two heads only as torch.load'ed .pt files (no safetensors option).
PICKLE_ALLOWED = {"colbert_linear.pt", "sparse_linear.pt"}


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def built(request, tmp_path_factory) -> tuple[str, Path, Path]:
    name = request.param
    a, b = tmp_path_factory.mktemp(f"{name}_a"), tmp_path_factory.mktemp(f"{name}_b")
    BUILDERS[name](a, seed=0)
    BUILDERS[name](b, seed=0)
    return name, a, b


def test_same_seed_gives_identical_bytes(built):
    _, a, b = built
    da, db = digests(a), digests(b)
    assert da and da == db


def test_other_seed_gives_other_weights(built, tmp_path):
    name, a, _ = built
    BUILDERS[name](tmp_path, seed=1)
    da, dc = digests(a), digests(tmp_path)
    weights = [k for k in da if k.endswith(".safetensors")]
    assert weights and all(da[k] != dc[k] for k in weights)


def test_weights_are_safetensors(built):
    _, a, _ = built
    files = list(a.rglob("*"))
    assert any(p.suffix == ".safetensors" for p in files)
    pickled = {p.name for p in files if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}}
    assert pickled <= PICKLE_ALLOWED


# What model_index.json of Qwen/Qwen-Image and Qwen/Qwen-Image-Edit names (the presets' models).
QWEN_IMAGE_COMPONENTS = {
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
    "tokenizer": ["transformers", "Qwen2Tokenizer"],
    "transformer": ["diffusers", "QwenImageTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKLQwenImage"],
}


@pytest.mark.parametrize("role,cls,extra", [
    ("t2i", "QwenImagePipeline", {}),
    ("edit", "QwenImageEditPipeline", {"processor": ["transformers", "Qwen2VLProcessor"]}),
])
def test_diffusers_layout_is_qwen_image(role, cls, extra, tmp_path):
    BUILDERS[role](tmp_path, seed=0)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index.pop("_class_name") == cls and index.pop("_diffusers_version")
    assert index == {**QWEN_IMAGE_COMPONENTS, **extra}
    text = json.loads((tmp_path / "text_encoder" / "config.json").read_text())
    transformer = json.loads((tmp_path / "transformer" / "config.json").read_text())
    # The transformer reads the text encoder's last hidden states.
    assert text["text_config"]["hidden_size"] == transformer["joint_attention_dim"]
    assert transformer["attention_head_dim"] == sum(transformer["axes_dims_rope"])


@pytest.mark.parametrize("role", ["t2i", "edit"])
def test_system_prompt_is_exactly_the_dropped_tokens(role, tmp_path):
    """The pipelines drop `prompt_template_encode_start_idx` leading tokens (counted with Qwen's tokenizer);
    with the tiny tokenizer that is exactly the system prompt too, so embeddings start at the user turn."""
    from diffusers import DiffusionPipeline

    BUILDERS[role](tmp_path, seed=0)
    pipe = DiffusionPipeline.from_pretrained(tmp_path)
    before_text = pipe.prompt_template_encode.split("{}")[0].split("<|vision_start|>")[0]
    assert before_text.endswith("<|im_start|>user\n")
    assert len(pipe.tokenizer(before_text).input_ids) == pipe.prompt_template_encode_start_idx
    words = "héllo wörld, 12 objects 🙂"
    ids = pipe.tokenizer(words).input_ids
    assert pipe.tokenizer.decode(ids) == words and len(ids) < len(words.encode())  # any text, merged tokens


def test_bge_tokenizer_wraps_in_s_tags(tmp_path):
    from transformers import AutoTokenizer

    build_tiny_bge_m3(tmp_path, seed=0)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = tok("héllo wörld").input_ids
    assert ids[0] == tok.cls_token_id == 0 and ids[-1] == tok.sep_token_id == 2
    assert tok.unk_token_id not in ids and tok.pad_token_id == 1
