"""Similar-product retrieval on real clothing photos: learned projection vs baselines.

Data: ``/work/shared/data/clothing`` (2,605 JPEGs, ``labels.csv`` with 18 garment labels), or
``--data DIR`` / ``$ADLENS_CLOTHING_DIR``; read in place, never copied. Skips (exit 0) when
the folder is absent.

Protocol (seed 001's "learn from the catalogue", scored on products never seen in training):
the images are split in two halves, stratified by label (seeded). Every learned method is
fitted on the train half only; every method is scored on the test half only:

- AUC: cosine similarity separating same-label from different-label pairs, over all pairs of
  the test half (seed 001's metric; 0.5 = chance);
- precision@10, recall@10, hit_rate@10: each test image queries the other test images
  (leave-one-out); see :mod:`adlens.embed.evaluate`.

Methods: random vectors; colour histogram (RGB 8x8x8, Hellinger); 64-bit pHash (Hamming
similarity); raw EfficientNet-Lite0 embeddings (1280-d, cosine); :class:`CatalogProjection`
(``lda`` / ``linear`` / ``mlp``, each with ``embedding`` / ``posterior`` / ``hybrid`` output);
then (unless ``--quick`` / ``--no-hq``) the same at 256 px input with flip averaging; with
``--finetune``, the whole backbone fine-tuned on the train half (:mod:`adlens.embed.finetune`,
~25 min on one core, resumable in ``--tune-dir``) and its three outputs, the hybrid with flip
averaging, plus a CatalogProjection fitted on the tuned features.

Validation (``--validate``, for choosing a fine-tuning recipe without the test half): the train
half is split again, stratified and seeded (:func:`stratified_split`, 75 % "fit" / 25 %
"validation"), and every row above is computed with fit in place of train and validation in
place of test. The test half is still decoded and embedded with the frozen model (so that the
split is exactly the one of the normal run), but nothing is fitted or scored on it. Recipe
changes go in with ``--recipe key=value`` (keyword arguments of ``finetune_backbone``).

Usage: ``python benchmarks/eval_similar_clothing.py [--quick] [--seed 0] [--json out.json]
[--finetune [--epochs 15] [--tune-dir DIR] [--recipe key=value ...]] [--no-hq] [--validate]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from adlens.embed.base import get_embedder
from adlens.embed.evaluate import pair_auc, retrieval_at_k
from adlens.embed.finetune import TUNE_EPOCHS
from adlens.embed.image import EfficientNetLite0, load_rgb
from adlens.embed.projection import CatalogProjection

DEFAULT_DATA = Path(os.environ.get("ADLENS_CLOTHING_DIR", "/work/shared/data/clothing"))


def stratified_halves(labels: np.ndarray, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices in two halves with every label split as evenly as possible (seeded)."""
    rng = np.random.default_rng(random_state)
    a, b = [], []
    flip = 0
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        half = len(idx) // 2
        if len(idx) % 2:  # alternate which half gets the odd one out
            half += flip
            flip ^= 1
        a.append(idx[:half])
        b.append(idx[half:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def stratified_split(labels: np.ndarray, frac: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into ``(round(frac * n_label), rest)`` per label (seeded, both sorted)."""
    rng = np.random.default_rng(random_state)
    a, b = [], []
    for lab in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == lab))
        k = min(len(idx) - 1, max(1, int(round(frac * len(idx))))) if len(idx) > 1 else len(idx)
        a.append(idx[:k])
        b.append(idx[k:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def parse_recipe(items: list[str]) -> dict:
    """``["lr=1e-4", "freeze_blocks=2"]`` -> ``{"lr": 0.0001, "freeze_blocks": 2}`` (JSON values)."""
    out = {}
    for it in items or []:
        k, _, v = it.partition("=")
        if not k or not _:
            raise SystemExit(f"--recipe expects key=value, got {it!r}")
        out[k.strip()] = json.loads(v)
    return out


def colour_histogram(im, bins: int = 8) -> np.ndarray:
    a = np.asarray(im.convert("RGB").resize((64, 64)), dtype=np.uint8) // (256 // bins)
    code = (a[..., 0].astype(np.int64) * bins + a[..., 1]) * bins + a[..., 2]
    h = np.bincount(code.ravel(), minlength=bins**3).astype(np.float32)
    return np.sqrt(h / h.sum())  # Hellinger: cosine of sqrt-histograms


_D = None


def phash64(im) -> np.ndarray:
    """64-bit pHash (32x32 grey, 2-D DCT, top-left 8x8, > median) as 64 bools."""
    global _D
    if _D is None:
        n = 32
        k = np.arange(n)[:, None]
        _D = np.sqrt(2 / n) * np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
        _D[0] /= np.sqrt(2)
    g = np.asarray(im.convert("L").resize((32, 32), resample=3), dtype=np.float64)
    c = (_D @ g @ _D.T)[:8, :8].ravel()
    return c > np.median(c)


def score(name: str, X, y, metric: str = "cosine", fit_s: float | None = None, k: int = 10) -> dict:
    auc = pair_auc(X, y, metric=metric)
    r = retrieval_at_k(X, y, k, metric=metric)
    row = {"method": name, "auc": auc, "precision": r["precision"], "recall": r["recall"],
           "hit_rate": r["hit_rate"], "dim": int(X.shape[1]) if metric != "hamming" else 64,
           "fit_s": fit_s}
    fit = f"{fit_s:7.1f}" if fit_s is not None else "      -"
    print(f"| {name:34s} | {row['dim']:5d} | {auc:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
          f"{r['hit_rate']:.4f} | {fit} |", flush=True)
    return row


def run_projections(X, train, test, y_tr, y_te, configs, prefix: str, args) -> list[dict]:
    out = []
    for method, kw in configs:
        t = time.perf_counter()
        proj = CatalogProjection(method=method, random_state=args.seed, **kw).fit(X[train], y_tr)
        fit_s = time.perf_counter() - t
        for output in ("embedding", "posterior", "hybrid"):
            proj.output = output
            out.append(score(f"{prefix}{method} / {output}", proj.transform(X[test]), y_te, fit_s=fit_s, k=args.k))
    return out


def run_finetune(paths, train, test, y_tr, y_te, args) -> list[dict]:
    from adlens.embed.finetune import TunedEfficientNet, finetune_backbone, load_training_pixels

    out_dir = args.tune_dir or Path.home() / ".cache" / "adlens" / f"clothing-tuned-seed{args.seed}"
    t = time.perf_counter()
    px = load_training_pixels([paths[i] for i in train])
    last = [0.0]

    def progress(done, total):
        if time.perf_counter() - last[0] > 60 or done == total:
            last[0] = time.perf_counter()
            print(f"|   fine-tuning step {done}/{total}, {time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f} | | | | | | |",
                  flush=True)

    recipe = {"epochs": args.epochs, **parse_recipe(args.recipe)}
    print(f"|   fine-tuning recipe: {recipe} -> {out_dir} | | | | | | |", flush=True)
    finetune_backbone(px, y_tr, out_dir, random_state=args.seed, progress=progress, **recipe)
    fit_s = time.perf_counter() - t
    # 224 px without flip: the three outputs of the network as trained (and the projection row below)
    emb = TunedEfficientNet(out_dir, output="embedding", input_size=224, tta_flip=False)
    Z = emb.embed_files([paths[i] for i in test]).vectors
    out = [score(f"tuned backbone / {o}", emb.transform_features(Z, o), y_te, fit_s=fit_s, k=args.k)
           for o in ("embedding", "posterior", "hybrid")]
    flip = TunedEfficientNet(out_dir, input_size=224, tta_flip=True).embed_files([paths[i] for i in test]).vectors
    out.append(score("tuned backbone / hybrid + flip, 224 px", flip, y_te, fit_s=fit_s, k=args.k))
    # the product path: TunedEfficientNet's defaults (256 px + flip)
    hyb = TunedEfficientNet(out_dir).embed_files([paths[i] for i in test]).vectors
    out.append(score("tuned backbone / default (256 px + flip)", hyb, y_te, fit_s=fit_s, k=args.k))
    for size in args.infer_sizes:  # the tuned network applied at other input sizes
        v = TunedEfficientNet(out_dir, tta_flip=True, input_size=size).embed_files([paths[i] for i in test]).vectors
        out.append(score(f"tuned backbone / hybrid + flip, {size} px", v, y_te, fit_s=fit_s, k=args.k))
    Ztr = emb.embed_files([paths[i] for i in train]).vectors
    proj = CatalogProjection(random_state=args.seed).fit(Ztr, y_tr)
    out.append(score("tuned backbone + mlp / hybrid", proj.transform(Z), y_te, fit_s=fit_s, k=args.k))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model-dir", default=None, help="ONNX model folder (default $ADLENS_MODEL_DIR or ~/.cache)")
    ap.add_argument("--model", default="efficientnet-lite0",
                    help="frozen image embedder (efficientnet-lite0 or efficientnet-lite0-int8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="800 images, fewer methods/epochs")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--no-hq", action="store_true", help="skip the 256 px + flip variant")
    ap.add_argument("--finetune", action="store_true", help="also fine-tune the backbone on the train half")
    ap.add_argument("--epochs", type=int, default=TUNE_EPOCHS, help="fine-tuning epochs")
    ap.add_argument("--tune-dir", type=Path, default=None,
                    help="where the tuned model goes (resumable; default ~/.cache/adlens/clothing-tuned-seed<seed>)")
    ap.add_argument("--recipe", nargs="*", default=[], metavar="KEY=VALUE",
                    help="fine-tuning recipe overrides (finetune_backbone keywords, JSON values)")
    ap.add_argument("--infer-sizes", type=int, nargs="*", default=[],
                    help="also score the tuned backbone (hybrid + flip) at these input sizes (px, multiples of 32)")
    ap.add_argument("--validate", action="store_true",
                    help="fit on 75%% of the train half, score on the other 25%%; nothing is scored on the test half")
    ap.add_argument("--val-frac", type=float, default=0.25, help="share of the train half held out with --validate")
    ap.add_argument("--val-seed", type=int, default=None,
                    help="seed of the fit / validation split inside the train half (default --seed; the halves stay)")
    args = ap.parse_args(argv)

    labels_csv = args.data / "labels.csv"
    if not labels_csv.exists():
        print(f"skipped: no clothing data at {args.data}")
        return 0
    with open(labels_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [str(args.data / "images" / f"{r['image']}.jpg") for r in rows]
    labels = np.array([r["label"] for r in rows])
    if args.quick:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(paths), 800, replace=False))
        paths, labels = [paths[i] for i in keep], labels[keep]

    emb = get_embedder(args.model, model_dir=args.model_dir)
    t = time.perf_counter()
    res = emb.embed_files(paths)
    t_embed = time.perf_counter() - t
    for p, reason in res.errors:
        print(f"  skipped {p}: {reason}")
    paths = [paths[i] for i in res.ok]
    labels = labels[res.ok]
    X = res.vectors
    train, test = stratified_halves(labels, args.seed)
    split = f"train {len(train)} / test {len(test)}"
    if args.validate:  # fit / validation inside the train half; the test half is left alone
        val_seed = args.seed if args.val_seed is None else args.val_seed  # another split, same halves
        fit, val = stratified_split(labels[train], 1 - args.val_frac, val_seed)
        train, test = train[fit], train[val]
        split = f"VALIDATION: fit {len(train)} / validation {len(test)}, both inside the train half (split seed {val_seed})"
        if args.finetune and args.tune_dir is None:
            args.tune_dir = Path.home() / ".cache" / "adlens" / f"clothing-tuned-val-seed{args.seed}"
    y_tr, y_te = labels[train], labels[test]
    print(f"{len(paths)} images ({len(res.errors)} failed), {len(np.unique(labels))} labels; "
          f"{split} (seed {args.seed}); "
          f"embedded in {t_embed:.1f} s ({len(paths) / t_embed:.0f} img/s, {emb.model_id})\n")

    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as ex:
        ims = list(ex.map(lambda p: load_rgb(p, draft_size=None), [paths[i] for i in test]))
        hist = np.stack(list(ex.map(colour_histogram, ims)))
        ph = np.stack(list(ex.map(phash64, ims)))

    print("| method (" + ("validation)" if args.validate else "test half) ").ljust(27) + "|   dim |   AUC  |  P@10  |  R@10  | hit@10 | fit s |")
    print("|------------------------------------|------:|-------:|-------:|-------:|-------:|------:|")
    # learned rows: "<method> / <output>" = CatalogProjection(method).transform, fitted on the train half
    results = []
    rng = np.random.default_rng(args.seed)
    results.append(score("random", rng.normal(size=(len(test), 64)), y_te, k=args.k))
    results.append(score("colour histogram (RGB 8^3)", hist, y_te, k=args.k))
    results.append(score("pHash 64-bit (Hamming)", ph, y_te, metric="hamming", k=args.k))
    results.append(score("raw EfficientNet-Lite0", X[test], y_te, k=args.k))

    configs = [("lda", {}), ("linear", {"epochs": 100}), ("mlp", {"epochs": 100})]
    if args.quick:
        configs = [("lda", {}), ("mlp", {"epochs": 40})]
    results += run_projections(X, train, test, y_tr, y_te, configs, "", args)

    if not args.quick and not args.no_hq:
        # the same network at the photos' native 256 px, averaged with the mirror image
        hq = EfficientNetLite0(args.model_dir, input_size=256, tta_flip=True)
        t = time.perf_counter()
        Xh = hq.embed_files(paths).vectors
        print(f"|   ({hq.model_id}: embedded in {time.perf_counter() - t:.0f} s) | | | | | | |")
        results.append(score("raw, 256 px + flip", Xh[test], y_te, k=args.k))
        results += run_projections(Xh, train, test, y_tr, y_te, [("lda", {}), ("mlp", {"epochs": 100})],
                                   "256 px + flip, ", args)
    if args.finetune:
        results += run_finetune(paths, train, test, y_tr, y_te, args)
    print("\n" + ("(validation split of the train half; the targets apply to the test half) " if args.validate else "")
          + "targets (test half): AUC >= 0.95, precision@10 >= 0.80")
    if args.json:
        args.json.write_text(json.dumps({"n_images": len(paths), "seed": args.seed, "embed_s": t_embed,
                                         "split": "validation" if args.validate else "test",
                                         "recipe": {"epochs": args.epochs, **parse_recipe(args.recipe)},
                                         "model_id": emb.model_id, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
