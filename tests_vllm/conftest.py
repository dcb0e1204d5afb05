"""Tests that run the real vLLM engine (its CPU build) on the tiny Qwen2.5-VL, in `.venv-vllm`.

One engine serves the whole session: a cold start costs about a minute on two cores.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# vLLM writes compile caches, torch inductor caches and ZMQ socket files; keep them out of $HOME and /tmp.
_SCRATCH = Path(tempfile.mkdtemp(prefix="viper-vllm-tests-"))
for var, sub in (("VLLM_CACHE_ROOT", "vllm"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("VLLM_RPC_BASE_PATH", "rpc")):
    (_SCRATCH / sub).mkdir()  # vLLM binds sockets there without creating the folder
    os.environ.setdefault(var, str(_SCRATCH / sub))

# The main suite's session fixtures: the repository root and the tiny Qwen2.5-VL the `models` stage builds.
from tests.conftest import root, tiny_vlm_dir  # noqa: E402,F401

MAX_IMAGES = 4  # BLINK rows carry up to four images


@pytest.fixture(scope="session")
def engine_settings(root):
    """The tiny default's `vllm` params section, as the stages pass it."""
    from viper.backends.vllm_backend import EngineSettings
    from viper.config import load_params

    return EngineSettings.of(load_params(root / "params.yaml").vllm)


@pytest.fixture(scope="session")
def vlm(tiny_vlm_dir, engine_settings):
    """One real engine for the session, built as the stages build it."""
    from viper.backends.vllm_backend import VllmVLM

    model = VllmVLM(str(tiny_vlm_dir), None, device="cpu", dtype="float32", min_pixels=784, max_pixels=3136,
                    batch_size=8, max_images=MAX_IMAGES, settings=engine_settings)
    yield model
    model.close()
