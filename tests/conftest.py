import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """The tiny Qwen2.5-VL the `models` stage builds, built once per test session."""
    from viper.zoo.vlm import build_tiny_vlm

    out = tmp_path_factory.mktemp("models") / "vlm"
    build_tiny_vlm(out, seed=0)
    return out


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> dict:
    """The project built once per test session by a plain `dvc repro` on the embedded default (every stage).

    The build is left uncommitted, as a user's first build is. End-to-end modules copy it
    (`viper.sandbox.copy_repo`) and change their copy, never this one. `output` is what that first
    `dvc repro` printed. Under pytest-xdist (`make test`) the workers share one build: the first to need
    it builds it under a lock in the session's common temporary directory, the others wait and reuse it."""
    import fcntl

    from viper.sandbox import make_repo, run

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # workers' dirs sit in the session's
    where, output = shared / "built_repo", shared / "built_repo.out"
    with open(shared / "built_repo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not output.exists():  # written last: a build that failed is not reused, the next worker retries
            if where.exists():
                import shutil
                shutil.rmtree(where)
            out = run(["dvc", "repro"], make_repo(where))
            output.write_text(out)
    return {"path": where, "output": output.read_text()}
