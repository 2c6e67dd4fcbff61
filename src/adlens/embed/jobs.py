"""Embedding jobs over a workspace: compute what is missing, store it, resumable.

``embed_workspace(ws, "ads")`` embeds every ad image (and, for text models, every ad copy /
article text) that has no vector yet for the chosen model; vectors go to the workspace's
:class:`~adlens.store.embeddings.EmbeddingStore` one batch at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import sqlalchemy as sa

from adlens.config import DEFAULT_IMAGE_MODEL
from adlens.embed.base import Embedder, get_embedder
from adlens.errors import InvalidInput
from adlens.ingest.validate import load_image
from adlens.store import schema
from adlens.workspace import Workspace

KINDS = ("ads", "articles", "products")
# The image model is a setting (ADLENS_IMAGE_MODEL, adlens.config) that a workspace pins when it
# is created (adlens.workspace). New workspaces get the int8 graph; the fp32 original stays one
# setting away. Measured (2-core AVX2 EPYC, 2026-11-22):
# - recipe v2 (adlens.embed.quantize: 7-bit weights, the first two convs in float) keeps the
#   vectors at cosine 0.985 mean / 0.945 min to fp32 on 2,605 clothing photos (v1: 0.927 / 0.715);
# - retrieval on the clothing halves is the same: raw AUC 0.788 vs 0.789, P@10 0.560 vs 0.555;
#   learned projections within 0.005 (eval_similar_clothing.py --model);
# - the dedup cascade catches the same edits within +-0.04 (eval_cascade_edits.py --model);
# - it is 1.6x faster per CPU-second (142 vs 87-96 img/s end to end in one run; 166-191 in fast
#   spells), the only way to 150 img/s on two cores: fp32 needs ~18-22 ms of CPU an image.
# Why a pin and not just a default: a workspace's derived data is tied to the vectors it was built
# with. Embeddings are stored per model id (a switch recomputes them), but creative feature rows,
# the fitted joint space and the learned product projection are not re-derived on a switch, so a
# changed default would have mixed fp32 and int8 vectors in every existing workspace.
# "efficientnet-lite0-tuned" (a catalogue-specific fine-tuned backbone) is used by `similar` when
# the workspace has one (`adlens similar-fit --finetune`), never as a workspace's model.
DEFAULT_TEXT_MODEL = "minilm"


def image_model(ws: Workspace | None = None) -> str:
    """Registry name of the image embedder: the one ``ws`` was created with; without a workspace
    (``dedup find`` on a folder, ``evaluate similar``), ``ADLENS_IMAGE_MODEL`` or the default."""
    if ws is not None:
        return ws.image_model
    from adlens.config import get_settings

    return get_settings().image_model or DEFAULT_IMAGE_MODEL


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_shas(ws: Workspace, kind: str) -> list[str]:
    """Distinct image sha256s of the ads or products in the catalog, in id order."""
    table = {"ads": schema.creatives, "products": schema.products}[kind]
    im = schema.images
    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(im.c.sha256).join(table, table.c.image_id == im.c.id).group_by(im.c.id, im.c.sha256).order_by(im.c.id)
        ).all()
    return [r[0] for r in rows]


def texts(ws: Workspace, kind: str) -> list[str]:
    """Distinct non-empty texts: ad copy for ads, body (title + text) for articles."""
    with ws.engine.connect() as conn:
        if kind == "ads":
            rows = conn.execute(sa.select(schema.creatives.c.text).where(schema.creatives.c.text.is_not(None))).all()
            values = [r[0] for r in rows]
        elif kind == "articles":
            a = schema.articles
            values = [article_text(t, x) for t, x in conn.execute(sa.select(a.c.title, a.c.text)).all()]
        else:
            p = schema.products
            values = [r[0] for r in conn.execute(sa.select(p.c.title).where(p.c.title.is_not(None))).all()]
    return list(dict.fromkeys(v for v in values if v and v.strip()))


def article_text(title: str | None, text: str) -> str:
    return f"{title}\n\n{text}" if title else text


def embed_workspace(
    ws: Workspace,
    kind: str,
    embedder: Embedder | None = None,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Embed what is missing for ``kind`` (ads | articles | products) with ``embedder``.

    Image models embed the ad/product images; text models embed ad copy, article text or
    product titles. Returns counts: ``{"model_id", "kind", "total", "computed", "cached", "failed"}``.
    """
    if kind not in KINDS:
        raise InvalidInput(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if embedder is None:
        embedder = get_embedder(DEFAULT_TEXT_MODEL if kind == "articles" else image_model(ws))
    store = ws.embeddings
    # "image", "text" or both ("image+text", e.g. open_clip): ads and products are embedded by their
    # images when the model reads images, articles by their text
    modality = set(str(getattr(embedder, "modality", "image")).split("+"))
    is_image = kind != "articles" and "image" in modality
    if kind == "articles" and "text" not in modality:
        raise InvalidInput("articles have no images; use a text embedder")
    if is_image:
        keys = image_shas(ws, kind)
        values = {k: k for k in keys}
    else:
        vals = texts(ws, kind)
        values = {text_key(v): v for v in vals}
        keys = list(values)
    todo = store.missing(embedder.model_id, kind, keys)
    if is_image and hasattr(embedder, "iter_embed_files"):
        failed = _embed_files_streamed(ws, store, kind, embedder, todo, batch_size, progress)
    else:
        failed = _embed_chunks(ws, store, kind, embedder, todo, values, is_image, batch_size, progress)
    return {
        "model_id": embedder.model_id,
        "kind": kind,
        "total": len(keys),
        "computed": len(todo) - len(failed),
        "cached": len(keys) - len(todo),
        "failed": failed,
    }


def _embed_files_streamed(ws, store, kind, embedder, todo, batch_size, progress) -> list[dict]:
    """Image files through the embedder's batch stream, stored every ``batch_size`` vectors (what
    a crash can lose). One stream, not one call per chunk: chunked calls stopped the workers at
    every chunk's end until its slowest batch was done."""
    paths = [str(ws.blobs.path_for(sha)) for sha in todo]
    key_of = dict(zip(paths, todo))
    failed: list[dict] = []
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    done = 0
    for idx, vecs, errs in embedder.iter_embed_files(paths):
        if idx:
            keys += [todo[i] for i in idx]
            vectors.append(vecs)
        failed += [{"key": key_of.get(p, p), "reason": r} for p, r in errs]
        done += len(idx) + len(errs)
        if len(keys) >= batch_size:
            store.put(embedder.model_id, kind, keys, np.concatenate(vectors))
            keys, vectors = [], []
        if progress:
            progress(done, len(todo))
    if keys:
        store.put(embedder.model_id, kind, keys, np.concatenate(vectors))
    return failed


def _embed_chunks(ws, store, kind, embedder, todo, values, is_image, batch_size, progress) -> list[dict]:
    """``batch_size`` keys at a time: texts, and image embedders without a file stream."""
    failed: list[dict] = []
    done = 0
    for s in range(0, len(todo), batch_size):
        chunk = todo[s : s + batch_size]
        if is_image and hasattr(embedder, "embed_files"):
            # the embedder's own pipeline (errors by file)
            paths = {str(ws.blobs.path_for(sha)): sha for sha in chunk}
            res = embedder.embed_files(list(paths))
            ok_keys, vectors = [chunk[i] for i in res.ok], res.vectors
            failed += [{"key": paths.get(str(p), str(p)), "reason": r} for p, r in res.errors]
        elif is_image:
            ok_keys, images = [], []
            for sha in chunk:
                try:
                    _, rgb = load_image(ws.blobs.get(sha), sha, ws.settings.max_image_pixels)
                    images.append(rgb)
                    ok_keys.append(sha)
                except (InvalidInput, OSError) as e:
                    failed.append({"key": sha, "reason": str(e)})
            vectors = embedder.embed_images(images) if images else np.zeros((0, embedder.dim), np.float32)
        else:
            ok_keys = chunk
            vectors = embedder.embed_texts([values[k] for k in chunk])
        store.put(embedder.model_id, kind, ok_keys, vectors)
        done += len(chunk)
        if progress:
            progress(done, len(todo))
    return failed
