"""The `labels` teacher on the most honest real rated set we can make: real ad copies x IAB content
categories, labelled by the IAB Tech Lab's human-curated mapping "Content Taxonomy 1.0 -> Ad Product
Taxonomy 2.0". Runs the whole chain -- features -> pairs -> labels teacher -> XGBoost student ->
Spearman on held-out ads -- and compares it with feature-only baselines on the same held-out pairs.

**What the labels are, and are not.** They are *curated contextual-suitability labels*: for each IAB
content category the IAB names the ad-product category that suits it. They are **not** human ratings
of creative quality, memorability or clicks, and they are at category level (every ad of one
transcript category gets the same label next to one content category). No human-rated ads exist in
``/work/shared/data``; this is the closest real, human-made judgement available.

Data (read-only; the script exits 0 with a note when ``/work/shared/data`` is absent):

* ``ad_transcripts/ad_transcripts.csv``: 1,935 real ad copies with a ``Category`` (24 values;
  "HeaLth Care" folded into "Health Care"). A stratified subsample (``--per-category`` ads per
  category, seeded) is rendered as 300x250 banners (advertiser / product headline, the copy's
  first words, a CTA; background colour from a hash of the advertiser, never of the category, so
  the image cannot leak the label) and ingested with the full copy as the ad text.
* ``iab/Content_1.0_to_Ad_Product_2.0.tsv`` (392 content categories, one ad-product node each) and
  ``iab/Ad_Product_Taxonomy_2.0.tsv`` (the ad-product tree). Each content category becomes a context
  ("article") whose title is its Tier-1 name and whose text is its Tier-2 name: taxonomy names, not
  articles -- the contexts are short.

Hand-made table :data:`AD_PRODUCT_NODES` (written from the category names and a look at a dozen
advertisers per category, before any model was run): transcript category -> the Ad Product 2.0
nodes that describe what its ads sell. The label of (ad, content category C) with C mapped to
product node P is the best over the ad's nodes A of:

* 3 ``match``     -- P is A, or an ancestor or descendant of A (same branch of the product tree);
* 2 ``related``   -- same product family: the same Tier-1, except for the catch-all Tier-1s
  "Consumer Packaged Goods", "Durable Goods" and "Business and Industrial", where the family is
  the Tier-2 (a soda and a cold remedy are both "CPG" but not related);
* 1 ``unrelated`` -- anything else;
* 0 ``unsafe``    -- C maps to "Ad Safety Risk" or "Adult Products and Services" (IAB24-26:
  uncategorised, non-standard and illegal content), whatever the ad.

The ``labels`` teacher reads them with ``--scale 0,3`` (0..3 -> 1..10). Pairs per ad (seeded): up to
2 ``match``, 1 ``related`` and 3 random other contexts (their grades as they fall); ``pair_type``
records the grade name. The student is trained and evaluated by ``adlens train`` (the library call
``adlens.quality.jobs.train``): 80 / 20 split by ad, no ad on both sides; contexts are shared by
train and test ads (the question is "how well does this unseen ad fit these contexts").

Baselines on exactly the same held-out pairs: one feature alone (``sim_adtext_article``,
``topic_match``), the rubric cold-start heuristic (no labels), and random scores.

Usage::

    python benchmarks/eval_ratings_iab.py [--per-category 30] [--seed 0] [--workspace DIR] [--json OUT]
    python benchmarks/eval_ratings_iab.py --quick      # 12 ads per category, for a smoke run
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
CSV = DATA / "ad_transcripts" / "ad_transcripts.csv"
IAB = DATA / "iab"

#: transcript category -> Ad Product Taxonomy 2.0 node ids describing what its ads sell
AD_PRODUCT_NODES: dict[str, tuple[int, ...]] = {
    "Advocacy": (1452,),                          # Non-Profits
    "Agricultural": (1010,),                      # Business and Industrial (John Deere, feed)
    "Alcohol & Spirits": (1002,),                 # Alcohol
    "Appliances": (1289, 1277),                   # Durable Goods > Household Appliances; Home and Garden Products
    "Automotive": (1551,),                        # Vehicles
    "Beauty": (1138, 1244, 1179, 1152, 1088),     # CPG Cosmetics, Skin Care, Hair Care, Fragrance; Cosmetic Services
    "Education": (1295,),                         # Education and Careers
    "Electronics": (1097,),                       # Consumer Electronics
    "Financial": (1335,),                         # Finance and Insurance
    "Food & Beverage": (1131, 1165, 1155, 1229, 1188),  # CPG Beverages, General Food, Frozen, Refrigerated, HFSS
    "Health Care": (1378, 1473),                  # Health and Medical Services; Pharmaceuticals
    "Home & Personal Care": (1214, 1215, 1189, 1208, 1124),  # CPG Personal Care/Cleansing, Home Care, OTC, Baby
    "Insurance": (1340,),                         # Finance and Insurance > Insurance
    "Media & Entertainment": (1419, 1315),        # Media; Events and Performances
    "Political": (1474,),                         # Politics
    "Residential": (1482, 1334),                  # Real Estate; Family and Parenting > Senior Living
    "Restaurants": (1360, 1358),                  # Food and Beverage Services > Restaurants, Fast Food
    "Retail": (1494,),                            # Retail
    "Services": (1012, 1396),                     # Business Services; Home and Garden Services
    "Sports": (1524, 1510, 1325),                 # Sporting Goods; Fitness Activities; Sporting Events
    "Technology": (1082, 1097, 1017),             # Computer Software; Consumer Electronics; IT Services
    "Telecommunications": (1467,),                # Personal/Consumer Telecom
    "Travel": (1529,),                            # Travel and Tourism
}
UNSAFE_NODES = {1000, 1001}  # Ad Safety Risk; Adult Products and Services
BROAD_TIER1 = {"Consumer Packaged Goods", "Durable Goods", "Business and Industrial"}
GRADE_NAMES = {3: "match", 2: "related", 1: "unrelated", 0: "unsafe"}


# --------------------------------------------------------------------------- data


def load_ads(path: Path) -> list[dict]:
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            cat = (r.get("Category") or "").strip()
            if cat.lower() == "health care":
                cat = "Health Care"
            text = (r.get("Ad_copy") or "").strip()
            if cat and text:
                out.append({"row": i, "category": cat, "advertiser": (r.get("Advertiser") or "").strip(),
                            "product": (r.get("Product_or_spot") or "").strip(), "copy": text})
    return out


def load_product_tree(path: Path) -> dict[int, dict]:
    nodes: dict[int, dict] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rd = csv.reader(f, delimiter="\t")
        next(rd)
        for row in rd:
            row = (row + [""] * 6)[:6]
            if not row[0].strip().isdigit():
                continue  # blank trailing line
            nid = int(row[0])
            parent = int(row[1]) if row[1].strip() else None
            nodes[nid] = {"id": nid, "parent": None if parent == nid else parent, "name": row[2].strip(),
                          "tier1": row[3].strip(), "tier2": row[4].strip()}
    return nodes


def ancestors(nodes: dict[int, dict], nid: int) -> list[int]:
    """``nid`` and its ancestors (loop-safe)."""
    out, seen = [], set()
    while nid is not None and nid in nodes and nid not in seen:
        out.append(nid)
        seen.add(nid)
        nid = nodes[nid]["parent"]
    return out


def family(nodes: dict[int, dict], nid: int) -> tuple[str, str]:
    n = nodes[nid]
    return (n["tier1"], n["tier2"] if n["tier1"] in BROAD_TIER1 else "")


def grade(nodes: dict[int, dict], ad_nodes: tuple[int, ...], p: int) -> int:
    if p in UNSAFE_NODES:
        return 0
    best = 1
    anc_p = set(ancestors(nodes, p))
    for a in ad_nodes:
        if a in anc_p or p in set(ancestors(nodes, a)):
            return 3
        if family(nodes, a) == family(nodes, p):
            best = 2
    return best


def load_contexts(path: Path) -> list[dict]:
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        rd = csv.reader(f, delimiter="\t")
        next(rd)
        for row in rd:
            row = (row + [""] * 7)[:7]
            cid, t1, t2, pid = row[0].strip(), row[1].strip(), row[2].strip(), row[3].strip()
            if not cid or not pid.isdigit():
                continue
            out.append({"content_id": cid, "tier1": t1, "tier2": t2 or t1, "product_node": int(pid)})
    return out


# --------------------------------------------------------------------------- banners


def _wrap(draw, text: str, font, width: int, max_lines: int) -> list[str]:
    lines, cur = [], ""
    for w in text.split():
        t = (cur + " " + w).strip()
        if draw.textlength(t, font=font) <= width:
            cur = t
        else:
            if cur:
                lines.append(cur)
            cur = w
            if len(lines) == max_lines:
                break
    if cur and len(lines) < max_lines:
        lines.append(cur)
    return lines[:max_lines]


def render_banner(ad: dict, size=(300, 250)):
    """A plain banner for a real ad copy: headline (product or advertiser), the copy's first
    sentence(s), a CTA button. Colours come from a hash of the advertiser only."""
    import colorsys

    from PIL import Image, ImageDraw, ImageFont

    h = hashlib.sha256(ad["advertiser"].encode()).digest()
    hue, sat, val = h[0] / 255, 0.35 + 0.5 * h[1] / 255, 0.25 + 0.6 * h[2] / 255
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val))
    ink = (255, 255, 255) if val < 0.6 else (20, 20, 28)
    accent = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.8, 0.9))
    img = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(img)
    w, hgt = size
    head_font = ImageFont.load_default(size=22)
    body_font = ImageFont.load_default(size=14)
    cta_font = ImageFont.load_default(size=14)
    y = 14
    for line in _wrap(d, (ad["product"] or ad["advertiser"]).upper(), head_font, w - 28, 2):
        d.text((14, y), line, font=head_font, fill=ink)
        y += 27
    y += 4
    for line in _wrap(d, ad["copy"], body_font, w - 28, 6):
        d.text((14, y), line, font=body_font, fill=ink)
        y += 18
        if y > hgt - 60:
            break
    cta = "LEARN MORE"
    tw = d.textlength(cta, font=cta_font)
    x0, y0 = w - 14 - int(tw) - 24, hgt - 44
    d.rounded_rectangle([x0, y0, w - 14, hgt - 14], radius=6, fill=accent)
    d.text((x0 + 12, y0 + 7), cta, font=cta_font, fill=(15, 15, 15))
    return img


# --------------------------------------------------------------------------- metrics


def spearman(a, b) -> float:
    from adlens.quality.student import spearman as sp

    return float(sp(a, b))


def mean_group_spearman(keys, y, p, min_n: int = 3) -> tuple[float, int]:
    """Mean Spearman within each group (e.g. one context ranking held-out ads) with >= min_n rows and
    non-constant labels; returns (mean, number of groups used)."""
    idx = defaultdict(list)
    for i, k in enumerate(keys):
        idx[k].append(i)
    vals = []
    for rows in idx.values():
        if len(rows) >= min_n and len(set(y[rows])) > 1:
            s = spearman(y[rows], p[rows])
            if not math.isnan(s):
                vals.append(s)
    return (float(np.mean(vals)) if vals else math.nan), len(vals)


def _no_ocr_extractor():
    """The default creative extractor without its OCR backend (``--no-ocr``)."""
    from adlens.features.jobs import default_creative_features

    fx = default_creative_features()
    fx.ocr = None
    return fx


# --------------------------------------------------------------------------- main


def main(argv=None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-category", type=int, default=30, help="ads per transcript category (stratified, seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-random", type=int, default=3, help="random contexts per ad")
    ap.add_argument("--workspace", type=Path, default=None, help="keep the workspace here (default: a temp dir)")
    ap.add_argument("--workers", type=int, default=None, help="feature workers (default: adlens auto)")
    ap.add_argument("--json", type=Path, default=None, help="write the result as JSON here")
    ap.add_argument("--quick", action="store_true", help="12 ads per category")
    ap.add_argument("--no-ocr", action="store_true",
                    help="creative features without OCR (about 3x faster; the banner text is the copy we rendered)")
    a = ap.parse_args(argv)
    if a.quick:
        a.per_category = 12
    if not (CSV.exists() and (IAB / "Content_1.0_to_Ad_Product_2.0.tsv").exists()):
        print(f"skipped: {DATA} (ad_transcripts + iab) not found")
        return None

    from adlens.config import Settings
    from adlens.features.jobs import compute_features
    from adlens.ingest.ads import ingest_ads
    from adlens.ingest.articles import ingest_articles
    from adlens.quality import jobs as q
    from adlens.quality.pairs import pair_id
    from adlens.quality.student import group_split
    from adlens.quality.teachers import RubricTeacher
    from adlens.workspace import init_workspace

    t_all = time.perf_counter()
    rng = random.Random(a.seed)
    nodes = load_product_tree(IAB / "Ad_Product_Taxonomy_2.0.tsv")
    contexts = load_contexts(IAB / "Content_1.0_to_Ad_Product_2.0.tsv")
    missing = [n for ns in AD_PRODUCT_NODES.values() for n in ns if n not in nodes]
    assert not missing, f"unknown Ad Product 2.0 nodes in the table: {missing}"

    all_ads = load_ads(CSV)
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for ad in all_ads:
        by_cat[ad["category"]].append(ad)
    unmapped = sorted(set(by_cat) - set(AD_PRODUCT_NODES))
    assert not unmapped, f"categories without a mapping: {unmapped}"
    ads = []
    for cat in sorted(by_cat):
        rows = list(by_cat[cat])
        rng.shuffle(rows)
        ads += rows[: a.per_category]
    for i, ad in enumerate(ads):
        ad["ad_id"] = f"t{ad['row']:04d}"

    # ---- pairs and labels (by the mapping)
    pairs, labels = [], []
    grade_counts: Counter = Counter()
    for ad in ads:
        g = {c["content_id"]: grade(nodes, AD_PRODUCT_NODES[ad["category"]], c["product_node"]) for c in contexts}
        match = [c for c in g if g[c] == 3]
        related = [c for c in g if g[c] == 2]
        chosen = rng.sample(match, min(2, len(match))) + rng.sample(related, min(1, len(related)))
        rest = [c for c in g if c not in chosen]
        chosen += rng.sample(rest, min(a.n_random, len(rest)))
        for c in chosen:
            pairs.append({"pair_id": pair_id(ad["ad_id"], c), "ad_id": ad["ad_id"], "article_id": c,
                          "pair_type": GRADE_NAMES[g[c]]})
            labels.append({"ad_id": ad["ad_id"], "content_id": c, "grade": g[c]})
            grade_counts[GRADE_NAMES[g[c]]] += 1
    print(f"{len(ads)} real ads from {len(by_cat)} categories ({a.per_category} max each, of {len(all_ads)}), "
          f"{len(contexts)} IAB content categories, {len(pairs)} pairs: {dict(grade_counts)}", flush=True)

    tmp = None
    root = a.workspace
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="adlens-iab-")
        root = Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    inp = root / "input"
    (inp / "ads").mkdir(parents=True, exist_ok=True)
    with open(inp / "ads.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "ad_id", "advertiser", "text", "day"])
        for ad in ads:
            p = inp / "ads" / f"{ad['ad_id']}.png"
            if not p.exists():
                render_banner(ad).save(p, "PNG", optimize=False)
            w.writerow([f"ads/{p.name}", ad["ad_id"], ad["advertiser"], ad["copy"], "2026-01-01"])
    with open(inp / "contexts.jsonl", "w", encoding="utf-8") as f:
        for c in contexts:
            f.write(json.dumps({"article_id": c["content_id"], "title": c["tier1"], "text": c["tier2"] + "."}) + "\n")
    with open(inp / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["ad_id", "content_id", "grade"])
        w.writeheader()
        w.writerows(labels)

    ws = init_workspace(root / "ws", Settings(workspace=root / "ws"))
    timings = {}
    try:
        t = time.perf_counter()
        ing = ingest_ads(ws, inp / "ads.csv")
        ingest_articles(ws, inp / "contexts.jsonl")
        timings["ingest_s"] = round(time.perf_counter() - t, 1)
        print(f"ingested: {ing.added} ads added, {ing.already_present} already present, {len(ing.rejected)} rejected", flush=True)
        t = time.perf_counter()
        fa = compute_features(ws, "ads", workers=a.workers, extractor=_no_ocr_extractor if a.no_ocr else None)
        timings["ad_features_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        fc = compute_features(ws, "articles", workers=a.workers)
        timings["context_features_s"] = round(time.perf_counter() - t, 1)
        print(f"features: ads {fa['computed']} computed ({len(fa['failed'])} failed, {timings['ad_features_s']} s), "
              f"contexts {fc['computed']} ({timings['context_features_s']} s)", flush=True)

        # pairs of this design (not `adlens pairs`: there is no 'article written for the ad' here)
        q._write_parquet(pairs, q.quality_dir(ws) / "pairs.parquet", ("pair_id", "ad_id", "article_id", "pair_type"))
        t = time.perf_counter()
        lab = q.teach(ws, "labels", labels_file=inp / "labels.csv",
                      columns={"ad_id": "ad_id", "article_id": "content_id", "score": "grade"}, scale=(0, 3))
        rep = q.train(ws, teacher="labels", random_state=a.seed)
        timings["pair_features_and_train_s"] = round(time.perf_counter() - t, 1)
        m = rep["metrics"]

        # ---- the same held-out pairs, recomputed, for the baselines
        table = q.feature_table(ws, q.load_pairs(ws))
        score_of = {r["pair_id"]: r["score"] for r in q.load_labels(ws, "labels")[1] if r.get("score") is not None}
        rows = [r for r in table if r["pair_id"] in score_of]
        _, te = group_split([r["ad_id"] for r in rows], 0.2, a.seed)
        test = [rows[i] for i in te]
        y = np.array([score_of[r["pair_id"]] for r in test])
        student = q.registry(ws).load(rep["version"])
        pred = student.predict({n: [r[n] for r in test] for n in student.features}).astype(np.float64)
        s_student = spearman(y, pred)
        assert abs(s_student - m["overall"]["spearman"]) < 1e-9, "recomputed split differs from train's"

        def feat(name):
            v = np.array([r.get(name) for r in test], dtype=np.float64)
            ok = ~np.isnan(v)
            const = ok.sum() > 0 and np.nanmin(v) == np.nanmax(v)
            return (spearman(y[ok], v[ok]) if ok.sum() > 2 else math.nan), float(ok.mean()), bool(const)

        baselines = {}
        for name in ("sim_adtext_article", "topic_match", "entity_overlap_rate", "contrast"):
            s, cov, const = feat(name)
            baselines[name] = {"spearman": s, "coverage": cov, **({"constant": True} if const else {})}
        rub = np.array([r["score"] for r in RubricTeacher().label(test)])
        baselines["rubric (cold-start heuristic, no labels)"] = {"spearman": spearman(y, rub), "coverage": 1.0}
        rs = [spearman(y, np.random.default_rng(k).uniform(size=len(y))) for k in range(200)]
        baselines["random"] = {"spearman": float(np.mean(rs)), "sd": float(np.std(rs)), "coverage": 1.0}

        ctx_keys = [r["article_id"] for r in test]
        ad_keys = [r["ad_id"] for r in test]
        per_ctx = mean_group_spearman(ctx_keys, y, pred)
        per_ctx_sim = mean_group_spearman(ctx_keys, y, np.nan_to_num(
            np.array([r.get("sim_adtext_article") for r in test], dtype=np.float64), nan=-1.0))
        per_ad = mean_group_spearman(ad_keys, y, pred)
        is_match = np.array([r["pair_type"] == "match" for r in test])
        gap = {"teacher": float(y[is_match].mean() - y[~is_match].mean()),
               "student": float(pred[is_match].mean() - pred[~is_match].mean())} if is_match.any() and (~is_match).any() else None
        per_ad_sim = mean_group_spearman(ad_keys, y, np.nan_to_num(
            np.array([r.get("sim_adtext_article") for r in test], dtype=np.float64), nan=-1.0))
        timings["total_s"] = round(time.perf_counter() - t_all, 1)
        result = {
            "data": {"ads": len(ads), "ads_available": len(all_ads), "per_category": a.per_category,
                     "categories": len(by_cat), "contexts": len(contexts), "pairs": len(pairs),
                     "grades": dict(grade_counts), "seed": a.seed},
            "labels": {k: lab[k] for k in ("teacher_id", "n", "n_scored", "histogram")},
            "model": {"version": rep["version"], "features": rep["features"],
                      "dropped_all_null": rep["features_dropped_all_null"], "best_iteration": m.get("best_iteration")},
            "split": m["split"],
            "student": {"overall": m["overall"], "per_pair_type": m.get("per_pair_type"),
                        "gap_match_vs_rest": gap,
                        "mean_spearman_per_context": per_ctx[0], "contexts_ranked": per_ctx[1],
                        "mean_spearman_per_ad": per_ad[0], "ads_ranked": per_ad[1],
                        "feature_importance": dict(list(m["feature_importance"].items())[:8])},
            "baselines_same_test_pairs": baselines,
            "baseline_sim_adtext_article_per_context": per_ctx_sim[0],
            "baseline_sim_adtext_article_per_ad": per_ad_sim[0],
            "timings": timings,
            "note": "curated IAB suitability labels at category level, not human ratings of creative quality",
        }
    finally:
        ws.close()
        if tmp is not None:
            tmp.cleanup()

    o = result["student"]["overall"]
    print(f"\nheld-out ads: {m['split']['n_test_ads']} ads, {o['n']} pairs (train {m['split']['n_train_ads']} ads; "
          f"{m['split']['shared_ads']} shared)")
    print(f"{'scorer':45s} Spearman (all held-out pairs)")
    print(f"{'student (XGBoost, labels teacher)':45s} {o['spearman']:.3f}   MAE {o['mae']:.2f}  R2 {o['r2']:.3f}")
    for k, v in baselines.items():
        if v.get("constant"):
            print(f"{k:45s} n/a (constant on the held-out pairs)")
            continue
        extra = f" ± {v['sd']:.3f}" if "sd" in v else ("" if v["coverage"] == 1 else f"  (coverage {v['coverage']:.2f})")
        print(f"{k:45s} {v['spearman']:.3f}{extra}")
    if gap:
        print(f"mean label gap match - rest: teacher {gap['teacher']:.2f}, student {gap['student']:.2f}")
    print(f"mean Spearman ranking held-out ads per context: student {per_ctx[0]:.3f} vs sim_adtext_article "
          f"{per_ctx_sim[0]:.3f} ({per_ctx[1]} contexts)")
    print(f"mean Spearman ranking contexts per held-out ad: student {per_ad[0]:.3f} vs sim_adtext_article "
          f"{per_ad_sim[0]:.3f} ({per_ad[1]} ads)")
    print("per pair type: " + ", ".join(f"{k} n={v['n']} mean label {v['mean_true']:.2f} pred {v['mean_pred']:.2f}"
                                        for k, v in (m.get("per_pair_type") or {}).items()))
    print("top features: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(m["feature_importance"].items())[:6]))
    print(f"timings: {timings}")
    print("NOTE: labels are the IAB's curated content -> ad-product suitability mapping at category level, "
          "not human ratings of creative quality.")
    if a.json:
        from adlens.quality.student import _json_default

        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2, default=_json_default))
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
