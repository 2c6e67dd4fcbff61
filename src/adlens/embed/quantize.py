"""Static int8 quantisation of the EfficientNet-Lite0 graph (ONNX Runtime QDQ, per channel).

Why: on a 2-core AVX2 CPU (no VNNI) the fp32 graph runs at ~54 images per CPU-second and cannot
reach 150 images/s end to end; the int8 graph runs at ~75 per CPU-second (x1.38, measured with
``benchmarks/bench_embed.py``, which reports both).

How: activations uint8, weights int8 with one scale per output channel limited to 7 bits
(``reduce_range``), QDQ format (ONNX Runtime fuses the pairs into QLinearConv), MinMax
calibration, the first :data:`FLOAT_CONVS` convolutions left in float.

Why those two choices (measured on 256 clothing photos against the fp32 vectors, 2026-11-22):

========================================  ==============  =============
recipe                                    cosine mean/min  img/s (infer)
========================================  ==============  =============
v1: 8-bit weights, every conv int8        0.927 / 0.715    161
7-bit weights                             0.972 / 0.937    138
8-bit, stem in float                      0.973 / 0.880    141
**v2: 7-bit, stem + block-0 dw in float** **0.985 / 0.966** **185**
7-bit, stem + every depthwise in float    0.956 / 0.881    118
uint8 weights (no fast kernel)            0.993 / 0.980    12
========================================  ==============  =============

On AVX2 without VNNI, ONNX Runtime multiplies uint8 activations by int8 weights with
``vpmaddubsw``, whose int16 pair sums saturate with full 8-bit weights; 7-bit weights cannot
saturate. (Speeds in one column were measured minutes apart on a VM whose speed drifts.)

Calibration images are *synthetic* (seeded gradients, shapes, lines, blur and noise,
:func:`synthetic_images`): no data set is needed or downloaded, and the quantised file is the
same on every machine. For v1, synthetic calibration matched calibration on 320 real photos
(cosine to fp32 0.931 vs 0.932 mean). v2 on all 2,605 clothing photos: cosine 0.985 mean,
0.945 min; retrieval on the train/test halves (``eval_similar_clothing.py --model``): raw AUC
0.788 vs fp32 0.789, P@10 0.560 vs 0.555; learned projections within 0.005.

The vectors still differ from fp32's, so the int8 model has its own model id and the embedding
store never mixes the two.

Example::

    from adlens.embed import get_embedder
    emb = get_embedder("efficientnet-lite0-int8")     # quantises once into the model dir (~1 min)
    emb.embed_files(paths).vectors.shape              # (N, 1280)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["FLOAT_CONVS", "QUANT_VERSION", "quantize_int8", "synthetic_images"]

QUANT_VERSION = "qdq-pc7-minmax-synth256-stem-fp32-v2"  # bump when the recipe (and so the vectors) changes

# The first two convolutions (the stem and block 0's depthwise conv) stay in float: they see the
# raw normalised pixels, and quantising them cost more fidelity than any other layer (below).
FLOAT_CONVS = 2


def synthetic_images(n: int, size: int = 224, random_state: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 calibration images: product-photo-like synthetic scenes.

    Plain or white-ish graded backgrounds, 1-7 filled rectangles / ellipses / polygons, lines,
    optional blur and sensor noise: enough variety to span the activation ranges of real
    photos (checked against real-photo calibration, see the module docs).
    """
    rng = np.random.default_rng(random_state)
    out = np.empty((n, size, size, 3), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size] / size

    def colour():
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    def point():
        return tuple(int(v) for v in rng.integers(0, size, 2))

    for i in range(n):
        bg = rng.uniform(0, 1, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(0.85, 1))
        g = bg + rng.uniform(-0.3, 0.3, 3) * xx[..., None] + rng.uniform(-0.3, 0.3, 3) * yy[..., None]
        im = Image.fromarray((np.clip(g, 0, 1) * 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 8))):
            kind = int(rng.integers(0, 3))
            cx, cy = rng.integers(0, size, 2)
            w, h = rng.integers(10, size, 2)
            box = [int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)]
            if kind == 0:
                d.rectangle(box, fill=colour())
            elif kind == 1:
                d.ellipse(box, fill=colour())
            else:
                d.polygon([point() for _ in range(int(rng.integers(3, 7)))], fill=colour())
        for _ in range(int(rng.integers(0, 6))):
            d.line([point(), point()], fill=colour(), width=int(rng.integers(1, 6)))
        if rng.random() < 0.5:
            im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))
        a = np.asarray(im, np.float32) + rng.normal(0, rng.uniform(0, 12), (size, size, 3))
        out[i] = np.clip(a, 0, 255).astype(np.uint8)
    return out


def quantize_int8(
    fp32_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    n_calibration: int = 256,
    batch_size: int = 32,
    random_state: int = 0,
) -> Path:
    """Write the int8 (QDQ, per-channel) version of the fp32 pixels->features graph (atomic).

    ``fp32_path``'s graph takes ``pixels`` ``(N, S, S, 3)`` uint8; calibration uses
    :func:`synthetic_images` (``n_calibration`` of them, seeded).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    calib = synthetic_images(n_calibration, random_state=random_state)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calib):
                return None
            batch = {"pixels": calib[self.i : self.i + batch_size]}
            self.i += batch_size
            return batch

    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        tmp_out = Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        import onnx

        convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
        quantize_static(
            str(pre), str(tmp_out), _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            nodes_to_exclude=convs[:FLOAT_CONVS],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        os.replace(tmp_out, out_path)
    return out_path
