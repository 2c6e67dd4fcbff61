"""Feature jobs over a workspace: compute what is missing, store it, resume after a crash.

``compute_features(ws, "ads")`` computes the creative (M) features of every ad that has no row
yet, ``"articles"`` the context features of every article, ``"pairs"`` the six F features of
(ad, article) pairs. Rows go to the workspace's :class:`~adlens.features.store.FeatureStore`
one batch at a time, so a crash or Ctrl-C loses at most the batch in flight and a rerun
computes only what is missing.

What a row is keyed by (content hashes, so a renamed or re-ingested ad reuses its row)
------------------------------------------------------------------------------------------
- ``ads``: ``sha256("creative" | image sha256 | sha256(copy text) | advertiser)``. Two ad ids
  with the same image, copy and advertiser share one row.
- ``articles``: ``sha256(title + "\\n\\n" + text)`` (the title changes the features, so it is
  part of the key; same join as :func:`adlens.embed.jobs.article_text`).
- ``pairs``: ``sha256("pair" | ad row key | article row key | joint space id)``.

Embedding vectors are kept out of the feature rows
--------------------------------------------------
They live in the workspace's :class:`~adlens.store.embeddings.EmbeddingStore` (Parquet,
content-keyed, one folder per model); a feature row holds the pointer instead:
``image_embedding_key`` (= the image sha256, embedding-store kind ``"ads"`` -- the same key and
model id as :func:`adlens.embed.jobs.embed_workspace` uses, so a vector is stored once),
``text_embedding_key`` (= the row key; kind ``"ad-words"`` for the ad's copy + OCR text, kind
``"article-windows"`` for an article's mean-of-windows embedding), and the model id in
``*_embedding_model``. This keeps feature tables small (an ad's row is ~1.5 KB of Parquet; its
two vectors would add ~6.5 KB) and every vector in one place for the vector index. The vectors
of a batch are written before its rows, so a stored row always has its vectors;
:func:`embedding_matrix` reads them back.

What a row does *not* key on: the extractor's configuration (OCR backend, models). Each row
records it (``ocr_backend``, ``*_embedding_model``); to recompute with another configuration,
bump the schema version or delete ``artifacts/features``.

The joint image-text space (``sim_adimage_article``)
----------------------------------------------------
``joint="auto"`` (default) loads ``WORKSPACE/artifacts/models/joint_space.npz``; when absent and
at least :data:`MIN_JOINT_PAIRS` ads have both an image and a text embedding, it fits a
:class:`~adlens.features.joint.JointSpace` on those (ad image, ad copy + OCR text) pairs once,
LiT-style, and saves it (delete the file to refit). With fewer ads ``sim_adimage_article`` stays
null -- reported, never zero-filled. The space's file hash is part of the pair key.

Example::

    >>> from adlens.workspace import open_workspace                     # doctest: +SKIP
    >>> ws = open_workspace("ws")                                        # doctest: +SKIP
    >>> r = compute_features(ws, "ads", workers=2)                       # doctest: +SKIP
    >>> r["computed"], r["coverage"]["twist_present"]                    # doctest: +SKIP
    (394, 0.0)
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from adlens.errors import InvalidInput
from adlens.features.schema import FEATURE_SCHEMA_VERSION, FeatureSpec
from adlens.features.store import FeatureStore, open_feature_store
from adlens.store import schema

log = logging.getLogger(__name__)

__all__ = [
    "AD_SPECS",
    "ARTICLE_SPECS",
    "KINDS",
    "NULL_BY_DESIGN",
    "PAIR_SPECS",
    "compute_features",
    "default_context_features",
    "default_creative_features",
    "embedding_matrix",
    "histogram_svg",
    "load_features",
    "report_features",
    "stage_features",
    "summarize",
]

KINDS = ("ads", "articles", "pairs")
AD_IMAGE_KIND = "ads"  # embedding-store kind shared with adlens.embed.jobs (same key: image sha256)
AD_WORDS_KIND = "ad-words"  # ad copy + OCR text vectors, keyed by the ad row key
ARTICLE_TEXT_KIND = "article-windows"  # article mean-of-windows vectors, keyed by the article row key
JOINT_FILE = "joint_space.npz"
MIN_JOINT_PAIRS = 64
DEFAULT_BATCH = {"ads": 16, "articles": 16, "pairs": 5000}
ARTICLE_CHUNK = 4  # articles per worker task (embedding and NER are batched within a task)
AUTO_WORKERS_MIN_ITEMS = 32

#: Why some features are null even when everything works (shown next to them in the report).
NULL_BY_DESIGN: dict[str, str] = {
    "twist_present": "LLM-only: null unless the optional LLM extractor is configured",
    "twist_resolves_fast": "LLM-only: null unless the optional LLM extractor is configured",
    "llm_model_id": "LLM-only: null unless the optional LLM extractor is configured",
    "ocr_text": "null without an OCR backend",
    "ocr_n_words": "null without an OCR backend",
    "ocr_n_lines": "null without an OCR backend",
    "ocr_text_area_share": "null without an OCR backend",
    "ocr_confidence": "null when no text was read (or no OCR backend)",
    "copy_readability": "null when the ad has no words",
    "copy_brand_mention": "null for ads without an advertiser",
    "copy_concreteness": "null when no word is in the concreteness norms",
    "ad_topic": "null without words to classify",
    "ad_topic_confidence": "null without words to classify",
    "text_embedding": "null when there is no text",
    "topic": "null for empty texts",
    "topic_confidence": "null for empty texts",
    "sim_adtext_article": "null when either side has no text embedding",
    "contrast": "null when either side has no text embedding",
    "sim_adimage_article": f"null without a joint image-text space (fitted once >= {MIN_JOINT_PAIRS} ads have embeddings)",
    "entity_overlap_rate": "null when neither side has a named entity",
    "topic_match": "null when either topic is unknown",
}


# ---------------------------------------------------------------------------
# Keys and stored schemas
# ---------------------------------------------------------------------------


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def creative_key(image_sha256: str, copy_text: str | None, advertiser: str | None) -> str:
    """Row key of a creative: image bytes + copy text + advertiser (all that its M features read)."""
    return sha256_text(f"creative\x1f{image_sha256}\x1f{sha256_text(copy_text or '')}\x1f{advertiser or ''}")


def article_text(title: str | None, text: str) -> str:
    return f"{title}\n\n{text}" if title else text


def article_key(title: str | None, text: str) -> str:
    return sha256_text(article_text(title, text))


def pair_key(ad_key: str, art_key: str, joint_id: str) -> str:
    return sha256_text(f"pair\x1f{ad_key}\x1f{art_key}\x1f{joint_id}")


def _is_vector(spec: FeatureSpec) -> bool:
    return spec.dtype.startswith("vector[")


def _stored(specs: Sequence[FeatureSpec], kinds: dict[str, str]) -> tuple[FeatureSpec, ...]:
    """Vector columns replaced by their pointer into the embedding store."""
    out = []
    for s in specs:
        if _is_vector(s):
            out.append(FeatureSpec(f"{s.name}_key", "string",
                                   f"key of the {s.name} in the embedding store (kind {kinds[s.name]!r}, "
                                   f"model in {s.name}_model); None when not computed", True))
        else:
            out.append(s)
    return tuple(out)


def _creative_specs() -> tuple[FeatureSpec, ...]:
    from adlens.features.creative import creative_schema

    return creative_schema()


def _context_specs() -> tuple[FeatureSpec, ...]:
    from adlens.features.context import context_schema

    return context_schema()


def _pair_specs() -> tuple[FeatureSpec, ...]:
    from adlens.features.pair import PAIR_SCHEMA

    return PAIR_SCHEMA


AD_ID_SPECS = (
    FeatureSpec("image_sha256", "string", "sha256 of the image bytes"),
    FeatureSpec("copy_sha256", "string", "sha256 of the UTF-8 copy text ('' when none)"),
    FeatureSpec("advertiser", "string", "advertiser name given to the extractor", True),
)
PAIR_ID_SPECS = (
    FeatureSpec("ad_key", "string", "row key of the ad's features"),
    FeatureSpec("article_key", "string", "row key of the article's features"),
    FeatureSpec("joint_model", "string", "id of the joint image-text space used; 'none' without one"),
)
AD_SPECS: tuple[FeatureSpec, ...] = AD_ID_SPECS + _stored(_creative_specs(), {"image_embedding": AD_IMAGE_KIND, "text_embedding": AD_WORDS_KIND})
ARTICLE_SPECS: tuple[FeatureSpec, ...] = _stored(_context_specs(), {"text_embedding": ARTICLE_TEXT_KIND})
PAIR_SPECS: tuple[FeatureSpec, ...] = PAIR_ID_SPECS + _pair_specs()
STORED_SPECS = {"ads": AD_SPECS, "articles": ARTICLE_SPECS, "pairs": PAIR_SPECS}
FEATURE_SPECS = {"ads": _creative_specs(), "articles": _context_specs(), "pairs": _pair_specs()}


# ---------------------------------------------------------------------------
# Catalog records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AdRecord:
    ad_id: str
    image_sha256: str
    text: str | None
    advertiser: str | None

    @property
    def key(self) -> str:
        return creative_key(self.image_sha256, self.text, self.advertiser)


@dataclass(frozen=True)
class ArticleRecord:
    article_id: str
    title: str | None
    text: str
    ad_id: str | None

    @property
    def key(self) -> str:
        return article_key(self.title, self.text)


def ad_records(ws, ad_ids: Iterable[str] | None = None) -> list[AdRecord]:
    """Ads of the catalog (all, or ``ad_ids``) with their image sha256, copy and advertiser."""
    c, im = schema.creatives, schema.images
    q = sa.select(c.c.ad_id, im.c.sha256, c.c.text, c.c.advertiser).join(im, im.c.id == c.c.image_id).order_by(c.c.ad_id)
    return [AdRecord(*r) for r in _select(ws, q, c.c.ad_id, ad_ids)]


def _select(ws, q, id_col, ids: Iterable[str] | None) -> list:
    """Rows of ``q``, restricted to ``ids`` (filtered in Python when there are too many for an IN list)."""
    wanted = None if ids is None else set(ids)
    if wanted is not None and len(wanted) <= 500:
        q = q.where(id_col.in_(sorted(wanted)))
    with ws.engine.connect() as conn:
        rows = conn.execute(q).all()
    return rows if wanted is None else [r for r in rows if r[0] in wanted]


def article_records(ws, article_ids: Iterable[str] | None = None) -> list[ArticleRecord]:
    a = schema.articles
    q = sa.select(a.c.article_id, a.c.title, a.c.text, a.c.ad_id).order_by(a.c.article_id)
    return [ArticleRecord(*r) for r in _select(ws, q, a.c.article_id, article_ids)]


# ---------------------------------------------------------------------------
# Extractors (built once per worker)
# ---------------------------------------------------------------------------


def default_creative_features(threads: int = 1, image_model: str | None = None):
    """The default creative extractor: RapidOCR (or Tesseract), EfficientNet-Lite0 + MiniLM
    embedders, spaCy NER, the default-taxonomy topic classifier; ``threads`` ONNX Runtime threads
    per model; ``image_model`` the workspace's image embedder (``image_model(ws)``; None: the
    setting). Picklable by reference (used, through ``functools.partial``, as the per-process factory)."""
    from adlens.embed import get_embedder
    from adlens.embed.jobs import image_model as setting
    from adlens.features.context import DEFAULT_TAXONOMY, TopicClassifier
    from adlens.features.creative import CreativeFeatures, get_ocr_backend

    text = get_embedder("minilm", num_threads=threads)
    return CreativeFeatures(
        ocr=get_ocr_backend("auto", num_threads=threads) if _rapidocr() else get_ocr_backend("auto"),
        image_embedder=get_embedder(image_model or setting(), num_threads=threads),
        text_embedder=text,
        topic_classifier=TopicClassifier(DEFAULT_TAXONOMY, embedder=text),
    )


def _rapidocr() -> bool:
    from adlens.features.creative import RapidOcrBackend

    return RapidOcrBackend.available()


def default_context_features(threads: int = 1):
    """The default article extractor (MiniLM windows, default taxonomy, spaCy NER)."""
    from adlens.embed import get_embedder
    from adlens.features.context import ContextFeatures

    return ContextFeatures(text_embedder=get_embedder("minilm", num_threads=threads))


# ---------------------------------------------------------------------------
# Tasks (module level: picklable for process workers)
# ---------------------------------------------------------------------------

# (key, row or None, error or None, ms)
Result = tuple[str, dict | None, str | None, float]


def _ad_task(fx, task: tuple) -> list[Result]:
    from adlens.ingest.validate import load_image

    key, sha, path, copy_text, advertiser, max_pixels = task
    t0 = time.perf_counter()
    try:
        _, img = load_image(Path(path).read_bytes(), f"image {sha[:12]}", max_pixels)
        row = fx.extract(img, copy_text or "", advertiser)
    except Exception as e:  # noqa: BLE001 - one bad creative must not stop the batch
        msg = str(e) if isinstance(e, InvalidInput) else f"{type(e).__name__}: {e}"
        if isinstance(e, FileNotFoundError):
            msg = f"image {sha[:12]}: blob missing from the workspace"
        return [(key, None, msg, (time.perf_counter() - t0) * 1e3)]
    return [(key, row, None, (time.perf_counter() - t0) * 1e3)]


def _article_task(fx, task: list[tuple]) -> list[Result]:
    t0 = time.perf_counter()
    try:
        rows = fx.extract_batch([t[2] for t in task], [t[1] or "" for t in task])
        ms = (time.perf_counter() - t0) * 1e3 / len(task)
        return [(t[0], r, None, ms) for t, r in zip(task, rows)]
    except Exception:  # retried one by one below to find the failing article
        if len(task) == 1:
            raise
    # isolate the failing article(s)
    out: list[Result] = []
    for t in task:
        try:
            out += _article_task(fx, [t])
        except Exception as e:  # noqa: BLE001 - reported per article
            out.append((t[0], None, f"{type(e).__name__}: {e}", 0.0))
    return out


_tls = threading.local()
# Extractors are built and warmed up one at a time: lazy model loading and registries are not
# all safe against two threads doing their first load at once.
_build_lock = threading.Lock()


def _init_worker(factory: Callable[[], Any]) -> None:
    _tls.factory = factory
    _tls.fx = None


def _build(factory: Callable[[], Any]) -> Any:
    with _build_lock:
        fx = factory()
        if hasattr(fx, "warmup"):
            fx.warmup()
        return fx


def _call(task_fn: Callable, task: Any) -> list[Result]:
    if getattr(_tls, "fx", None) is None:
        _tls.fx = _build(_tls.factory)
    return task_fn(_tls.fx, task)


def _run_tasks(task_fn: Callable, tasks: Sequence[Any], factory: Callable[[], Any], workers: int,
               executor: str) -> Iterator[list[Result]]:
    """Results of ``task_fn(extractor, task)`` in completion order, at most 2 tasks per worker in flight."""
    if not tasks:
        return
    if workers <= 1:
        fx = _build(factory)
        for t in tasks:
            yield task_fn(fx, t)
        return
    pool: Executor
    if executor == "process":
        # spawn: a forked child would inherit ONNX Runtime / OpenMP thread state of the parent
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(factory,))
    elif executor == "thread":
        pool = ThreadPoolExecutor(workers, thread_name_prefix="adlens-features", initializer=_init_worker,
                                  initargs=(factory,))
    else:
        raise InvalidInput(f"unknown executor {executor!r}; use 'thread' or 'process'")
    ok = False
    try:
        it = iter(tasks)
        inflight = {pool.submit(_call, task_fn, t) for t in _take(it, 2 * workers)}
        while inflight:
            done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            for f in done:
                nxt = next(it, None)
                if nxt is not None:
                    inflight.add(pool.submit(_call, task_fn, nxt))
                yield f.result()
        ok = True
    finally:
        pool.shutdown(wait=ok, cancel_futures=not ok)


def auto_workers(n_items: int) -> int:
    """Workers when none are asked for: 2 threads on >= 2 cores once there are enough tasks to
    repay loading a second set of models (~5 s), else 1.

    Measured on the 394-creative ``adlens sample`` on this 2-core machine (shared with other
    jobs): threads beat processes in every run (spawned processes load their models in
    parallel with the work and pay pickling); 2 threads were 1.4x faster than 1 at load ~5, and
    equal when the cores were saturated by other work."""
    from adlens.embed.base import default_num_threads

    return 1 if n_items < AUTO_WORKERS_MIN_ITEMS else max(1, min(2, default_num_threads()))


def _take(it: Iterator, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


# ---------------------------------------------------------------------------
# The jobs
# ---------------------------------------------------------------------------


def compute_features(
    ws,
    kind: str,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
    pairs: Path | str | Iterable[tuple[str, str]] | None = None,
    batch_size: int | None = None,
    executor: str = "thread",
    extractor: Callable[[], Any] | None = None,
    joint: Any = "auto",
    store: FeatureStore | None = None,
) -> dict:
    """Compute the missing ``kind`` features of the workspace (``ads`` | ``articles`` | ``pairs``).

    Args:
        workers: parallel workers for ads/articles, each with its own models (default
            :func:`auto_workers`: 1 for small jobs, else 2 on >= 2 cores).
        progress: ``callback(done, total)`` over the items computed in this call.
        limit: compute at most this many missing items (ads: distinct creatives).
        pairs: for ``pairs`` only: a CSV path (columns ``ad_id``, ``article_id``) or
            ``(ad_id, article_id)`` tuples; default each ad with the article written for it
            (``articles.ad_id``).
        batch_size: rows per stored part (the most a crash can lose).
        executor: ``"thread"`` (default) or ``"process"`` workers (a process factory must pickle).
        extractor: zero-argument factory of the extractor (a
            :class:`~adlens.features.creative.CreativeFeatures` for ads,
            :class:`~adlens.features.context.ContextFeatures` for articles), called once per worker.
        joint: ``"auto"``, None, or an object with ``image_to_joint``/``text_to_joint`` (pairs).

    Returns:
        ``{"kind", "schema_version", "total", "computed", "cached", "pending", "failed": [{id, key,
        reason}], "rows", "seconds", "ms_per_item", "coverage": {feature: share non-null},
        "distribution": {feature: summary}}`` -- counts are per ad id / article id / pair.
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if workers is not None and workers < 1:
        raise InvalidInput("workers must be >= 1")
    if limit is not None and limit < 0:
        raise InvalidInput("limit must be >= 0")
    if executor not in ("thread", "process"):
        raise InvalidInput(f"unknown executor {executor!r}; use 'thread' or 'process'")
    if pairs is not None and kind != "pairs":
        raise InvalidInput("a pair list is only used by the 'pairs' job")
    store = store or open_feature_store(ws)
    batch_size = batch_size or DEFAULT_BATCH[kind]
    t0 = time.perf_counter()
    if kind == "ads":
        res = _ads_job(ws, store, workers, progress, limit, batch_size, executor, extractor)
    elif kind == "articles":
        res = _articles_job(ws, store, workers, progress, limit, batch_size, executor, extractor)
    else:
        res = _pairs_job(ws, store, pairs, progress, limit, batch_size, joint)
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


def _result(kind: str, ids_by_key: dict[str, list[str]], todo: list[str], computed: set[str],
            failed: dict[str, str], item_ms: list[float], loop_s: float) -> dict:
    n_ids = lambda keys: sum(len(ids_by_key[k]) for k in keys)
    todo_set = set(todo)
    cached = [k for k in ids_by_key if k not in todo_set]
    attempted = computed | set(failed)
    id_name = {"ads": "ad_id", "articles": "article_id", "pairs": "pair"}[kind]
    return {
        "kind": kind,
        "schema_version": FEATURE_SCHEMA_VERSION,
        "total": n_ids(ids_by_key),
        "computed": n_ids(computed),
        "cached": n_ids(cached),
        "pending": n_ids([k for k in todo if k not in attempted]),
        "failed": [{id_name: i, "key": k, "reason": r} for k, r in failed.items() for i in ids_by_key[k]],
        "distinct": len(ids_by_key),
        "ms_per_item": round(loop_s * 1e3 / len(attempted), 1) if attempted else None,
        "extract_ms_mean": round(float(np.mean(item_ms)), 1) if item_ms else None,
    }


def _group(records, key=lambda r: r.key, ident=lambda r: r.ad_id) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(key(r), []).append(ident(r))
    return out


class _VectorSink:
    """Writes vectors to the embedding store, skipping keys it already holds."""

    def __init__(self, ws):
        self.store = ws.embeddings
        self.have: dict[tuple[str, str], set[str]] = {}
        self.buf: dict[tuple[str, str], tuple[list[str], list[np.ndarray]]] = {}

    def add(self, model: str, kind: str, key: str, vec) -> None:
        mk = (model, kind)
        if mk not in self.have:
            self.have[mk] = set(self.store.load(model, kind)[0])
        if key in self.have[mk]:
            return
        self.have[mk].add(key)
        ks, vs = self.buf.setdefault(mk, ([], []))
        ks.append(key)
        vs.append(np.asarray(vec, np.float32))

    def flush(self) -> None:
        for (model, kind), (ks, vs) in self.buf.items():
            self.store.put(model, kind, ks, np.stack(vs))
        self.buf = {}


def _ads_job(ws, store, workers, progress, limit, batch_size, executor, extractor) -> dict:
    records = ad_records(ws)
    ids_by_key = _group(records)
    rec_by_key = {r.key: r for r in records}
    todo = store.missing("ads", ids_by_key, AD_SPECS)
    run = todo if limit is None else todo[:limit]
    max_px = ws.settings.max_image_pixels
    tasks = [(k, rec_by_key[k].image_sha256, str(ws.blobs.path_for(rec_by_key[k].image_sha256)),
              rec_by_key[k].text, rec_by_key[k].advertiser, max_px) for k in run]
    from adlens.embed.jobs import image_model

    # a partial of a module-level function: processes can unpickle it
    factory = extractor or partial(default_creative_features, threads=1, image_model=image_model(ws))
    sink = _VectorSink(ws)
    workers = workers or auto_workers(len(tasks))

    def to_row(key: str, row: dict) -> dict:
        rec = rec_by_key[key]
        row = dict(row)
        img, txt = row.pop("image_embedding", None), row.pop("text_embedding", None)
        row["image_embedding_key"] = row["text_embedding_key"] = None
        if img is not None and row.get("image_embedding_model"):
            sink.add(row["image_embedding_model"], AD_IMAGE_KIND, rec.image_sha256, img)
            row["image_embedding_key"] = rec.image_sha256
        if txt is not None and row.get("text_embedding_model"):
            sink.add(row["text_embedding_model"], AD_WORDS_KIND, key, txt)
            row["text_embedding_key"] = key
        row.update(key=key, image_sha256=rec.image_sha256, copy_sha256=sha256_text(rec.text or ""), advertiser=rec.advertiser)
        return row

    res = _drive("ads", store, AD_SPECS, _ad_task, tasks, factory, workers, executor, batch_size, progress, to_row, sink)
    out = _result("ads", ids_by_key, todo, *res)
    out["workers"] = workers
    out.update(summarize_kind(ws, "ads", store=store, records=records))
    return out


def _articles_job(ws, store, workers, progress, limit, batch_size, executor, extractor) -> dict:
    records = article_records(ws)
    ids_by_key = _group(records, ident=lambda r: r.article_id)
    rec_by_key = {r.key: r for r in records}
    todo = store.missing("articles", ids_by_key, ARTICLE_SPECS)
    run = todo if limit is None else todo[:limit]
    items = [(k, rec_by_key[k].title, rec_by_key[k].text) for k in run]
    tasks = [items[i:i + ARTICLE_CHUNK] for i in range(0, len(items), ARTICLE_CHUNK)]
    factory = extractor or (lambda: default_context_features(threads=1))
    if extractor is None and executor == "process":
        factory = default_context_features
    sink = _VectorSink(ws)
    workers = workers or auto_workers(len(items))

    def to_row(key: str, row: dict) -> dict:
        row = dict(row)
        txt = row.pop("text_embedding", None)
        row["text_embedding_key"] = None
        if txt is not None and row.get("text_embedding_model"):
            sink.add(row["text_embedding_model"], ARTICLE_TEXT_KIND, key, txt)
            row["text_embedding_key"] = key
        row["key"] = key
        return row

    res = _drive("articles", store, ARTICLE_SPECS, _article_task, tasks, factory, workers, executor, batch_size,
                 progress, to_row, sink, n_items=len(items))
    out = _result("articles", ids_by_key, todo, *res)
    out["workers"] = workers
    out.update(summarize_kind(ws, "articles", store=store, records=records))
    return out


def _drive(kind, store, specs, task_fn, tasks, factory, workers, executor, batch_size, progress, to_row, sink,
           n_items: int | None = None):
    """Run the tasks, store rows batch by batch (vectors first, then rows). Returns the counters."""
    total = len(tasks) if n_items is None else n_items
    computed: set[str] = set()
    failed: dict[str, str] = {}
    item_ms: list[float] = []
    buf: list[dict] = []
    done = 0
    t0 = time.perf_counter()

    def flush():
        if buf:
            sink.flush()
            store.put(kind, buf, specs)
            computed.update(r["key"] for r in buf)
            buf.clear()

    if progress and total:
        progress(0, total)
    try:
        # closing(): on an error or Ctrl-C the pool is shut down now, not when the traceback is freed
        with closing(_run_tasks(task_fn, tasks, factory, workers, executor)) as results_iter:
            for results in results_iter:
                for key, row, err, ms in results:
                    done += 1
                    item_ms.append(ms)
                    if err is not None:
                        failed[key] = err
                    else:
                        buf.append(to_row(key, row))
                if len(buf) >= batch_size:
                    flush()
                if progress:
                    progress(done, total)
        flush()
    finally:
        sink.buf = {}  # an interrupted batch is dropped whole (vectors and rows)
    return computed, failed, item_ms, time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------


def read_pairs(path: Path | str) -> list[tuple[str, str]]:
    """``(ad_id, article_id)`` rows of a CSV with those two columns (a header row is required)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"{p}: pair file not found")
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or ())
        if not {"ad_id", "article_id"} <= cols:
            raise InvalidInput(f"{p}: needs columns ad_id and article_id (found: {', '.join(sorted(cols)) or 'none'})")
        out = []
        for i, row in enumerate(reader, start=2):
            a, b = (row.get("ad_id") or "").strip(), (row.get("article_id") or "").strip()
            if not a or not b:
                raise InvalidInput(f"{p}:{i}: empty ad_id or article_id")
            out.append((a, b))
    return out


def default_pairs(ws) -> list[tuple[str, str]]:
    """Each ad with the article written for it (``articles.ad_id``)."""
    return [(a.ad_id, a.article_id) for a in article_records(ws) if a.ad_id]


def embedding_matrix(ws, rows: Sequence[dict], name: str, kind: str, model: str | None = None) -> tuple[np.ndarray | None, str | None]:
    """``(n, d)`` vectors of ``rows`` for vector feature ``name`` (``"image_embedding"`` /
    ``"text_embedding"``) from the embedding store, NaN rows where a row has none or another
    model; ``model`` defaults to the most common one. Returns ``(matrix or None, model)``."""
    models = Counter(r.get(f"{name}_model") for r in rows if r.get(f"{name}_key"))
    model = model or (models.most_common(1)[0][0] if models else None)
    if model is None:
        return None, None
    want = [(i, r[f"{name}_key"]) for i, r in enumerate(rows) if r.get(f"{name}_key") and r.get(f"{name}_model") == model]
    if not want:
        return None, model
    V = ws.embeddings.get(model, kind, [k for _, k in want])
    M = np.full((len(rows), V.shape[1]), np.nan, np.float32)
    M[[i for i, _ in want]] = V
    return M, model


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def resolve_joint(ws, joint: Any, store: FeatureStore | None = None) -> tuple[Any, str, dict]:
    """``(joint space or None, id, info)`` for ``joint`` = ``"auto"`` | None | an object."""
    if joint is None:
        return None, "none", {"status": "disabled"}
    if joint != "auto":
        jid = str(getattr(joint, "model_id", None) or f"{type(joint).__module__}.{type(joint).__name__}")
        return joint, jid, {"status": "given", "id": jid}
    from adlens.features.joint import JointSpace

    path = ws.models_dir / JOINT_FILE
    if path.exists():
        js = JointSpace.load(path)
        jid = f"lit-joint/{_file_sha(path)}"
        return js, jid, {"status": "loaded", "id": jid, "path": str(path), **getattr(js, "meta_", {})}
    store = store or open_feature_store(ws)
    rows = store.rows("ads", AD_SPECS, columns=["image_embedding_key", "image_embedding_model", "text_embedding_key",
                                               "text_embedding_model"])
    rows = [r for r in rows if r["image_embedding_key"] and r["text_embedding_key"]]
    if len(rows) < MIN_JOINT_PAIRS:
        return None, "none", {"status": f"not fitted: {len(rows)} ads with both embeddings < {MIN_JOINT_PAIRS}"}
    Xi, mi = embedding_matrix(ws, rows, "image_embedding", AD_IMAGE_KIND)
    Xt, mt = embedding_matrix(ws, rows, "text_embedding", AD_WORDS_KIND)
    ok = ~(np.isnan(Xi).any(axis=1) | np.isnan(Xt).any(axis=1))
    t0 = time.perf_counter()
    js = JointSpace(dim=128, random_state=0).fit(Xi[ok], Xt[ok])
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    js.save(tmp, image_model=mi, text_model=mt, n_pairs=int(ok.sum()))
    tmp.replace(path)
    jid = f"lit-joint/{_file_sha(path)}"
    return js, jid, {"status": "fitted", "id": jid, "path": str(path), "n_pairs": int(ok.sum()),
                     "seconds": round(time.perf_counter() - t0, 2), "image_model": mi, "text_model": mt}


def _pairs_job(ws, store, pairs, progress, limit, batch_size, joint) -> dict:
    from adlens.features.pair import AdSide, ArticleSide, pair_features

    if pairs is None:
        requested = default_pairs(ws)
    elif isinstance(pairs, str | Path):
        requested = read_pairs(pairs)
    else:
        requested = [(str(a), str(b)) for a, b in pairs]
    requested = list(dict.fromkeys(requested))
    ads = {r.ad_id: r for r in ad_records(ws, {a for a, _ in requested})}
    arts = {r.article_id: r for r in article_records(ws, {b for _, b in requested})}
    ad_rows = {r["key"]: r for r in store.rows("ads", AD_SPECS, keys={r.key for r in ads.values()})}
    art_rows = {r["key"]: r for r in store.rows("articles", ARTICLE_SPECS, keys={r.key for r in arts.values()})}
    js, jid, jinfo = resolve_joint(ws, joint, store)

    ids_by_key: dict[str, list[str]] = {}
    key_parts: dict[str, tuple[str, str]] = {}
    failed: dict[str, str] = {}
    for a, b in requested:
        pid = f"{a}|{b}"
        if a not in ads or b not in arts:
            why = f"unknown ad_id {a!r}" if a not in ads else f"unknown article_id {b!r}"
            k = f"invalid:{pid}"
        elif ads[a].key not in ad_rows or arts[b].key not in art_rows:
            which = "ad" if ads[a].key not in ad_rows else "article"
            why = f"no {which} features yet (run `adlens features {which}s`)"
            k = f"missing:{pid}"
        else:
            k = pair_key(ads[a].key, arts[b].key, jid)
            key_parts[k] = (ads[a].key, arts[b].key)
            ids_by_key.setdefault(k, []).append(pid)
            continue
        failed[k] = why
        ids_by_key.setdefault(k, []).append(pid)
    todo = store.missing("pairs", key_parts, PAIR_SPECS)
    run = todo if limit is None else todo[:limit]
    t0 = time.perf_counter()
    computed: set[str] = set()
    if progress:
        progress(0, len(run))
    for s in range(0, len(run), batch_size):
        chunk = run[s:s + batch_size]
        a_keys = list(dict.fromkeys(key_parts[k][0] for k in chunk))
        b_keys = list(dict.fromkeys(key_parts[k][1] for k in chunk))
        A = [ad_rows[k] for k in a_keys]
        B = [art_rows[k] for k in b_keys]
        Bt, text_model = embedding_matrix(ws, B, "text_embedding", ARTICLE_TEXT_KIND)
        At, _ = embedding_matrix(ws, A, "text_embedding", AD_WORDS_KIND, model=text_model)
        Ai, image_model = embedding_matrix(ws, A, "image_embedding", AD_IMAGE_KIND) if js is not None else (None, None)
        use_joint = js
        if js is not None and jinfo.get("image_model") and (jinfo["image_model"], jinfo.get("text_model")) != (image_model, text_model):
            log.warning("joint space %s was fitted for %s + %s, not %s + %s; sim_adimage_article left null",
                        jid, jinfo["image_model"], jinfo.get("text_model"), image_model, text_model)
            use_joint = None
        # a side without any vector passes None (NaN features), never a zero-width matrix
        ad_side = AdSide(text_emb=At if At is not None and Bt is not None else None, image_emb=Ai,
                         entities=[r["ad_entities"] for r in A], valence=[r["copy_valence"] for r in A],
                         topic=[r["ad_topic"] for r in A])
        art_side = ArticleSide(text_emb=Bt,
                               entities=[r["entities"] for r in B], valence=[r["valence"] for r in B],
                               topic=[r["topic"] for r in B])
        ia = {k: i for i, k in enumerate(a_keys)}
        ib = {k: i for i, k in enumerate(b_keys)}
        F = pair_features(ad_side, art_side, [ia[key_parts[k][0]] for k in chunk], [ib[key_parts[k][1]] for k in chunk],
                          joint=use_joint)
        rows = [{"key": k, "ad_key": key_parts[k][0], "article_key": key_parts[k][1], "joint_model": jid,
                 **{n: float(F[n][i]) for n in F}} for i, k in enumerate(chunk)]
        store.put("pairs", rows, PAIR_SPECS)
        computed.update(chunk)
        if progress:
            progress(min(s + batch_size, len(run)), len(run))
    loop_s = time.perf_counter() - t0
    out = _result("pairs", ids_by_key, todo + list(failed), computed, failed, [], loop_s)
    out["ms_per_item"] = round(loop_s * 1e3 / len(computed), 3) if computed else None
    out["joint"] = jinfo
    table = store.table("pairs", PAIR_SPECS, keys=key_parts)
    idx = {k: i for i, k in enumerate(table.column("key").to_pylist())}
    take = [idx[k] for k, ids in ids_by_key.items() if k in idx for _ in ids]
    out.update(summarize(table.take(pa.array(take, pa.int64())), FEATURE_SPECS["pairs"]))
    return out


# ---------------------------------------------------------------------------
# Reading back
# ---------------------------------------------------------------------------


def load_features(ws, kind: str, ids: Iterable[str] | None = None, *, store: FeatureStore | None = None) -> list[dict]:
    """One dict per ad id / article id (``ads`` / ``articles``) with its stored features (vectors
    as pointers, see the module docstring), in catalog order; items without a row are left out."""
    store = store or open_feature_store(ws)
    if kind == "ads":
        recs = ad_records(ws, ids)
        rows = {r["key"]: r for r in store.rows("ads", AD_SPECS, keys={r.key for r in recs})}
        return [{"ad_id": r.ad_id, **rows[r.key]} for r in recs if r.key in rows]
    if kind == "articles":
        recs = article_records(ws, ids)
        rows = {r["key"]: r for r in store.rows("articles", ARTICLE_SPECS, keys={r.key for r in recs})}
        return [{"article_id": r.article_id, **rows[r.key]} for r in recs if r.key in rows]
    raise InvalidInput(f"load_features reads 'ads' or 'articles', not {kind!r}")


# ---------------------------------------------------------------------------
# Coverage and distributions
# ---------------------------------------------------------------------------


def summarize_kind(ws, kind: str, *, store: FeatureStore | None = None, records=None) -> dict:
    """Coverage and distributions over every ad / article of the workspace that has a row."""
    store = store or open_feature_store(ws)
    if records is None:
        records = ad_records(ws) if kind == "ads" else article_records(ws)
    table = store.table(kind, STORED_SPECS[kind])
    idx = {k: i for i, k in enumerate(table.column("key").to_pylist())}
    take = [idx[r.key] for r in records if r.key in idx]
    return summarize(table.take(pa.array(take, pa.int64())), FEATURE_SPECS[kind])


def _float_values(col: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(col.cast(pa.float64()), float("nan")).to_numpy()


def summarize(table: pa.Table, specs: Sequence[FeatureSpec], *, bins: int = 10, top: int = 5) -> dict:
    """``{"rows", "coverage": {name: share non-null}, "distribution": {name: ...}}`` per spec.

    Numeric (int32/float32): ``{"type": "numeric", "min", "p50", "max", "mean", "hist" (``bins``
    counts), "edges" (``bins + 1``)}``; bool: share true and counts; category / short strings:
    the ``top`` values with counts; ``list[string]``: the ``top`` elements and mean length;
    vectors (stored as pointers): the model ids. A NaN counts as null. Coverage of an empty
    table is None (nothing to measure), not 0.
    """
    n = table.num_rows
    coverage: dict[str, float | None] = {}
    dist: dict[str, dict] = {}
    for s in specs:
        col_name = f"{s.name}_key" if _is_vector(s) else s.name
        if col_name not in table.column_names:
            continue
        col = table.column(col_name)
        if s.dtype in ("int32", "float32"):
            v = _float_values(col)
            v = v[np.isfinite(v)]
            coverage[s.name] = len(v) / n if n else None
            d: dict[str, Any] = {"type": "numeric", "n": len(v)}
            if len(v):
                hist, edges = np.histogram(v, bins=bins)
                d.update(min=float(v.min()), p50=float(np.median(v)), max=float(v.max()), mean=float(v.mean()),
                         hist=hist.tolist(), edges=[float(e) for e in edges])
            dist[s.name] = d
            continue
        values = col.to_pylist()
        present = [x for x in values if x is not None]
        coverage[s.name] = len(present) / n if n else None
        if s.dtype == "bool":
            c = Counter(present)
            dist[s.name] = {"type": "bool", "n": len(present), "share_true": c[True] / len(present) if present else None,
                            "top": [[str(k).lower(), c[k]] for k in (True, False) if c[k]]}
        elif s.dtype == "list[string]":
            c = Counter(x for lst in present for x in lst)
            dist[s.name] = {"type": "list", "n": len(present), "mean_len": float(np.mean([len(x) for x in present])) if present else None,
                            "distinct": len(c), "top": [[k, m] for k, m in c.most_common(top)]}
        elif _is_vector(s):
            models = table.column(f"{s.name}_model").to_pylist() if f"{s.name}_model" in table.column_names else []
            c = Counter(m for m, k in zip(models, values) if k is not None)
            dist[s.name] = {"type": "vector", "n": len(present), "top": [[k, m] for k, m in c.most_common(top)]}
        else:
            c = Counter(present)
            d = {"type": "categorical", "n": len(present), "distinct": len(c)}
            if s.dtype == "category" or all(len(x) <= 60 for x in c):
                d["top"] = [[k, m] for k, m in c.most_common(top)]
            else:  # free text: the lengths say more than the values
                d["mean_chars"] = float(np.mean([len(x) for x in present])) if present else None
            dist[s.name] = d
    return {"rows": n, "coverage": coverage, "distribution": dist}


def histogram_svg(hist: Sequence[int], edges: Sequence[float] | None = None, *, width: int = 120, height: int = 28) -> str:
    """A tiny inline SVG bar chart of histogram counts (no external assets).

    >>> histogram_svg([1, 3, 0], [0, 1, 2, 3]).startswith("<svg")
    True
    """
    hist = [int(h) for h in hist]
    top = max(hist) if hist and max(hist) > 0 else 1
    bw = width / max(1, len(hist))
    bars = []
    for i, h in enumerate(hist):
        bh = 0 if h == 0 else max(1.0, (height - 2) * h / top)
        tip = f"{h}"
        if edges is not None and len(edges) == len(hist) + 1:
            tip = f"{_fmt(edges[i])} – {_fmt(edges[i + 1])}: {h}"
        bars.append(f'<rect x="{i * bw + 0.5:.1f}" y="{height - bh:.1f}" width="{max(0.5, bw - 1):.1f}" '
                    f'height="{bh:.1f}" fill="#4a78b5"><title>{tip}</title></rect>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="histogram">'
            f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#bbb" stroke-width="1"/>'
            + "".join(bars) + "</svg>")


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


# ---------------------------------------------------------------------------
# Pipeline stage and report section
# ---------------------------------------------------------------------------


def stage_features(ctx) -> dict:
    """Pipeline stage: ads, articles, then each ad with the article written for it.

    Returns ``{"ads": ..., "articles": ..., "pairs": ...}`` (each a :func:`compute_features` result).
    """
    return {kind: compute_features(ctx.ws, kind, progress=ctx.progress_for(f"features {kind}")) for kind in KINDS}


def report_features(ctx, section: dict) -> dict:
    """Table rows for ``templates/section_features.html``: per kind, per feature, coverage %,
    min / median / max, an inline SVG histogram, top values and the null-by-design note."""
    from markupsafe import Markup

    tables = {}
    for kind in KINDS:
        res = section.get(kind)
        if not res:
            continue
        rows = []
        for s in FEATURE_SPECS[kind]:
            if s.name not in res.get("coverage", {}):
                continue
            cov = res["coverage"][s.name]
            d = res["distribution"].get(s.name, {})
            row = {"name": s.name, "dtype": s.dtype, "description": s.description,
                   "coverage": None if cov is None else round(100 * cov, 1), "min": "", "p50": "", "max": "",
                   "svg": "", "top": "", "note": ""}
            if d.get("type") == "numeric" and d.get("hist"):
                row.update(min=_fmt(d["min"]), p50=_fmt(d["p50"]), max=_fmt(d["max"]),
                           svg=Markup(histogram_svg(d["hist"], d["edges"])))
            elif d.get("top"):
                row["top"] = ", ".join(f"{_short(k)} ({m})" for k, m in d["top"])
            elif d.get("mean_chars") is not None:
                row["top"] = f"{d['distinct']} distinct, {d['mean_chars']:.0f} chars on average"
            if cov is not None and cov < 1.0 and s.name in NULL_BY_DESIGN:
                row["note"] = NULL_BY_DESIGN[s.name]
            rows.append(row)
        tables[kind] = {"rows": rows, "total": res.get("total"), "computed": res.get("computed"),
                        "cached": res.get("cached"), "failed": res.get("failed", []), "n_rows": res.get("rows"),
                        "ms_per_item": res.get("ms_per_item"), "joint": res.get("joint")}
    return {"tables": tables, "schema_version": FEATURE_SCHEMA_VERSION}


def _short(x: Any, n: int = 40) -> str:
    s = str(x)
    return s if len(s) <= n else s[: n - 1] + "…"
