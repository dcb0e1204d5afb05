"""Dense text embeddings with BGE-M3 (FlagEmbedding), for caption/instruction similarity.

`BGEM3FlagModel` has no `revision` argument (it calls `snapshot_download` unpinned when given a
hub id), so a hub id is first resolved here to a local snapshot at the pinned revision and the
library is only ever handed a folder. Tiny models built by `viper.zoo.embed` are folders already.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Files of the BAAI/bge-m3 repository that inference never reads (ONNX export, other frameworks).
_SKIP = ["onnx/*", "*.onnx", "*.onnx_data", "flax_model.msgpack", "rust_model.ot", "tf_model.h5", "imgs/*"]


def local_snapshot(path_or_id: str, revision: str | None, ignore_patterns: list[str] | None = None,
                   allow_patterns: list[str] | None = None) -> str:
    """An existing folder as is; otherwise the hub snapshot of `path_or_id` at `revision`."""
    if Path(path_or_id).is_dir():
        return str(path_or_id)
    # Hub ids are exactly "org/name"; anything else is a local path that is missing.
    if path_or_id.startswith(("/", ".", "~")) or path_or_id.count("/") != 1:
        raise FileNotFoundError(f"no such model folder: {path_or_id}")
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id=path_or_id, revision=revision, ignore_patterns=ignore_patterns,
                             allow_patterns=allow_patterns)


class Embedder:
    def __init__(self, path_or_id: str, revision: str | None = None, device: str = "cpu",
                 batch_size: int = 256):
        from FlagEmbedding import BGEM3FlagModel

        self.model_id = path_or_id
        self.batch_size = batch_size
        try:
            folder = local_snapshot(path_or_id, revision, ignore_patterns=_SKIP)
            # One device string keeps FlagEmbedding on its single-process path (a list of devices
            # would start a multiprocessing pool). fp32 everywhere so scores match across devices.
            self._m = BGEM3FlagModel(folder, use_fp16=False, devices=device, batch_size=batch_size)
        except Exception as e:
            raise RuntimeError(
                f"could not load embedding model {path_or_id!r} (revision {revision!r}): {e}\n"
                "For a tiny local model run `dvc repro models`; for a hub model check the model id "
                "and revision in params.yaml.") from e
        self.dim: int = int(self._m.model.config.hidden_size)
        # The transformers encoder FlagEmbedding wraps (XLMRobertaModel for BGE-M3), for the loader's check.
        self.model_class: str = type(self._m.model.model).__name__

    def encode(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised, so a dot product is a cosine similarity."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._m.encode(list(texts), batch_size=self.batch_size, return_dense=True,
                             return_sparse=False, return_colbert_vecs=False)
        vecs = np.asarray(out["dense_vecs"], dtype=np.float32).reshape(len(texts), -1)
        # The library normalises already; again so the guarantee does not rest on its defaults.
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
