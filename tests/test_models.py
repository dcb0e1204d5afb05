import json
import sys

import pytest

from viper.config import load_params
from viper.models import (ModelLoadError, build_models, load_clip, load_embedder, load_t2i, load_vlm,
                          model_class, model_identity, resolve)
from viper.store.io import read_json, write_json


def test_hub_source_pins_ids_and_revisions(root, tmp_path):
    p = load_params(root / "presets" / "paper-7b.yaml")
    manifest = build_models(p.models, tmp_path, seed=0)
    assert manifest["vlm"] == {"path": None, "id": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "main",
                               "class": "Qwen2_5_VLForConditionalGeneration"}
    assert model_class(tmp_path, "edit") == "QwenImageEditPipeline"
    assert resolve(tmp_path, "embed") == ("BAAI/bge-m3", "main")
    assert model_identity(tmp_path, "t2i") == {"id": "Qwen/Qwen-Image", "revision": "main"}
    assert list(tmp_path.iterdir()) == [tmp_path / "manifest.json"]  # nothing downloaded or built


def test_missing_manifest_says_what_to_run(tmp_path):
    with pytest.raises(RuntimeError, match="dvc repro models"):
        resolve(tmp_path, "vlm")


def test_vllm_backend_is_lazy_and_explains_a_missing_install(root, tmp_path, tiny_vlm_dir, monkeypatch):
    p = load_params(root / "presets" / "paper-7b.yaml")
    monkeypatch.setitem(sys.modules, "vllm", None)  # as on a machine without the extra
    vlm = load_vlm(tmp_path, p.models, 784, 3136, batch_size=4, backend="vllm", path_or_id=str(tiny_vlm_dir))
    assert vlm.batch_size == 4  # known without loading anything
    from viper.backends.requests import VLMRequest

    with pytest.raises(RuntimeError, match=r"make env-vllm"):
        vlm.generate([VLMRequest("hi")])


@pytest.fixture(scope="module")
def tiny_models(root, tmp_path_factory):
    """What the `models` stage builds from the shipped params.yaml."""
    out = tmp_path_factory.mktemp("models")
    build_models(load_params(root / "params.yaml").models, out, seed=0)
    return out


def test_tiny_build_records_and_builds_the_declared_classes(root, tiny_models):
    manifest = read_json(tiny_models / "manifest.json")
    p = load_params(root / "params.yaml")
    assert {r: e["class"] for r, e in manifest.items()} == {r: getattr(p.models, r).class_ for r in manifest}
    for role, cls in (("t2i", "QwenImagePipeline"), ("edit", "QwenImageEditPipeline")):
        assert json.loads((tiny_models / role / "model_index.json").read_text())["_class_name"] == cls
    for role in ("vlm", "embed"):
        config = json.loads((tiny_models / role / "config.json").read_text())
        assert config["architectures"] == [manifest[role]["class"]]


def test_tiny_build_refuses_a_class_it_cannot_build(root, tmp_path):
    p = load_params(root / "params.yaml")
    models = p.models.model_copy(update={"t2i": p.models.t2i.model_copy(update={"class_": "FluxPipeline"})})
    with pytest.raises(ValueError, match=r"models\.t2i\.class is 'FluxPipeline', but the tiny t2i model is a "
                                         r"QwenImagePipeline"):
        build_models(models, tmp_path, seed=0)
    assert not any(tmp_path.iterdir())  # checked before anything is built


def test_loaders_check_the_class(root, tiny_models, tmp_path):
    """A model that is not the manifest's class fails at load, naming role, expected and actual class."""
    p = load_params(root / "params.yaml")
    manifest = read_json(tiny_models / "manifest.json")
    for role in ("vlm", "t2i", "embed", "clip"):
        manifest[role]["path"] = str(tiny_models / role)
    write_json(tmp_path / "manifest.json", manifest)
    assert type(load_vlm(tmp_path, p.models, 784, 3136, 4).model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(load_t2i(tmp_path, p.models).pipe).__name__ == "QwenImagePipeline"
    assert load_embedder(tmp_path, p.models).model_class == "XLMRobertaModel"
    assert type(load_clip(tmp_path, p.models).model).__name__ == "CLIP"
    for role, wrong in (("vlm", "Qwen2VLForConditionalGeneration"), ("t2i", "QwenImageEditPipeline"),
                        ("embed", "BertModel"), ("clip", "CustomTextCLIP")):
        write_json(tmp_path / "manifest.json", {**manifest, role: {**manifest[role], "class": wrong}})
        load = {"vlm": lambda: load_vlm(tmp_path, p.models, 784, 3136, 4).model,
                "t2i": lambda: load_t2i(tmp_path, p.models).pipe,
                "embed": lambda: load_embedder(tmp_path, p.models),
                "clip": lambda: load_clip(tmp_path, p.models).model}[role]
        actual = manifest[role]["class"]
        message = rf"the {role} model .* loaded as a {actual}, but models\.{role}\.class .* is {wrong}"
        with pytest.raises((RuntimeError, ModelLoadError), match=message):
            load()
