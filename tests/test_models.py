import sys

import pytest

from viper.config import load_params
from viper.models import build_models, load_vlm, model_identity, resolve


def test_hub_source_pins_ids_and_revisions(root, tmp_path):
    p = load_params(root / "presets" / "paper-7b.yaml")
    manifest = build_models(p.models, tmp_path, seed=0)
    assert manifest["vlm"] == {"path": None, "id": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "main"}
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
