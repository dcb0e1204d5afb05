"""The predictions stage at the paper's sizes, in process with the real tiny Qwen2.5-VL loaded through
`load_vlm`: images decoded batch by batch, replies through the item cache (resume, an all-cached rerun
loads nothing), one model freed before the next loads, the pinned base revision and the image count
passed on; HallusionBench's text-only rows and CRPE's `image_path` rows (audit A5-A7, B6, B8). The real
stage script in a subprocess, killed mid-run, is in test_predictions_stage.py.

No model is faked: the base is the tiny model the `models` stage builds (a local manifest entry), stage1
and stage2 are copies of it with real weights moved (`retrain`), so their directories (their identities)
and their replies differ. The `spy` fixture only watches the real `TransformersVLM`: every call goes
through to the real method. The one stand-in is the kill of the resume test, a KeyboardInterrupt raised in
place of a call; the failing row is an image the real processor refuses."""

from __future__ import annotations

import base64
import gc
import io
import json
import logging
import math
import re
import runpy
import shutil
import sys
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from viper.backends.requests import VLMRequest
from viper.backends.vlm import TransformersVLM
from viper.config import PIPELINE_FILES, load_stage_params
from viper.eval import paper_files
from viper.eval.generate import make_tiny_crpe_relation, make_tiny_hallusionbench
from viper.eval.models import evaluated_identity, evaluated_models
from viper.eval.registry import BENCHMARKS, load_checked
from viper.eval.run import load_predictions, max_images, predict, prediction_file
from viper.eval.tsv import BenchmarkDataError, load_tsv, write_tsv
from viper.models import dir_digest, load_vlm
from viper.rl.cold_start import INIT_FILE
from viper.sandbox import set_params
from viper.store.cache import ItemCache
from viper.store.io import write_json
from viper.synth.runner import StepStats

NAMES = ["MME-RealWorld", "Mantis-Eval", "HallusionBench"]
ROWS = 10
BATCH = 3  # 10 rows: three full batches and a partial one per benchmark
MAX_NEW = 16  # the reply cap (below the benchmarks' own: Mantis-Eval 50)
MIN_PIX, MAX_PIX = 784, 3136
TOTAL = 3 * len(NAMES) * ROWS  # base, stage1, stage2 (the cold start passed its input through)
PINNED = "0123456789abcdef0123456789abcdef01234567"
VLM_CLASS = "Qwen2_5_VLForConditionalGeneration"


def retrain(ckpt: Path, seed: int) -> None:
    """What a training step does to a checkpoint directory: a weight tensor (the token embeddings, tied
    to the output head) moved and saved back into the same safetensors file. Its content digest (its
    identity in cache keys) changes, and so do the model's replies."""
    from safetensors.torch import load_file, save_file

    path = ckpt / "model.safetensors"
    weights = load_file(path)
    key = next(k for k in sorted(weights) if k.endswith("embed_tokens.weight"))
    noise = torch.randn(weights[key].shape, generator=torch.Generator().manual_seed(seed))
    weights[key] = weights[key] + 0.2 * noise
    save_file(weights, path, metadata={"format": "pt"})


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def repo_params(repo: Path, root: Path, extra: dict | None = None) -> None:
    """params.yaml and the pipeline files in `repo`, on the CPU with the transformers backend."""
    for f in ("params.yaml", *PIPELINE_FILES):
        (repo / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / f, repo / f)
    set_params(repo, {"models.device": "cpu", "models.dtype": "float32", "models.trust_remote_code": False,
                      "benchmark.backend": "transformers", "benchmark.min_pixels": MIN_PIX,
                      "benchmark.max_pixels": MAX_PIX, **(extra or {})})


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny model's matrices are too small to share out: on a busy 2-core machine two threads wait on
    each other (a batch took ~1 s with two, ~30 ms with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spy(monkeypatch):
    """The real `TransformersVLM`, watched: ("load", path, revision) before each load, ("generate", path,
    rows) per call, ("freed", path) when an instance is garbage, and ("reported", model) when the stage
    logs a model's figures (after its last benchmark). A collection runs before each load and each report,
    so a model nothing refers to any more shows as freed before them."""
    log: list = []

    class Reports(logging.Handler):
        def emit(self, record):
            done = re.match(r"(base|cold_start|stage1|stage2): \{", record.getMessage())
            if done:
                gc.collect()
                log.append(("reported", done.group(1)))

    viper_log, handler = logging.getLogger("viper"), Reports()
    level = viper_log.level
    viper_log.setLevel(logging.INFO)
    viper_log.addHandler(handler)
    init, generate = TransformersVLM.__init__, TransformersVLM.generate

    def watched_init(self, path_or_id, revision=None, **kw):
        gc.collect()
        log.append(("load", str(path_or_id), revision))
        init(self, path_or_id, revision, **kw)
        weakref.finalize(self, log.append, ("freed", str(path_or_id)))

    def watched_generate(self, requests):
        assert all(isinstance(im, Image.Image) for r in requests for im in r.images)
        log.append(("generate", str(self.model_id), len(requests)))
        return generate(self, requests)

    monkeypatch.setattr(TransformersVLM, "__init__", watched_init)
    monkeypatch.setattr(TransformersVLM, "generate", watched_generate)
    yield log
    viper_log.removeHandler(handler)
    viper_log.setLevel(level)
    gc.collect()  # this test's models are freed while it still owns the log


@pytest.fixture
def world(tmp_path, root, tiny_vlm_dir, spy, monkeypatch):
    """A repository root with params and pipeline files, tiny benchmarks, the tiny VLM under a local
    manifest entry (as the `models` stage writes it), a pass-through cold start and two retrained
    checkpoints; the real loader, watched by `spy`."""
    repo_params(tmp_path, root, {"benchmark.data_dir": "bench", "benchmark.names": NAMES,
                                 "benchmark.batch_size": BATCH, "benchmark.max_new_tokens": MAX_NEW,
                                 "benchmark.suite": "tiny"})
    from viper.eval.generate import TINY_GENERATORS

    for name in NAMES:
        TINY_GENERATORS[name](tmp_path / "bench" / f"{name}.tsv", ROWS, 0)
    shutil.copytree(tiny_vlm_dir, tmp_path / "models" / "vlm")
    write_json(tmp_path / "models" / "manifest.json",
               {"vlm": {"path": "vlm", "id": "viper-tiny/qwen2_5_vl", "class": VLM_CLASS,
                        "revision": "sha256:" + dir_digest(tmp_path / "models" / "vlm")}})
    (tmp_path / "cold").mkdir()
    (tmp_path / "cold" / INIT_FILE).write_text('{"init": "base"}\n')
    for seed, stage in enumerate(("s1", "s2"), 1):
        shutil.copytree(tiny_vlm_dir, tmp_path / stage)
        retrain(tmp_path / stage, seed)
    assert len({dir_digest(tmp_path / d) for d in ("models/vlm", "s1", "s2")}) == 3
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIPER_CACHE_DIR", str(tmp_path / "cache"))
    return {"root": tmp_path, "log": spy}


def run_stage(root_dir: Path, out: str = "preds", metrics: str = "metrics.json") -> dict:
    argv = ["predictions", "--data", "bench", "--models", "models", "--cold_start", "cold", "--stage1", "s1",
            "--stage2", "s2", "--out", out, "--metrics", metrics]
    old = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(Path(__file__).resolve().parents[2] / "stages" / "predictions.py"),
                       run_name="__main__")
    finally:
        sys.argv = old
    return json.loads((root_dir / metrics).read_text())


def models(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, dict)}


def loads(log: list) -> list[tuple[str, str | None]]:
    return [e[1:] for e in log if e[0] == "load"]


def test_stage_streams_batches_releases_models_and_reruns_from_the_cache(world):
    root, log = world["root"], world["log"]
    m = run_stage(root)
    # no cold start: it passed its input through
    assert set(m) == {"base", "stage1", "stage2", "cache_hits", "cache_misses", "model_calls"}
    assert (m["cache_hits"], m["cache_misses"]) == (0, TOTAL)
    m = models(m)
    # B6: the base from the manifest (a local entry: no hub revision to pass), then the checkpoints
    assert loads(log) == [("models/vlm", None), ("s1", None), ("s2", None)]
    # A5: sized for the largest image count (Mantis: 4)
    assert {model["max_images"] for model in m.values()} == {4}
    # A7: never more than one batch of rows (so of decoded images) per model call, each by the loaded model
    gens = [e for e in log if e[0] == "generate"]
    assert max(e[2] for e in gens) <= BATCH and sum(e[2] for e in gens) == TOTAL
    current = None
    for e in log:
        current = e[1] if e[0] == "load" else current
        assert e[0] != "generate" or e[1] == current
    # B8: each model is released (freed: nothing holds it) once its benchmarks are done, before the next loads
    assert [e[:2] for e in log if e[0] in ("load", "freed", "reported")] == [
        ("load", "models/vlm"), ("freed", "models/vlm"), ("reported", "base"),
        ("load", "s1"), ("freed", "s1"), ("reported", "stage1"),
        ("load", "s2"), ("freed", "s2"), ("reported", "stage2")]
    for model in m.values():
        assert model["rows"] == model["cache_misses"] == len(NAMES) * ROWS and model["cache_hits"] == 0
        assert model["model_calls"] == len(NAMES) * math.ceil(ROWS / BATCH) and model["failed"] == 0
        assert model["backend"] == "transformers" and model["model_loaded"] is True
    # the replies are stage1's own to every image of the row, then the prompt, at the reply cap
    bench = BENCHMARKS["Mantis-Eval"]
    preds = {k: load_predictions(root / "preds", k, "Mantis-Eval") for k in ("base", "stage1")}
    df = load_checked(root / "bench" / "Mantis-Eval.tsv", "Mantis-Eval", "tiny")
    assert list(preds["stage1"]) == [str(i) for i in df["index"]]
    cap = min(MAX_NEW, bench.max_new_tokens or MAX_NEW)
    reqs = [VLMRequest(bench.prompt(r), tuple(r["images"]), max_new_tokens=cap)
            for r in df.to_dict("records")]
    stage1 = TransformersVLM("s1", min_pixels=MIN_PIX, max_pixels=MAX_PIX, batch_size=BATCH)
    assert list(preds["stage1"].values()) == [t for s in range(0, len(reqs), BATCH)
                                               for t in stage1.generate(reqs[s:s + BATCH])]
    assert preds["base"] != preds["stage1"]  # other weights, other replies
    assert pd.read_parquet(prediction_file(root / "preds", "base", "MME-RealWorld")).columns.tolist() == [
        "index", "prediction"]

    del stage1
    gc.collect()
    log.clear()
    again = models(run_stage(root, out="preds2", metrics="metrics2.json"))
    assert [e for e in log if e[0] != "reported"] == []  # all replies cached: no model loaded, none generated
    for model in again.values():
        assert model["cache_hits"] == model["rows"] and model["cache_misses"] == model["model_calls"] == 0
        assert model["model_loaded"] is False
    files = sorted(f.name for f in (root / "preds").iterdir())
    assert sorted(f.name for f in (root / "preds2").iterdir()) == files and len(files) == 3 * len(NAMES)
    for f in (root / "preds").iterdir():
        assert (root / "preds2" / f.name).read_bytes() == f.read_bytes()


def test_a_changed_checkpoint_or_request_misses_only_its_own_keys(world):
    root, log = world["root"], world["log"]
    run_stage(root)
    retrain(root / "s2", seed=3)  # stage2 trained again: new content, new identity
    log.clear()
    m = run_stage(root, out="p2", metrics="m2.json")
    assert m["base"]["cache_misses"] == m["stage1"]["cache_misses"] == 0
    assert not m["base"]["model_loaded"] and not m["stage1"]["model_loaded"]
    assert m["stage2"]["cache_hits"] == 0 and m["stage2"]["cache_misses"] == len(NAMES) * ROWS
    assert loads(log) == [("s2", None)]
    set_params(root, {"benchmark.max_pixels": 2 * MAX_PIX})  # part of every request
    m = run_stage(root, out="p3", metrics="m3.json")
    assert m["cache_hits"] == 0 and m["cache_misses"] == TOTAL


def test_a_row_the_model_cannot_take_fails_the_stage_after_caching_the_rest(world):
    """A row whose image the Qwen2-VL processor refuses (aspect ratio over 200) fails in its batch and
    again alone, for every model; every other reply is cached, and a rerun calls the model for that row
    only. Once the input is fixed, the rerun generates just that row."""
    root, log = world["root"], world["log"]
    tsv, bad = root / "bench" / "MME-RealWorld.tsv", 2
    good = tsv.read_bytes()
    raw = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    # the row carries its own image, and no other row refers back to it: only this row has the bad image
    assert len(raw["image"][bad]) > 64 and raw["index"][bad] not in set(raw["image"])
    raw.loc[bad, "image"] = png_b64(Image.new("RGB", (402, 2), "white"))
    raw.to_csv(tsv, sep="\t", index=False, lineterminator="\n")
    with pytest.raises(SystemExit) as err:
        run_stage(root)
    msg = str(err.value)
    assert "the model call failed for 3 benchmark row(s)" in msg
    for model in ("base", "stage1", "stage2"):
        assert (f"\n  {model} / MME-RealWorld / row {bad}: ValueError: absolute aspect ratio must be smaller "
                "than 200") in msg
    assert not (root / "preds").exists() and not (root / "metrics.json").exists()

    log.clear()
    with pytest.raises(SystemExit, match=r"failed for 3 benchmark row\(s\)"):
        run_stage(root)
    assert [e[2] for e in log if e[0] == "generate"] == [1, 1] * 3  # that row alone, in its batch and again

    tsv.write_bytes(good)
    m = run_stage(root)
    for model in models(m).values():
        assert model["cache_misses"] == model["model_calls"] == 1 and model["cache_hits"] == model["rows"] - 1
        assert model["benchmarks"]["MME-RealWorld"]["cache_misses"] == 1 and model["failed"] == 0


def test_predict_resumes_after_the_last_committed_batch(tmp_path, tiny_vlm_dir, monkeypatch):
    """A kill between batches (KeyboardInterrupt passes through the runner) loses only the batch in flight.
    The kill is a KeyboardInterrupt raised by a wrapper of the real `generate` in place of the third call."""
    from viper.eval.generate import make_tiny_mme_realworld

    make_tiny_mme_realworld(tmp_path / "m.tsv", 11, 0)
    df = load_checked(tmp_path / "m.tsv", "MME-RealWorld", "tiny", decode=False)
    assert "images" not in df.columns
    cache = ItemCache(tmp_path / "items.sqlite")
    vlm = TransformersVLM(str(tiny_vlm_dir), min_pixels=MIN_PIX, max_pixels=MAX_PIX, batch_size=4)
    generate, done = TransformersVLM.generate, []

    def killed_at_the_third_call(self, requests):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(len(requests))
        return generate(self, requests)

    monkeypatch.setattr(TransformersVLM, "generate", killed_at_the_third_call)
    kw = dict(cache=cache, model={"id": "checkpoint", "revision": "sha256:" + dir_digest(tiny_vlm_dir),
                                  "backend": "transformers"},
              request={"min_pixels": MIN_PIX, "max_pixels": MAX_PIX, "dtype": "float32"}, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        predict(vlm, BENCHMARKS["MME-RealWorld"], df, MAX_NEW, stats=StepStats("p"), **kw)
    assert done == [4, 4]
    monkeypatch.setattr(TransformersVLM, "generate", generate)
    stats = StepStats("p")
    replies, failed = predict(vlm, BENCHMARKS["MME-RealWorld"], df, MAX_NEW, stats=stats, **kw)
    assert (stats.cache_hits, stats.cache_misses, stats.model_calls) == (8, 3, 1) and failed == []
    assert vlm.calls == 3  # two batches before the kill, the last one after
    fresh, _ = predict(vlm, BENCHMARKS["MME-RealWorld"], df, MAX_NEW, stats=StepStats("p"),
                       **{**kw, "cache": ItemCache(tmp_path / "other.sqlite")})
    assert replies == fresh and list(replies) == [str(i) for i in df["index"]]


def test_the_base_is_loaded_at_the_manifest_revision(tmp_path, root, tiny_vlm_dir, spy):
    """B6. A hub manifest entry (path null) gives the base its pinned revision, in the identity and in what
    `load_vlm` hands the backend. The hub id here is the tiny model's directory: transformers reads a local
    directory whatever the revision, so the load is real and this checks what is passed, not how the hub
    resolves it (no network). A local entry, what the tiny `models` stage writes, passes no revision: its
    content digest is its identity (the stage test above)."""
    hub = tmp_path / "hub"
    write_json(hub / "manifest.json", {"vlm": {"path": None, "id": "Qwen/X", "revision": PINNED,
                                               "class": VLM_CLASS}})
    (tmp_path / "cold").mkdir()
    found = evaluated_models(hub, tmp_path / "cold", tmp_path / "s1", tmp_path / "s2")
    assert found == {"base": ("Qwen/X", PINNED), "cold_start": (str(tmp_path / "cold"), None),
                     "stage1": (str(tmp_path / "s1"), None), "stage2": (str(tmp_path / "s2"), None)}
    assert evaluated_identity(hub, "base", "Qwen/X") == {"id": "Qwen/X", "revision": PINNED}
    (tmp_path / "cold" / "w").write_text("a")
    first = evaluated_identity(hub, "cold_start", str(tmp_path / "cold"))
    (tmp_path / "cold" / "w").write_text("b")
    assert evaluated_identity(hub, "cold_start", str(tmp_path / "cold")) != first

    repo_params(tmp_path / "repo", root)
    p = load_stage_params("predictions", tmp_path / "repo" / "params.yaml", tmp_path / "repo")
    write_json(hub / "manifest.json", {"vlm": {"path": None, "id": str(tiny_vlm_dir), "revision": PINNED,
                                               "class": VLM_CLASS}})
    path, revision = evaluated_models(hub, tmp_path / "cold", tmp_path / "s1", tmp_path / "s2")["base"]
    assert (path, revision) == (str(tiny_vlm_dir), PINNED)
    # as the stage calls it
    vlm = load_vlm(hub, p.models, MIN_PIX, MAX_PIX, 2, "transformers", path, revision, engine=p.vllm,
                   max_images=1)
    assert spy == [] and not vlm.loaded  # loaded on first use only
    image = Image.new("RGB", (64, 64), "red")
    [reply] = vlm.generate([VLMRequest("Is it red?", (image,), max_new_tokens=2)])
    assert isinstance(reply, str) and vlm.revision == PINNED
    assert loads(spy) == [(str(tiny_vlm_dir), PINNED)]
    # without a path, load_vlm resolves the manifest itself, and checks the class it names
    spy.clear()
    base = load_vlm(hub, p.models, MIN_PIX, MAX_PIX, 2, "transformers")
    assert type(base.model).__name__ == VLM_CLASS and base.revision == PINNED
    assert loads(spy) == [(str(tiny_vlm_dir), PINNED)]


# ------------------------------------------------------------------------------------- HallusionBench

def hallusion_with_text_only_rows(path: Path, rows: int) -> pd.DataFrame:
    """The tiny HallusionBench plus text-only questions (empty `image`) between its rows, as in
    VLMEvalKit's file (1,129 rows of which 951 carry an image)."""
    make_tiny_hallusionbench(path, rows, 0)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    text_only = [{"index": f"VS_chart_0_9{k}_0_0", "image": math.nan, "question": f"Is {k} a prime number?",
                  "answer": "No", "category": "VS", "l2-category": "chart"} for k in range(3)]
    out = pd.concat([df.iloc[:1], pd.DataFrame(text_only[:2]), df.iloc[1:], pd.DataFrame(text_only[2:])],
                    ignore_index=True)[df.columns]
    out.to_csv(path, sep="\t", index=False, lineterminator="\n", na_rep="")
    return df


def test_hallusionbench_text_only_rows_are_dropped_before_references_and_the_count(tmp_path, monkeypatch):
    path = tmp_path / "HallusionBench.tsv"
    original = hallusion_with_text_only_rows(path, 12)
    assert len(pd.read_csv(path, sep="\t")) == 15
    with pytest.raises(BenchmarkDataError, match="empty `image` cell"):
        load_tsv(path)  # other benchmarks keep rejecting image-less rows
    assert BENCHMARKS["HallusionBench"].skip_noimg and not BENCHMARKS["MMStar"].skip_noimg
    df = load_checked(path, "HallusionBench", "tiny")
    assert df["index"].tolist() == original["index"].tolist()
    assert all(len(imgs) == 1 for imgs in df["images"])  # back-references still resolve
    # the paper suite's row count (951 there) is checked against the rows left after dropping
    monkeypatch.setitem(paper_files.PAPER_FILES["HallusionBench"], "rows", 12)
    assert len(load_checked(path, "HallusionBench", "paper", decode=False)) == 12
    monkeypatch.setitem(paper_files.PAPER_FILES["HallusionBench"], "rows", 15)
    with pytest.raises(BenchmarkDataError, match="has 12 rows with an image .*expected 15"):
        load_checked(path, "HallusionBench", "paper")
    score = BENCHMARKS["HallusionBench"].score(df, {str(i): a for i, a in zip(df["index"], df["answer"])})
    assert score["score"] == 100.0
    assert paper_files.PAPER_FILES["HallusionBench"]["md5"] == "0c23ac0dc9ef46832d7a24504f2a0c7c"
    assert "after dropping" in paper_files.__doc__ and "currently rejects" not in str(paper_files.PAPER_FILES)


# ---------------------------------------------------------------------------------- CRPE image_path

def crpe_with_image_paths(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The tiny CRPE_RELATION in VLMEvalKit's meta-only form: no `image`, relative `image_path`s."""
    src = tmp_path / "src.tsv"
    make_tiny_crpe_relation(src, 8, 0)
    ref = load_tsv(src)
    (tmp_path / "images" / "CRPE").mkdir(parents=True)
    paths = []
    for idx, imgs in zip(ref["index"], ref["image_b64"]):
        name = f"images/CRPE/{idx}.png"
        (tmp_path / name).write_bytes(base64.b64decode(imgs[0]))
        paths.append(name)
    paths[5] = str([paths[5], str((tmp_path / paths[6]).resolve())])  # a list, one absolute path
    out = ref.drop(columns=["image", "image_b64", "images"]).assign(image_path=paths)
    write_tsv(out, tmp_path / "CRPE_RELATION.tsv")
    return tmp_path / "CRPE_RELATION.tsv", ref


def test_crpe_rows_with_image_path_read_the_files_next_to_the_tsv(tmp_path):
    path, ref = crpe_with_image_paths(tmp_path)
    df = load_checked(path, "CRPE_RELATION", "tiny")
    assert "image" not in df.columns and len(df) == 8
    assert [len(i) for i in df["images"]] == [1, 1, 1, 1, 1, 2, 1, 1]
    for got, want in zip(df["images"], ref["images"]):
        assert got[0].tobytes() == want[0].tobytes()
    assert df["image_b64"][5][1] == ref["image_b64"][6][0]
    assert max_images({"CRPE_RELATION": df}) == 2


def test_crpe_missing_image_files_say_what_to_do(tmp_path):
    path, _ = crpe_with_image_paths(tmp_path)
    (tmp_path / "images" / "CRPE" / "2.png").unlink()
    with pytest.raises(BenchmarkDataError) as err:
        load_checked(path, "CRPE_RELATION", "tiny", decode=False)
    msg = str(err.value)
    assert "1 image file(s) named in its `image_path` column do not exist" in msg
    assert f"row 2: {tmp_path / 'images' / 'CRPE' / '2.png'}" in msg
    assert f"against the TSV's folder {tmp_path}/" in msg and "put the image files there" in msg
    assert "base64" in msg and "paper_files.py" in msg


def test_highres_mme_realworld_for_the_memory_benchmark(tmp_path):
    from viper.eval.generate import make_mme_realworld_highres, make_tiny_mme_realworld

    make_mme_realworld_highres(tmp_path / "a.tsv", 6, 0, size=(300, 200))
    make_mme_realworld_highres(tmp_path / "b.tsv", 6, 0, size=(300, 200))
    make_tiny_mme_realworld(tmp_path / "tiny.tsv", 6, 0)
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()  # deterministic
    raw = pd.read_csv(tmp_path / "a.tsv", sep="\t", dtype=object)
    assert all(len(cell) > 64 for cell in raw["image"])  # every row carries its own image, no references
    df, tiny = load_checked(tmp_path / "a.tsv", "MME-RealWorld", "tiny"), load_tsv(tmp_path / "tiny.tsv")
    assert all(imgs[0].size == (300, 200) for imgs in df["images"])
    assert all(base64.b64decode(b[0])[:2] == b"\xff\xd8" for b in df["image_b64"])  # JPEG
    assert [BENCHMARKS["MME-RealWorld"].prompt(r) for r in df.to_dict("records")] == [
        BENCHMARKS["MME-RealWorld"].prompt(r) for r in tiny.to_dict("records")]
