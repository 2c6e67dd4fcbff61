"""How well does the zero-shot topic feature agree with real ad categories?

Data: ``/work/shared/data/ad_transcripts/ad_transcripts.csv`` (1,935 real ad copies, CC0, with a
``Category`` of 24 values; "HeaLth Care" is folded into "Health Care"). Read-only; the script
exits 0 with a note when the file is absent.

Each real category is mapped onto the project's default taxonomy by :data:`CATEGORY_MAP`:
a *primary* topic (scored by strict accuracy and macro-F1) and *also acceptable* topics for
categories that straddle two of ours (scored by lenient accuracy). The mapping was written from
the category names before looking at predictions.

The topic feature (:class:`adlens.features.context.TopicClassifier`, MiniLM int8 embeddings,
default taxonomy) is run with the keyword prior off and at its default weight, and with the
classifier restricted to the topics that appear as primary targets (an "oracle taxonomy"
reading, reported for context only).

Usage: ``python benchmarks/eval_topic_transcripts.py [--csv PATH] [--quick]``
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

CSV = Path("/work/shared/data/ad_transcripts/ad_transcripts.csv")

#: real category -> (primary topic, also acceptable topics)
CATEGORY_MAP: dict[str, tuple[str, tuple[str, ...]]] = {
    "Advocacy": ("causes", ()),
    "Agricultural": ("business", ("food",)),
    "Alcohol & Spirits": ("alcohol", ("food",)),
    "Appliances": ("home", ("tech",)),
    "Automotive": ("auto", ()),
    "Beauty": ("beauty", ("fashion",)),
    "Education": ("education", ()),
    "Electronics": ("tech", ()),
    "Financial": ("finance", ()),
    "Food & Beverage": ("food", ("alcohol",)),
    "Health Care": ("health", ()),
    "Home & Personal Care": ("home", ("beauty", "health")),
    "Insurance": ("finance", ()),
    "Media & Entertainment": ("entertainment", ()),
    "Political": ("causes", ()),
    "Residential": ("real_estate", ("home",)),
    "Restaurants": ("food", ()),
    "Retail": ("retail", ("fashion", "home", "food")),
    "Services": ("business", ("home", "telecom", "finance", "health", "education")),
    "Sports": ("sports", ()),
    "Technology": ("tech", ("telecom", "business")),
    "Telecommunications": ("telecom", ("tech",)),
    "Travel": ("travel", ()),
}


def load(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            cat = (r.get("Category") or "").strip()
            if cat.lower() == "health care":
                cat = "Health Care"  # fixes "HeaLth Care"
            text = (r.get("Ad_copy") or "").strip()
            if cat and text:
                rows.append((cat, text))
    return rows


def macro_f1(y_true: list[str], y_pred: list[str], labels: list[str]) -> float:
    f1s = []
    for lab in labels:
        tp = sum(t == lab and p == lab for t, p in zip(y_true, y_pred))
        fp = sum(t != lab and p == lab for t, p in zip(y_true, y_pred))
        fn = sum(t == lab and p != lab for t, p in zip(y_true, y_pred))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def score(cats: list[str], pred: list[str]) -> dict:
    prim = [CATEGORY_MAP[c][0] for c in cats]
    strict = np.mean([p == t for p, t in zip(pred, prim)])
    lenient = np.mean([p == CATEGORY_MAP[c][0] or p in CATEGORY_MAP[c][1] for p, c in zip(pred, cats)])
    labels = sorted(set(prim))
    return {"accuracy": float(strict), "lenient_accuracy": float(lenient), "macro_f1": macro_f1(prim, pred, labels)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=CSV)
    ap.add_argument("--quick", action="store_true", help="first 400 ads (stratification not kept)")
    args = ap.parse_args()
    if not args.csv.is_file():
        print(f"skipped: {args.csv} not found (shared data absent)")
        return 0

    from adlens.embed import get_embedder
    from adlens.features.context import DEFAULT_TAXONOMY, Taxonomy, TopicClassifier, embed_long_texts

    rows = load(args.csv)
    if args.quick:
        rng = np.random.default_rng(0)
        rows = [rows[i] for i in sorted(rng.choice(len(rows), 400, replace=False))]
    unknown = sorted({c for c, _ in rows} - set(CATEGORY_MAP))
    if unknown:
        print(f"unmapped categories (skipped): {unknown}")
        rows = [r for r in rows if r[0] in CATEGORY_MAP]
    cats = [c for c, _ in rows]
    texts = [t for _, t in rows]
    print(f"{len(rows)} ad copies, {len(set(cats))} categories -> {len({CATEGORY_MAP[c][0] for c in cats})} "
          f"of {len(DEFAULT_TAXONOMY)} default topics\n")

    emb = get_embedder("minilm")
    t0 = time.perf_counter()
    E = embed_long_texts(emb, texts)
    t_emb = time.perf_counter() - t0

    configs = [("zero-shot, no keyword prior", DEFAULT_TAXONOMY, 0.0),
               ("zero-shot + keyword prior (default 0.05)", DEFAULT_TAXONOMY, 0.05),
               ("zero-shot + keyword prior 0.1", DEFAULT_TAXONOMY, 0.1)]
    used = sorted({CATEGORY_MAP[c][0] for c in cats})
    oracle = Taxonomy("oracle", tuple(t for t in DEFAULT_TAXONOMY.topics if t.id in used))
    configs.append(("oracle taxonomy (only mapped targets) + prior 0.05", oracle, 0.05))

    print("| configuration | accuracy | lenient accuracy | macro-F1 |")
    print("|---|---:|---:|---:|")
    results = {}
    for name, tax, kw in configs:
        clf = TopicClassifier(tax, embedder=emb, keyword_weight=kw)
        pred, _ = clf.predict_embeddings(E, texts)
        pred = pred.tolist()
        s = score(cats, pred)
        results[name] = (pred, s)
        print(f"| {name} | {s['accuracy']:.3f} | {s['lenient_accuracy']:.3f} | {s['macro_f1']:.3f} |")
    print(f"\nembedding {len(texts)} texts took {t_emb:.1f} s; majority-class baseline accuracy "
          f"{max(Counter(CATEGORY_MAP[c][0] for c in cats).values()) / len(cats):.3f}, "
          f"chance 1/{len(DEFAULT_TAXONOMY)} = {1 / len(DEFAULT_TAXONOMY):.3f}\n")

    pred, _ = results["zero-shot + keyword prior (default 0.05)"]
    print("Per real category (default configuration):\n")
    print("| real category | n | mapped to | accuracy | most frequent prediction |")
    print("|---|---:|---|---:|---|")
    by = {}
    for c, p in zip(cats, pred):
        by.setdefault(c, []).append(p)
    for c in sorted(by, key=lambda c: -len(by[c])):
        ps = by[c]
        top, k = Counter(ps).most_common(1)[0]
        acc = np.mean([p == CATEGORY_MAP[c][0] for p in ps])
        print(f"| {c} | {len(ps)} | {CATEGORY_MAP[c][0]} | {acc:.2f} | {top} ({k}) |")
    conf = Counter((CATEGORY_MAP[c][0], p) for c, p in zip(cats, pred) if p != CATEGORY_MAP[c][0])
    print("\nMost frequent confusions (mapped true -> predicted): "
          + ", ".join(f"{t}->{p} ({n})" for (t, p), n in conf.most_common(8)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
