"""Workspace-level quality jobs: pairs -> (pair features) -> teacher labels -> student -> score.

Each function is one library call over a workspace; files go under ``WORKSPACE/artifacts/quality``::

    pairs.parquet              pair_id, ad_id, article_id, pair_type        (build_pairs)
    labels-<teacher>.parquet   pair_id, ad_id, article_id, pair_type, score, reasoning, teacher, cost,
                               error, cached                                (teach)
    cache/openai.sqlite        the OpenAI teacher's answer cache (a rerun resumes, nothing paid twice)
    dataset.parquet (+ card)   pairs + features + labels (build_dataset)    (train)
    report.json                the latest training report                   (train)

and models under ``WORKSPACE/artifacts/models/quality/vNNNN`` (:class:`ModelRegistry`).

Inputs come from the feature store (run ``adlens features all`` first): the ad's topic is
``ad_topic`` (topic of the ad's copy + OCR text) and its valence ``copy_valence``; an article's are
``topic`` / ``valence``; the positive article of an ad is the article whose ``ad_id`` is that ad
(the first by ``article_id`` when several were written for it). Ads without such an article are
left out of the pairs (counted in ``ads_without_article``).

The student's features (seed 000: 21 = 15 M + 6 F) -- :data:`M_FEATURES` + :data:`F_FEATURES`:

* M (creative, per ad): ``face_count, face_area_share, face_emotion (categorical), clarity,
  clutter, m_contrast, colourfulness, ocr_n_words, ocr_text_area_share, copy_readability,
  copy_concreteness, copy_has_cta (bool -> 0/1), is_ad, twist_present, twist_resolves_fast``;
* F (per pair): ``sim_adtext_article, sim_adimage_article, entity_overlap_rate,
  sentiment_alignment, topic_match, contrast``.

``contrast`` exists twice: the creative feature (RMS luminance contrast of the image) is renamed
``m_contrast`` in the joined table; ``contrast`` is the pair feature (inverse text similarity, as
in the seed). "Where available": a feature that is null on every training row (e.g. the LLM-only
``twist_*`` without an LLM extractor, OCR features without an OCR backend) is dropped from that
model; the model card lists the features actually used.

The ``rubric`` teacher is a cold-start heuristic over these same features, not a judge: a student
trained on it learns the heuristic back. Replace it with ``labels`` (ratings / clicks) or ``openai``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from adlens.errors import InvalidInput

__all__ = [
    "F_FEATURES",
    "MIN_ADS",
    "M_FEATURES",
    "RUBRIC_NOTE",
    "SEED_FEATURES",
    "TEACHERS",
    "build_pairs",
    "compute_pair_features",
    "evaluate_latest",
    "evaluation_page",
    "feature_table",
    "load_labels",
    "load_pairs",
    "quality_dir",
    "registry",
    "report_quality",
    "score",
    "stage_quality",
    "teach",
    "train",
    "write_evaluation_report",
]

#: creative (M) features of seed 000, as named in the joined table (``contrast`` -> ``m_contrast``)
M_FEATURES: tuple[str, ...] = (
    "face_count", "face_area_share", "face_emotion", "clarity", "clutter", "m_contrast", "colourfulness",
    "ocr_n_words", "ocr_text_area_share", "copy_readability", "copy_concreteness", "copy_has_cta", "is_ad",
    "twist_present", "twist_resolves_fast",
)
#: M feature name in the joined table -> column of the ads feature store
M_SOURCE: dict[str, str] = {n: ("contrast" if n == "m_contrast" else n) for n in M_FEATURES}
#: ad x article (F) features of seed 000
F_FEATURES: tuple[str, ...] = ("sim_adtext_article", "sim_adimage_article", "entity_overlap_rate",
                               "sentiment_alignment", "topic_match", "contrast")
SEED_FEATURES: tuple[str, ...] = M_FEATURES + F_FEATURES
CATEGORICAL: tuple[str, ...] = ("face_emotion",)
TEACHERS: tuple[str, ...] = ("rubric", "labels", "openai")
MIN_ADS = 20  # stage_quality skips below this many ads with an article
RUBRIC_NOTE = ("rubric labels are a cold-start heuristic over the features, not a judge: the student learns the "
               "heuristic back. Use `adlens teach --teacher labels` (ratings / clicks) or `--teacher openai`.")
API_KEY_ENVS = ("OPENAI_API_KEY", "ADLENS_LLM_API_KEY")


def quality_dir(ws) -> Path:
    return Path(ws.artifacts) / "quality"


def registry(ws):
    from adlens.quality.registry import ModelRegistry

    return ModelRegistry(Path(ws.artifacts) / "models" / "quality")


def _nan(v: Any) -> Any:
    """Feature value for the table: bool -> 0/1, None -> NaN for numbers, strings kept (None stays None)."""
    if isinstance(v, bool):
        return float(v)
    if v is None:
        return math.nan
    if isinstance(v, (int, float)):
        return float(v)
    if hasattr(v, "item"):
        return float(v.item())
    return v


def _write_parquet(rows: list[dict], path: Path, columns: Iterable[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]) if rows else \
        pa.table({c: pa.array([], pa.string()) for c in cols})
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# --------------------------------------------------------------------------- pairs


def _positives(ws) -> dict[str, str]:
    from adlens.features.jobs import ad_records, article_records

    known = {a.ad_id for a in ad_records(ws)}
    pos: dict[str, str] = {}
    for r in article_records(ws):  # ordered by article_id: the first article written for an ad wins
        if r.ad_id and r.ad_id in known:
            pos.setdefault(r.ad_id, r.article_id)
    return pos


def ads_with_articles(ws) -> int:
    """Number of catalog ads that have an article written for them."""
    return len(_positives(ws))


def build_pairs(ws, random_state: int = 0, n_random: int = 2, n_contrast: int = 1,
                sentiment_threshold: float = 0.5) -> dict[str, Any]:
    """Seed 000 Step 5 over the workspace: writes ``artifacts/quality/pairs.parquet``.

    Returns ``{"n_pairs", "n_ads", "per_type": {pair_type: n}, "ads_without_article",
    "ads_without_features", "articles_without_features", "missing_per_type", "path", "params"}``.
    """
    from adlens.features.jobs import ad_records, article_records, load_features
    from adlens.quality.pairs import make_pairs

    pos = _positives(ws)
    ad_rows = {r["ad_id"]: r for r in load_features(ws, "ads")}
    art_rows = {r["article_id"]: r for r in load_features(ws, "articles")}
    all_ads = [a.ad_id for a in ad_records(ws)]
    ads = [{"ad_id": a, "topic": ad_rows.get(a, {}).get("ad_topic"), "valence": ad_rows.get(a, {}).get("copy_valence"),
            "positive_article_id": pos[a]} for a in all_ads if a in pos]
    arts = [{"article_id": r.article_id, "topic": art_rows.get(r.article_id, {}).get("topic"),
             "valence": art_rows.get(r.article_id, {}).get("valence")} for r in article_records(ws)]
    ps = make_pairs(ads, arts, n_random=n_random, n_contrast=n_contrast, sentiment_threshold=sentiment_threshold,
                    random_state=random_state)
    path = quality_dir(ws) / "pairs.parquet"
    _write_parquet(list(ps), path, ("pair_id", "ad_id", "article_id", "pair_type"))
    s = ps.summary()
    return {"n_pairs": s["n_pairs"], "n_ads": len(ads), "per_type": s["per_type"],
            "ads_without_article": len(all_ads) - len(ads),
            "ads_without_features": sum(1 for a in ads if a["ad_id"] not in ad_rows),
            "articles_without_features": sum(1 for a in arts if a["article_id"] not in art_rows),
            "ads_with_shortfall": s["ads_with_shortfall"], "missing_per_type": s["missing_per_type"],
            "path": str(path), "params": s["params"]}


def load_pairs(ws) -> list[dict]:
    path = quality_dir(ws) / "pairs.parquet"
    if not path.exists():
        raise InvalidInput(f"no pairs yet ({path} missing); run `adlens pairs` first")
    return _read_parquet(path)


def compute_pair_features(ws, pairs: list[dict] | None = None, progress: Callable[[int, int], None] | None = None,
                          joint: Any = "auto") -> dict[str, Any]:
    """The six F features of the quality pairs (cached in the feature store; only missing ones computed)."""
    from adlens.features.jobs import compute_features

    pairs = load_pairs(ws) if pairs is None else pairs
    return compute_features(ws, "pairs", pairs=[(p["ad_id"], p["article_id"]) for p in pairs], progress=progress,
                            joint=joint)


def _pair_rows(ws, pairs: list[dict], joint: Any = "auto") -> dict[str, dict]:
    """``{pair_id: F feature row}`` from the store (the row of the current joint space preferred)."""
    from adlens.features.jobs import (
        PAIR_SPECS,
        ad_records,
        article_records,
        resolve_joint,
    )
    from adlens.features.store import open_feature_store

    store = open_feature_store(ws)
    ak = {r.ad_id: r.key for r in ad_records(ws, {p["ad_id"] for p in pairs})}
    bk = {r.article_id: r.key for r in article_records(ws, {p["article_id"] for p in pairs})}
    _, jid, _ = resolve_joint(ws, joint, store)
    best: dict[tuple[str, str], dict] = {}
    for r in store.rows("pairs", PAIR_SPECS):
        k = (r["ad_key"], r["article_key"])
        if k not in best or r["joint_model"] == jid:
            best[k] = r
    out = {}
    for p in pairs:
        r = best.get((ak.get(p["ad_id"]), bk.get(p["article_id"])))
        if r is not None:
            out[p["pair_id"]] = r
    return out


def _m_row(ad_row: Mapping[str, Any] | None) -> dict[str, Any]:
    ad_row = ad_row or {}
    return {n: (ad_row.get(src) if n in CATEGORICAL else _nan(ad_row.get(src))) for n, src in M_SOURCE.items()}


def _f_row(pair_row: Mapping[str, Any] | None) -> dict[str, Any]:
    pair_row = pair_row or {}
    return {n: _nan(pair_row.get(n)) for n in F_FEATURES}


def feature_table(ws, pairs: list[dict] | None = None, joint: Any = "auto") -> list[dict]:
    """One record per pair: ``pair_id, ad_id, article_id, pair_type`` + the 15 M + 6 F features
    (NaN where unknown; ``face_emotion`` a string or None)."""
    from adlens.features.jobs import load_features

    pairs = load_pairs(ws) if pairs is None else pairs
    ad_rows = {r["ad_id"]: r for r in load_features(ws, "ads", {p["ad_id"] for p in pairs})}
    prs = _pair_rows(ws, pairs, joint)
    return [{"pair_id": p["pair_id"], "ad_id": p["ad_id"], "article_id": p["article_id"], "pair_type": p["pair_type"],
             **_m_row(ad_rows.get(p["ad_id"])), **_f_row(prs.get(p["pair_id"]))} for p in pairs]


# --------------------------------------------------------------------------- teachers


def _labels_path(ws, teacher: str) -> Path:
    return quality_dir(ws) / f"labels-{teacher}.parquet"


def _openai_image_loader(ws):
    from adlens.features.jobs import ad_records

    shas = {r.ad_id: r.image_sha256 for r in ad_records(ws)}

    def load(p: Mapping[str, Any]):
        sha = shas.get(p.get("ad_id"))
        if not sha:
            return None
        path = ws.blobs.path_for(sha)
        return path.read_bytes() if path.exists() else None
    return load


def _prompt_fields(ws, pairs: list[dict]) -> list[dict]:
    """Pairs + ``ad_text`` (copy) and ``article_text`` (title + text) for the LLM prompt."""
    from adlens.features.jobs import ad_records, article_records

    ads = {r.ad_id: r for r in ad_records(ws, {p["ad_id"] for p in pairs})}
    arts = {r.article_id: r for r in article_records(ws, {p["article_id"] for p in pairs})}
    out = []
    for p in pairs:
        a, b = ads.get(p["ad_id"]), arts.get(p["article_id"])
        out.append({**p, "ad_text": a.text if a else "",
                    "article_text": (f"{b.title}\n\n{b.text}" if b and b.title else (b.text if b else ""))})
    return out


def teach(ws, teacher: str = "rubric", *, labels_file: str | os.PathLike | None = None,
          columns: Mapping[str, str] | None = None, scale: tuple[float, float] | None = None,
          base_url: str | None = None, model: str | None = None, api_key: str | None = None,
          api_key_env: str | None = None, budget: float | None = None, max_workers: int = 4,
          timeout: float = 120.0, max_retries: int = 4, price_in_per_mtok: float = 0.0,
          price_out_per_mtok: float = 0.0, est_cost_per_call: float | None = None, json_mode: bool = True,
          client: Any = None, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Label the workspace's pairs with ``teacher`` and write ``artifacts/quality/labels-<teacher>.parquet``.

    * ``rubric``: :class:`RubricTeacher` over :func:`feature_table` (computes missing F features).
    * ``labels``: :class:`LabelsTeacher` from ``labels_file`` (CSV / Parquet), ``columns`` maps roles
      (``ad_id``, ``article_id``, ``score`` or ``clicks`` + ``impressions``) to column names, ``scale``
      the rating scale ``(lo, hi)``.
    * ``openai``: :class:`OpenAITeacher` at ``base_url`` with ``model``; key from ``api_key``, else the
      environment variable named ``api_key_env`` (an error if it is named but unset), else
      ``OPENAI_API_KEY`` / ``ADLENS_LLM_API_KEY``, else none (local servers); answers cached in
      ``artifacts/quality/cache/openai.sqlite`` (a rerun resumes, nothing is paid twice);
      ``max_workers`` concurrent requests, ``timeout`` seconds per request, ``max_retries`` retries
      with backoff on 429 / 5xx / timeouts; costs from ``price_in_per_mtok`` / ``price_out_per_mtok``
      (USD per million prompt / completion tokens); ``budget`` in USD stops the run before it could be
      exceeded (needs a price; the per-call estimate is ``est_cost_per_call`` or 1500 prompt +
      300 completion tokens, raised to the dearest call seen); ``json_mode`` sends
      ``response_format={"type": "json_object"}`` (turn off for servers that reject it).
      The result carries the teacher's cost report under ``"report"``.

    Returns the label summary (counts, histogram, mean, errors, cost) + ``teacher``, ``teacher_id``, ``path``.
    """
    from adlens.quality.teachers import (
        LabelsTeacher,
        OpenAITeacher,
        RubricTeacher,
        label_summary,
    )

    if teacher not in TEACHERS:
        raise InvalidInput(f"unknown teacher {teacher!r}; expected one of {', '.join(TEACHERS)}")
    pairs = load_pairs(ws)
    report = None
    if teacher == "rubric":
        compute_pair_features(ws, pairs, progress=progress)
        t = RubricTeacher()
        labels = t.label(feature_table(ws, pairs))
    elif teacher == "labels":
        if not labels_file:
            raise InvalidInput("--teacher labels needs a labels file (--labels FILE)")
        if not Path(labels_file).is_file():
            raise InvalidInput(f"{labels_file}: labels file not found")
        try:
            t = LabelsTeacher.from_file(labels_file, columns=dict(columns) if columns else None, scale=scale)
        except KeyError as e:
            raise InvalidInput(f"{labels_file}: column {e} not found (map it with --ad-column / --score-column ...)") from e
        labels = t.label(pairs)
    else:
        if not base_url or not model:
            raise InvalidInput("--teacher openai needs --base-url and --model")
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"--base-url must start with http:// or https://, got {base_url!r}")
        if budget is not None:
            if budget < 0:
                raise InvalidInput("--budget must be >= 0")
            if not (price_in_per_mtok > 0 or price_out_per_mtok > 0):
                raise InvalidInput("--budget needs token prices (--price-in / --price-out, USD per million tokens): "
                                   "without them every call costs $0 and the budget could not stop anything")
        if timeout <= 0 or max_retries < 0 or max_workers < 1:
            raise InvalidInput("--timeout must be > 0, --retries >= 0 and --workers >= 1")
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise InvalidInput(f"--api-key-env {api_key_env}: that environment variable is not set")
        key = api_key or next((os.environ[k] for k in API_KEY_ENVS if os.environ.get(k)), None)
        cache = quality_dir(ws) / "cache" / "openai.sqlite"
        cache.parent.mkdir(parents=True, exist_ok=True)
        t = OpenAITeacher(base_url, model, api_key=key or "", cache_path=cache, image_loader=_openai_image_loader(ws),
                          max_workers=max_workers, timeout=timeout, max_retries=max_retries, budget_usd=budget,
                          client=client, price_in_per_mtok=price_in_per_mtok, price_out_per_mtok=price_out_per_mtok,
                          est_cost_per_call=est_cost_per_call, json_mode=json_mode)
        try:
            labels = t.label(_prompt_fields(ws, pairs), progress=progress)
            report = t.report()
        finally:
            t.close()
    ptype = {p["pair_id"]: p["pair_type"] for p in pairs}
    for r in labels:
        r["pair_type"] = ptype.get(r["pair_id"])
    path = _labels_path(ws, teacher)
    _write_parquet(labels, path, ("pair_id", "ad_id", "article_id", "pair_type", "score", "reasoning", "teacher",
                                  "cost", "error", "cached"))
    out = {"teacher": teacher, "teacher_id": t.teacher_id, "path": str(path), **label_summary(labels)}
    if report is not None:
        out["report"] = report
    if teacher == "rubric":
        out["note"] = RUBRIC_NOTE
    return out


def _existing_teachers(ws) -> list[str]:
    """Teachers with a labels file, newest first."""
    have = [(t, _labels_path(ws, t)) for t in TEACHERS if _labels_path(ws, t).exists()]
    return [t for t, p in sorted(have, key=lambda tp: -tp[1].stat().st_mtime)]


def load_labels(ws, teacher: str | None = None) -> tuple[str, list[dict]]:
    """``(teacher, label rows)``; ``teacher=None`` = the newest labels file."""
    if teacher is None:
        have = _existing_teachers(ws)
        if not have:
            raise InvalidInput("no labels yet; run `adlens teach` first")
        teacher = have[0]
    if teacher not in TEACHERS:
        raise InvalidInput(f"unknown teacher {teacher!r}; expected one of {', '.join(TEACHERS)}")
    path = _labels_path(ws, teacher)
    if not path.exists():
        raise InvalidInput(f"no {teacher} labels yet ({path.name} missing); run `adlens teach --teacher {teacher}`")
    return teacher, _read_parquet(path)


# --------------------------------------------------------------------------- student


def _available(rows: list[dict], names: Iterable[str]) -> list[str]:
    def present(v):
        return v is not None and not (isinstance(v, float) and math.isnan(v))
    return [n for n in names if any(present(r.get(n)) for r in rows)]


def train(ws, teacher: str | None = None, random_state: int = 0, test_size: float = 0.2,
          **student_kwargs: Any) -> dict[str, Any]:
    """Join pairs + M + F features + ``teacher``'s labels, train the student split by ad
    (:func:`train_quality`), register it, write the dataset (:func:`build_dataset`) and ``report.json``.

    ``teacher=None`` uses the newest labels file. ``student_kwargs`` go to :class:`QualityStudent`
    (e.g. ``n_estimators=50``). Returns the report: ``version``, ``teacher``, ``features``, ``metrics``
    (overall, per pair type, gap, importance, split), ``n_rows``, ``paths``.
    """
    from adlens.quality.dataset import build_dataset
    from adlens.quality.student import train_quality

    teacher, labels = load_labels(ws, teacher)
    pairs = load_pairs(ws)
    compute_pair_features(ws, pairs)
    table = feature_table(ws, pairs)
    score_of = {r["pair_id"]: r["score"] for r in labels if r.get("score") is not None}
    rows = [r for r in table if r["pair_id"] in score_of]
    n_ads = len({r["ad_id"] for r in rows})
    if n_ads < 5:
        raise InvalidInput(f"only {n_ads} ads have labelled pairs; need at least 5 to split train / test by ad")
    features = _available(rows, SEED_FEATURES)
    if not features:
        raise InvalidInput("no feature is available on the labelled pairs; run `adlens features all` first")
    cols = {n: [r[n] for r in rows] for n in features}
    cat = [n for n in features if n in CATEGORICAL]
    t0 = time.perf_counter()
    student, metrics = train_quality(cols, [score_of[r["pair_id"]] for r in rows], [r["ad_id"] for r in rows],
                                     pair_types=[r["pair_type"] for r in rows], test_size=test_size,
                                     random_state=random_state, features=features, categorical=cat, **student_kwargs)
    seconds = round(time.perf_counter() - t0, 3)
    teacher_id = Counter(r.get("teacher") for r in labels).most_common(1)[0][0] if labels else teacher
    dropped = [n for n in SEED_FEATURES if n not in features]
    dpath = quality_dir(ws) / "dataset.parquet"
    m_rows = {r["ad_id"]: {n: r[n] for n in M_FEATURES} for r in table}
    f_rows = {r["pair_id"]: {n: r[n] for n in F_FEATURES} for r in table}
    card_ds = build_dataset(pairs, labels, dpath, pair_features=f_rows, ad_features=m_rows,
                            teacher_report={"teacher": teacher, "teacher_id": teacher_id})
    card = {"teacher": teacher, "teacher_id": teacher_id, "features_dropped_all_null": dropped,
            "feature_sources": {"M": list(M_FEATURES), "F": list(F_FEATURES),
                                "renamed": {"m_contrast": "creative contrast (ads feature 'contrast')"}},
            "n_rows": len(rows), "n_ads": n_ads, "dataset": str(dpath), "random_state": random_state}
    if teacher == "rubric":
        card["note"] = RUBRIC_NOTE
    version = registry(ws).register(student, metrics=metrics, card=card)
    report = {"version": version, "teacher": teacher, "teacher_id": teacher_id, "features": features,
              "features_dropped_all_null": dropped, "n_rows": len(rows), "n_ads": n_ads, "seconds": seconds,
              "metrics": metrics, "dataset": {"path": str(dpath), "n_rows": card_ds["n_rows"]},
              "model_path": str(registry(ws).path(version))}
    if teacher == "rubric":
        report["note"] = RUBRIC_NOTE
    from adlens.quality.student import _json_default

    (quality_dir(ws) / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    return report


def evaluate_latest(ws, version: str | None = None) -> dict[str, Any]:
    """Metrics (held-out ads) and card of the latest (or ``version``) registered quality model."""
    reg = registry(ws)
    try:
        path = reg.path(version)
    except FileNotFoundError as e:
        raise InvalidInput(f"{e}; run `adlens train` first") from e
    metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
    card = json.loads((path / "card.json").read_text()) if (path / "card.json").exists() else {}
    return {"version": path.name, "path": str(path), "teacher": card.get("teacher"), "features": card.get("features"),
            "metrics": metrics, "card": card}


def _text_pair_row(ws, ad_row: dict, text: str, extractor: Any) -> dict[str, Any]:
    """F features of a stored ad x a free article text (the article's features computed now)."""
    import numpy as np

    from adlens.features.jobs import (
        AD_IMAGE_KIND,
        AD_WORDS_KIND,
        embedding_matrix,
        resolve_joint,
    )
    from adlens.features.pair import AdSide, ArticleSide, pair_features

    cf = extractor() if callable(extractor) else extractor
    if cf is None:
        from adlens.features.jobs import default_context_features

        cf = default_context_features()
    art = cf.extract(text)
    emb = art.get("text_embedding")
    model = getattr(cf.text_embedder, "model_id", None) if cf.text_embedder is not None else None
    Bt = None if emb is None else np.asarray(emb, np.float32).reshape(1, -1)
    At = None
    if Bt is not None and model:
        At, _ = embedding_matrix(ws, [ad_row], "text_embedding", AD_WORDS_KIND, model=model)
    js, _, _ = resolve_joint(ws, "auto")
    Ai = embedding_matrix(ws, [ad_row], "image_embedding", AD_IMAGE_KIND)[0] if js is not None else None
    F = pair_features(AdSide(text_emb=At if At is not None and Bt is not None else None, image_emb=Ai,
                             entities=[ad_row.get("ad_entities")], valence=[ad_row.get("copy_valence")],
                             topic=[ad_row.get("ad_topic")]),
                      ArticleSide(text_emb=Bt if At is not None else None, entities=[art.get("entities")],
                                  valence=[art.get("valence")], topic=[art.get("topic")]),
                      [0], [0], joint=js if Ai is not None and Bt is not None else None)
    return {n: float(F[n][0]) for n in F}


def score(ws, ad_id: str, article: str, version: str | None = None, extractor: Any = None) -> dict[str, Any]:
    """Score one ad x article with the latest registered model via :class:`FastScorer`.

    ``article`` is an ``article_id`` of the workspace or, when it is not one, the article's text
    (its context features are then computed with ``extractor`` -- a :class:`ContextFeatures` or a
    factory; default the workspace's default models). Returns ``{"ad_id", "article_id", "score",
    "version", "teacher", "features": {name: value used}, "backend"}``.
    """
    from adlens.features.jobs import (
        ad_records,
        article_records,
        compute_features,
        load_features,
    )
    from adlens.quality.fast import FastScorer
    from adlens.quality.pairs import pair_id

    if not ad_records(ws, [ad_id]):
        raise InvalidInput(f"unknown ad_id {ad_id!r}")
    reg = registry(ws)
    try:
        path = reg.path(version)
    except FileNotFoundError as e:
        raise InvalidInput(f"no quality model registered ({e}); run `adlens train` first") from e
    student = reg.load(path.name)
    ad_rows = load_features(ws, "ads", [ad_id])
    if not ad_rows:
        raise InvalidInput(f"ad {ad_id!r} has no features yet; run `adlens features ads`")
    is_id = bool(article_records(ws, [article]))
    if is_id:
        r = compute_features(ws, "pairs", pairs=[(ad_id, article)])
        if r["failed"]:
            raise InvalidInput(f"no pair features for {ad_id} x {article}: {r['failed'][0]['reason']}")
        p = {"pair_id": pair_id(ad_id, article), "ad_id": ad_id, "article_id": article}
        f = _f_row(_pair_rows(ws, [p]).get(p["pair_id"]))
    else:
        if not article.strip():
            raise InvalidInput("empty article text")
        f = _f_row(_text_pair_row(ws, ad_rows[0], article, extractor))
    row = {**_m_row(ad_rows[0]), **f}
    scorer = FastScorer.from_model_file(path / "model.json", student.iteration_range, list(student.features or []))
    value = float(scorer.score(student.matrix([row]))[0])
    card = json.loads((path / "card.json").read_text()) if (path / "card.json").exists() else {}
    used = {n: (None if isinstance(row[n], float) and math.isnan(row[n]) else row[n]) for n in student.features}
    return {"ad_id": ad_id, "article_id": article if is_id else None, "score": round(value, 4),
            "version": path.name, "teacher": card.get("teacher"), "features": used, "backend": scorer.backend}


# --------------------------------------------------------------------------- pipeline stage


def stage_quality(ctx, **train_kwargs: Any) -> dict[str, Any]:
    """Pairs -> rubric labels (unless labels from another teacher exist) -> train -> metrics.
    Skipped (``{"skipped": reason}``) when fewer than :data:`MIN_ADS` ads have an article."""
    ws = ctx.ws
    n = ads_with_articles(ws)
    if n < MIN_ADS:
        return {"skipped": f"quality scorer not trained: {n} ads with an article written for them (< {MIN_ADS})"}
    prog = ctx.progress_for("quality pair features") if hasattr(ctx, "progress_for") else None
    pairs = build_pairs(ws)
    feats = compute_pair_features(ws, progress=prog)
    other = [t for t in _existing_teachers(ws) if t != "rubric"]
    if other:
        teacher = other[0]
        _, labels = load_labels(ws, teacher)
        from adlens.quality.teachers import label_summary

        lab = {"teacher": teacher, "reused": True, **label_summary(labels)}
    else:
        teacher = "rubric"
        lab = teach(ws, "rubric")
    rep = train(ws, teacher=teacher, **train_kwargs)
    m = rep["metrics"]
    return {"pairs": {k: pairs[k] for k in ("n_pairs", "n_ads", "per_type", "ads_without_article", "missing_per_type")},
            "pair_features": {"computed": feats["computed"], "cached": feats["cached"], "failed": len(feats["failed"])},
            "labels": {k: lab.get(k) for k in ("teacher", "teacher_id", "n", "n_scored", "n_errors", "mean", "histogram",
                                               "total_cost", "reused") if k in lab},
            "teacher": teacher, "version": rep["version"], "features": rep["features"],
            "features_dropped_all_null": rep["features_dropped_all_null"],
            "metrics": {"overall": m.get("overall"), "per_pair_type": m.get("per_pair_type"),
                        "gap_positive_vs_negative": m.get("gap_positive_vs_negative"), "split": m.get("split"),
                        "feature_importance": dict(list(m.get("feature_importance", {}).items())[:10]),
                        "calibration": m.get("calibration")},
            **({"note": RUBRIC_NOTE} if teacher == "rubric" else {})}


def report_quality(ctx, section: dict) -> dict[str, Any]:
    """Rows for ``templates/section_quality.html``."""
    if section.get("skipped"):
        return {}
    m = section.get("metrics") or {}
    pairs = section.get("pairs") or {}
    total = pairs.get("n_pairs") or 0
    pair_rows = [{"type": t, "n": n, "share": round(100 * n / total, 1) if total else None}
                 for t, n in (pairs.get("per_type") or {}).items()]

    def fmt(v):
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:.3f}" if isinstance(v, float) else str(v))

    metric_rows = []
    for name, d in [("all (held-out ads)", m.get("overall") or {})] + sorted((m.get("per_pair_type") or {}).items()):
        metric_rows.append({"name": name, **{k: fmt(d.get(k)) for k in ("n", "mae", "rmse", "r2", "spearman")}})
    hist = (section.get("labels") or {}).get("histogram") or {}
    top = max(hist.values(), default=0) or 1
    label_rows = [{"score": k, "n": v, "width": round(100 * v / top)} for k, v in hist.items()]
    imp = [{"name": k, "share": round(100 * v, 1)} for k, v in (m.get("feature_importance") or {}).items()]
    gap = m.get("gap_positive_vs_negative") or {}
    from adlens.quality.plots import calibration_svg

    cal = m.get("calibration") or []
    split = m.get("split") or {}
    return {"pair_rows": pair_rows, "metric_rows": metric_rows, "label_rows": label_rows, "importance_rows": imp,
            "gap_true": fmt(gap.get("true")), "gap_pred": fmt(gap.get("pred")),
            "calibration_svg": calibration_svg(cal) if cal else None,
            "split_text": (f"{split.get('n_train_ads')} training ads ({split.get('n_train_rows')} pairs), "
                           f"{split.get('n_test_ads')} held-out ads ({split.get('n_test_rows')} pairs), "
                           f"{split.get('shared_ads')} ads on both sides") if split else None,
            "rubric_note": RUBRIC_NOTE if section.get("teacher") == "rubric" else None}


def evaluation_page(ev: Mapping[str, Any]) -> str:
    """A standalone HTML page (the run report's quality section on its own) for a registered model:
    ``ev`` is :func:`evaluate_latest`'s result. Metrics overall and per pair type, gap, feature
    importance and the calibration plot (inline SVG); no external assets."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from adlens import __version__

    card = ev.get("card") or {}
    metrics = ev.get("metrics") or {}
    section = {"version": ev.get("version"), "teacher": ev.get("teacher") or card.get("teacher"),
               "features": ev.get("features") or card.get("features") or [],
               "features_dropped_all_null": card.get("features_dropped_all_null") or [],
               "metrics": metrics, "labels": {},
               "pairs": {"n_pairs": card.get("n_rows"), "n_ads": card.get("n_ads")}}
    rows = report_quality(None, section)
    rows["pair_rows"] = []  # the card has no per-type count of all pairs; per-type metrics are below
    env = Environment(loader=PackageLoader("adlens", "templates"), autoescape=select_autoescape(["html"]))
    page = env.from_string(
        '{% extends "base.html" %}{% block title %}adlens quality model {{ quality.version }}{% endblock %}'
        '{% block body %}<h1>adlens quality model {{ quality.version }}</h1>'
        '<p class="muted">{{ path }}{% if created %} · created {{ created }}{% endif %}</p>'
        '{% include "section_quality.html" %}{% endblock %}')
    return page.render(quality={**section, **rows}, path=ev.get("path"), created=card.get("created"),
                       version=__version__)


def write_evaluation_report(ev: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`evaluation_page` to ``path`` (parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(evaluation_page(ev), encoding="utf-8")
    return out
