"""rl_stage*'s verl branch, up to the call into verl (verl itself is exercised in tests_verl/, in .venv-verl)."""

import json
from pathlib import Path

from PIL import Image

from viper.prompts import templates
from viper.rl.curves import read_curves


def examples() -> list[dict]:
    a = Image.new("RGB", (64, 64), (200, 30, 30))
    return [{"prompt": [{"role": "user", "content": templates.POLICY_REFINE.format(caption="a red square")}],
             "images": [a], "ground_truth": ["the square is blue"], "task": "caption_refining", "key": "c1"}]


def test_stage_passes_embedder_revision_and_device_to_verl_and_writes_its_curves(root, tmp_path, tiny_vlm_dir,
                                                                                  monkeypatch):
    """B6/C1: the verl branch hands verl the embedder's (id, revision) from the manifest and models.device, not
    the id alone; verl's log rows (reward only: its console has no format/correctness) become the curves."""
    from viper.config import load_stage_params
    from viper.rl import stages, verl_backend

    p = load_stage_params("rl_stage1", root / "presets" / "paper-7b.yaml", root=root)  # as the stage reads them
    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text(json.dumps({"embed": {
        "path": None, "id": "BAAI/bge-m3", "revision": "5617a9f", "class": "XLMRobertaModel"}}))
    monkeypatch.setenv("VIPER_CACHE_DIR", str(tmp_path / "cache"))
    # the seams: which examples (no Viper10K here) and verl's own run (it needs GPUs)
    monkeypatch.setattr(stages, "plan", lambda stage, rl, dataset, seed: (examples(), 4))
    monkeypatch.setattr(stages, "dataset_summary", lambda dataset: {})
    seen = {}

    def verl_run(init_path, exs, out_dir, rl, reward, steps, **kw):
        seen.update(kw)
        (Path(out_dir) / "config.json").write_text("{}")
        return [verl_backend.log_rows("step:1 - critic/score/mean:0.25")[0],
                verl_backend.log_rows("step:2 - critic/score/mean:0.75")[0]], 0

    monkeypatch.setattr(verl_backend, "train", verl_run)
    m = stages.run_stage(1, p, str(tiny_vlm_dir), None, str(models), tmp_path / "out", tmp_path / "curves")
    assert seen["embedder"] == ("BAAI/bge-m3", "5617a9f") and seen["embedder_device"] == "cuda"
    assert seen["experiment"] == "stage1"
    assert read_curves(tmp_path / "curves") == [{"step": 1, "reward": 0.25}, {"step": 2, "reward": 0.75}]
    assert (m["reward_mean"], m["reward_last"], m["format_mean"], m["correct_mean"]) == (0.5, 0.75, None, None)
