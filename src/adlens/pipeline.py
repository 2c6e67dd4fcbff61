"""The main job: ``adlens run`` — every stage in order over one workspace, then an HTML report.

Stages are functions ``stage(ctx) -> dict`` that read and extend the shared context; each
returns a section for the report. Later capabilities append their stage to ``STAGES``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from adlens import __version__
from adlens.errors import AdlensError
from adlens.ingest.ads import ingest_ads
from adlens.ingest.articles import ingest_articles
from adlens.ingest.products import ingest_products
from adlens.report import render, thumbnail_uri
from adlens.store import schema
from adlens.store.ledger import duplicate_groups
from adlens.store.runs import finish_run, start_run
from adlens.workspace import Workspace

ProgressFactory = Callable[[str], Callable[[int, int], None]]  # description -> callback


@dataclass
class RunContext:
    ws: Workspace
    ads: Path | None = None
    articles: Path | None = None
    products: Path | None = None
    day: str | None = None
    progress: ProgressFactory | None = None
    sections: dict = field(default_factory=dict)

    def progress_for(self, description: str):
        return self.progress(description) if self.progress else None


def stage_ingest(ctx: RunContext) -> dict:
    """Ingest whichever inputs were given; rerunning on the same inputs adds nothing."""
    out = {}
    if ctx.ads:
        out["ads"] = ingest_ads(ctx.ws, ctx.ads, day=ctx.day, progress=ctx.progress_for("ingest ads")).to_dict()
    if ctx.articles:
        out["articles"] = ingest_articles(ctx.ws, ctx.articles, progress=ctx.progress_for("ingest articles")).to_dict()
    if ctx.products:
        out["products"] = ingest_products(ctx.ws, ctx.products, progress=ctx.progress_for("ingest products")).to_dict()
    return out


def stage_dedup(ctx: RunContext) -> dict:
    """Summarise the ledger: groups, redundancy, and per-day new vs already-seen creatives."""
    groups = duplicate_groups(ctx.ws.engine)
    lg, s, c = schema.ledger, schema.sightings, schema.creatives
    with ctx.ws.engine.connect() as conn:
        n_creatives = conn.execute(sa.select(sa.func.count()).select_from(c)).scalar_one()
        n_images = conn.execute(sa.select(sa.func.count()).select_from(lg)).scalar_one()
        n_canonical = conn.execute(sa.select(sa.func.count(sa.distinct(lg.c.canonical_id)))).scalar_one()
        group_first = dict(
            conn.execute(sa.select(lg.c.canonical_id, sa.func.min(lg.c.first_seen)).group_by(lg.c.canonical_id)).all()
        )
        sightings = conn.execute(
            sa.select(s.c.day, s.c.ad_id, lg.c.canonical_id).join(lg, lg.c.image_id == s.c.image_id)
        ).all()
    per_day: dict[str, dict] = {}
    for day, _ad, canon in sightings:
        d = per_day.setdefault(day, {"day": day, "sightings": 0, "groups": set(), "new": set(), "seen_before": set()})
        d["sightings"] += 1
        d["groups"].add(canon)
        (d["seen_before"] if group_first[canon] < day else d["new"]).add(canon)
    days = [
        {"day": d["day"], "sightings": d["sightings"], "unique": len(d["groups"]), "new": len(d["new"]),
         "seen_before": len(d["seen_before"])}
        for d in sorted(per_day.values(), key=lambda d: d["day"])
    ]
    return {
        "creatives": n_creatives,
        "distinct_images": n_images,
        "unique_creatives": n_canonical,
        "groups": len(groups),
        "creatives_in_groups": sum(len(g["members"]) for g in groups),
        "redundant_creatives": n_creatives - n_canonical if n_creatives else 0,
        "days": days,
        "group_list": groups,
    }


def report_dedup(ctx: RunContext, section: dict, max_groups: int = 60) -> dict:
    """Thumbnails of the first groups for the report (kept out of the run summary)."""
    shown = []
    for g in section.get("group_list", [])[:max_groups]:
        members = [{**m, "thumb": thumbnail_uri(_blob_path(ctx.ws, m["image_id"]))} for m in g["members"]]
        shown.append({**g, "members": members})
    return {"groups_shown": shown}


def stage_embed(ctx: RunContext) -> dict:
    """Image embeddings of ads and products, text embeddings of ad copy and articles."""
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import (
        DEFAULT_TEXT_MODEL,
        embed_workspace,
        image_model,
    )

    image, text = get_embedder(image_model(ctx.ws)), get_embedder(DEFAULT_TEXT_MODEL)
    jobs = [("ads", image), ("products", image), ("ads", text), ("articles", text)]
    return {"jobs": [embed_workspace(ctx.ws, kind, emb, progress=ctx.progress_for(f"embed {kind} ({emb.modality})")) for kind, emb in jobs]}


def _first_ad_by_image(conn: sa.Connection) -> dict[int, str]:
    """image id -> the first ad id (alphabetically) showing it, to name links in reports."""
    c = schema.creatives
    ads: dict[int, str] = {}
    for image_id, ad_id in conn.execute(sa.select(c.c.image_id, c.c.ad_id).order_by(c.c.ad_id)):
        ads.setdefault(image_id, ad_id)
    return ads


def _name_links(links: list[dict], ads: dict[int, str]) -> list[dict]:
    for link in links:
        link["ad_a"], link["ad_b"] = ads.get(link["image_a"]), ads.get(link["image_b"])
    return links


def _stage_state(conn, key: str, settings: dict) -> tuple[int, set[int]]:
    """An incremental stage's meta row: ``(last image id done, ids to retry)``, or ``(0, set())``
    when there is none or it was made with other settings (then everything is done again)."""
    raw = conn.execute(sa.select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()
    state = json.loads(raw) if raw else {}
    if state.get("settings") != settings:
        return 0, set()
    return state.get("last_image_id", 0), set(state.get("retry", ()))


def _save_stage_state(ws: Workspace, key: str, last_image_id: int, retry, settings: dict) -> None:
    from adlens.store.db import upsert_meta

    with ws.engine.begin() as conn:
        upsert_meta(conn, key, json.dumps({"last_image_id": int(last_image_id), "retry": sorted(retry),
                                           "settings": settings}))


def _blob_rgb(ws: Workspace, sha256: str) -> np.ndarray:
    """A stored image's pixels, decoded as at ingest (EXIF rotation, alpha on white, 16-bit scaled)."""
    from adlens.ingest.validate import load_image

    return np.asarray(load_image(ws.blobs.get(sha256), f"image {sha256[:12]}", ws.settings.max_image_pixels)[1])


CASCADE_STATE_KEY = "cascade_state"  # meta row: last image id pixel-checked, and the settings it was checked with


def stage_cascade(ctx: RunContext) -> dict:
    """Embedding dedup over the ledger's ad images (switch: ADLENS_DEDUP_CASCADE).

    The cosine links are recomputed over all images every run (a matrix product). The pixel check
    of the grey zone costs ~30 ms a pair, so it is incremental: the ``cascade_state`` meta row keeps
    the last image id checked and the settings; only pairs with a newer image, an image that had no
    embedding yet, or one that could not be read last time are checked."""
    from adlens.dedup import verify
    from adlens.dedup.cascade import check_threshold
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model, image_shas
    from adlens.errors import InvalidInput

    s = ctx.ws.settings
    if not s.dedup_cascade:
        return {"skipped": "embedding cascade switched off (ADLENS_DEDUP_CASCADE=false)"}
    for key, value in (("ADLENS_CASCADE_THRESHOLD", s.cascade_threshold), ("ADLENS_CASCADE_VERIFY_MIN", s.cascade_verify_min)):
        try:
            check_threshold(value)
        except InvalidInput as e:  # a bad setting must not merge (or silently skip) the ledger's groups
            return {"skipped": f"{key}: {e}"}
    model_id = get_embedder(image_model(ctx.ws)).model_id
    all_shas = image_shas(ctx.ws, "ads")
    keys, vectors = ctx.ws.embeddings.load(model_id, "ads")
    pos = {k: i for i, k in enumerate(keys)}
    shas = [h for h in all_shas if h in pos]
    im = schema.images
    settings_now = {"threshold": s.cascade_threshold, "verify_min": s.cascade_verify_min, "model": model_id,
                    "min_agreement": verify.DEFAULT_MIN_AGREEMENT, "version": verify.VERSION}
    with ctx.ws.engine.connect() as conn:
        ids = dict(conn.execute(sa.select(im.c.sha256, im.c.id).where(im.c.sha256.in_(all_shas))).all())
        ads = _first_ad_by_image(conn)
        checked_up_to, retry = _stage_state(conn, CASCADE_STATE_KEY, settings_now)
    new = np.array([ids[h] > checked_up_to or ids[h] in retry for h in shas], bool)
    errors = []

    def load(k: int) -> np.ndarray:  # crops in the grey zone are pixel-checked
        return _blob_rgb(ctx.ws, shas[k])

    def failed(k: int, reason: str) -> None:
        errors.append({"image_id": ids[shas[k]], "ad_id": ads.get(ids[shas[k]]), "reason": f"pixel check: {reason}"})

    links = _name_links(ctx.ws.ledger().link_by_embedding(
        [ids[h] for h in shas], vectors[[pos[h] for h in shas]], s.cascade_threshold, load=load,
        verify_min=s.cascade_verify_min, on_error=failed, workers=s.workers, new=new,
        progress=ctx.progress_for("cascade pixel check")), ads)
    if all_shas:  # after the links are stored: a crash before this line only means a re-check
        # images without an embedding yet, or unreadable now, are checked when they can be
        again = {e["image_id"] for e in errors} | {ids[h] for h in all_shas if h not in pos}
        _save_stage_state(ctx.ws, CASCADE_STATE_KEY, max(ids.values()), again, settings_now)
    return {"threshold": s.cascade_threshold, "verify_min": s.cascade_verify_min, "images": len(shas),
            "new_images": int(new.sum()), "new_links": len(links),
            "pixel_checked_links": sum(1 for link in links if link.get("pixel_check")), "links": links, "errors": errors}


RELAYOUT_STATE_KEY = "relayout_state"  # meta row: last image id scored, and the settings it was scored with


def stage_relayout(ctx: RunContext) -> dict:
    """Re-layout dedup over the ledger's ad images (switch: ADLENS_DEDUP_RELAYOUT, off by default).

    Incremental: pairs of two images an earlier run already scored with the same settings are not
    scored again (features are deterministic and groups only merge, so the answer would not change);
    every image gets its cheap photo boxes and colour histogram (~12 ms), and SIFT (~8x that) runs
    only on images of candidate pairs with a new image. Images whose pixels or copy could not be
    read are reported in ``errors`` and count as new again in the next run. "New" = an image id
    above the last one scored: ids grow with ingestion (one writer, SQLite); concurrent ingests
    into a server database could commit ids out of order, and a full rescore (other settings, or
    deleting the ``relayout_state`` meta row) is then the safe way."""
    from adlens.dedup import relayout as R

    s = ctx.ws.settings
    if not s.dedup_relayout:
        return {"skipped": "re-layout stage switched off (set ADLENS_DEDUP_RELAYOUT=true to run it)"}
    if s.relayout_min_inliers < 1:
        return {"skipped": f"ADLENS_RELAYOUT_MIN_INLIERS must be >= 1, got {s.relayout_min_inliers}"}
    try:
        read = R.ocr_reader()
    except RuntimeError as e:
        return {"skipped": str(e)}
    im = schema.images
    settings_now = {"min_inliers": s.relayout_min_inliers, "copy_min": R.DEFAULT_COPY_MIN, "hist_min": R.DEFAULT_HIST_MIN,
                    "aspect_ratio": R.DEFAULT_ASPECT_RATIO, "features": R.FEATURES_VERSION, "ocr": read.backend}
    with ctx.ws.engine.connect() as conn:
        images = conn.execute(sa.select(im.c.id, im.c.sha256).join(schema.ledger, schema.ledger.c.image_id == im.c.id)
                              .order_by(im.c.id)).all()
        ads = _first_ad_by_image(conn)
        scored_up_to, retry = _stage_state(conn, RELAYOUT_STATE_KEY, settings_now)
    new = np.array([r.id > scored_up_to or r.id in retry for r in images], bool)
    errors = []

    def rgb(sha256: str) -> np.ndarray:
        return _blob_rgb(ctx.ws, sha256)

    def features(row, descriptors: bool = False):
        try:
            return R.photo_features(rgb(row.sha256), descriptors=descriptors)
        except (OSError, ValueError, AdlensError) as e:  # the blob was validated at ingest; report, do not stop
            errors.append({"image_id": row.id, "ad_id": ads.get(row.id), "reason": str(e)})
            return R.PhotoFeatures(aspect=1.0)  # no photo box: never a candidate

    feats = []
    tick = ctx.progress_for("re-layout photo boxes") or (lambda _done, _total: None)
    with ThreadPoolExecutor(max_workers=s.workers) as pool:  # OpenCV drops the GIL
        for done, f in enumerate(pool.map(features, images), 1):
            feats.append(f)
            tick(done, len(images))
    described = []

    def describe(k: int) -> R.PhotoFeatures:
        described.append(k)
        return features(images[k], descriptors=True)

    def text(k: int) -> str | None:  # the copy check OCRs only images of photo matches
        try:
            return read(rgb(images[k].sha256))
        except Exception as e:  # noqa: BLE001 - a missing blob or an OCR failure: no link, reported
            errors.append({"image_id": images[k].id, "ad_id": ads.get(images[k].id), "reason": f"copy check: {e}"})
            return None

    links = _name_links(ctx.ws.ledger().link_by_relayout([r.id for r in images], feats, s.relayout_min_inliers,
                                                         text=text, progress=ctx.progress_for("re-layout pairs"),
                                                         new=new, describe=describe), ads)
    if images:  # after the links are stored: a crash before this line only means these images are scored again
        failed = {e["image_id"] for e in errors}  # an OCR hiccup must not lose a link for good
        _save_stage_state(ctx.ws, RELAYOUT_STATE_KEY, images[-1].id, failed, settings_now)
    return {"min_inliers": s.relayout_min_inliers, "images": len(images), "new_images": int(new.sum()),
            "sift_images": len(described), "new_links": len(links), "links": links, "errors": errors}



def stage_similar(ctx: RunContext, n_queries: int = 8, k: int = 5) -> dict:
    """Fit the learned similarity on the catalogue (if labelled) and recommend products for a few ads."""
    from adlens.embed.base import get_embedder
    from adlens.embed.jobs import image_model
    from adlens.similar import (
        fit_projection,
        projection_fit_args,
        projection_is_current,
        projection_model,
        similar_products,
    )

    with ctx.ws.engine.connect() as conn:
        n_products = conn.execute(sa.select(sa.func.count()).select_from(schema.products)).scalar_one()
        n_categories = conn.execute(sa.select(sa.func.count(sa.distinct(schema.products.c.category)))).scalar_one()
        lg, c = schema.ledger, schema.creatives
        ad_ids = [r[0] for r in conn.execute(
            sa.select(c.c.ad_id).join(lg, lg.c.image_id == c.c.image_id)
            .where(lg.c.canonical_id == lg.c.image_id).order_by(c.c.ad_id).limit(n_queries)
        )]
    if not n_products or not ad_ids:
        return {"skipped": "needs ads and products in the workspace"}
    fit = None
    # (re)fit when there is none, or when the default model's projection predates today's catalogue;
    # a projection a user fitted for another model is left alone
    fitted_for = projection_model(ctx.ws)
    default_id = get_embedder(image_model(ctx.ws)).model_id
    if n_categories >= 2 and (fitted_for is None or (fitted_for == default_id and not projection_is_current(ctx.ws))):
        fit = fit_projection(ctx.ws, **projection_fit_args(ctx.ws))
    results = [similar_products(ctx.ws, ad_id, k=k) for ad_id in ad_ids]
    return {"mode": results[0]["mode"], "fit": fit, "k": k, "queries": len(results), "results": results}


def report_similar(ctx: RunContext, section: dict) -> dict:
    from adlens.similar import similar_report_rows

    return {"rows": similar_report_rows(ctx.ws, section.get("results", []))}


def stage_features(ctx: RunContext) -> dict:
    """Creative (M), article and pair (F) features; coverage and distributions."""
    from adlens.features.jobs import stage_features as run

    return run(ctx)


def report_features(ctx: RunContext, section: dict) -> dict:
    from adlens.features.jobs import report_features as run

    return run(ctx, section)


def stage_quality(ctx: RunContext) -> dict:
    """Pairs -> rubric labels (unless other labels exist) -> student -> held-out metrics."""
    from adlens.quality.jobs import stage_quality as run

    return run(ctx)


def report_quality(ctx: RunContext, section: dict) -> dict:
    from adlens.quality.jobs import report_quality as run

    return run(ctx, section)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: ``run`` returns the stage's section of the run summary; ``report``
    (optional) returns extra data for ``templates/section_<name>.html`` only."""

    name: str
    run: Callable[[RunContext], dict]
    report: Callable[[RunContext, dict], dict] | None = None
    summary_exclude: tuple[str, ...] = ()


STAGES: list[Stage] = [
    Stage("ingest", stage_ingest),
    Stage("dedup", stage_dedup, report_dedup, summary_exclude=("group_list",)),
    Stage("embed", stage_embed),
    Stage("cascade", stage_cascade),
    Stage("relayout", stage_relayout),
    Stage("similar", stage_similar, report_similar),
    Stage("features", stage_features, report_features),
    Stage("quality", stage_quality, report_quality),
]


def run_pipeline(ctx: RunContext, report_path: Path | None = None) -> dict:
    """Run every stage, record the run, write the HTML report. Returns the summary + report path."""
    ws = ctx.ws
    run_id = start_run(ws.engine, "run", ", ".join(str(p) for p in (ctx.ads, ctx.articles, ctx.products) if p))
    status = "failed"
    summary: dict = {}
    try:
        for stage in STAGES:
            section = stage.run(ctx)
            ctx.sections[stage.name] = section
            summary[stage.name] = {k: v for k, v in section.items() if k not in stage.summary_exclude}
        status = "done"
    finally:
        finish_run(ws.engine, run_id, status, summary)
    report_path = Path(report_path or ws.reports / f"{run_id}.html")
    report_data = {}
    for stage in STAGES:
        section = dict(ctx.sections.get(stage.name, {}))
        if stage.report:
            section.update(stage.report(ctx, section))
        report_data[stage.name] = section
    render(
        "run_report.html",
        report_path,
        version=__version__,
        run_id=run_id,
        workspace=str(ws.root),
        sections=[st.name for st in STAGES],
        **report_data,
    )
    (report_path.parent / "latest.html").write_text(report_path.read_text(encoding="utf-8"), encoding="utf-8")
    return {"run_id": run_id, "report": str(report_path), **summary}


def _blob_path(ws: Workspace, image_id: int) -> Path:
    with ws.engine.connect() as conn:
        sha = conn.execute(sa.select(schema.images.c.sha256).where(schema.images.c.id == image_id)).scalar_one()
    return ws.blobs.path_for(sha)
