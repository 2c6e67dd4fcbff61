"""Latency of scoring 20 candidates for one context: FastScorer vs XGBoost in the same run.

    python benchmarks/bench_scoring.py --quick        # ~10 s
    python benchmarks/bench_scoring.py --trees 300 --features 21 --repeat 2000

Reports the median and p99 of wall time per call (µs) and CPU time per call, for:
  * ``xgb_predict``   : XGBRegressor.predict (the plain path)
  * ``inplace``       : Booster.inplace_predict on a preallocated float32 array
  * ``fast_c``        : FastScorer C backend on its preallocated buffer (warm)
  * ``fast_numpy``    : FastScorer numpy fallback
and the cold start (model JSON -> FastScorer ready and first 20 scored, incl. loading the cached compiled
library) two ways: ``Booster.load_model`` + ``FastScorer.from_booster`` and ``FastScorer.from_model_file``
(parses the JSON once, no Booster); the very first compile on a machine is reported separately. Machine load is printed: on a shared box the
numbers move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def _time(fn, repeat: int) -> dict[str, float]:
    for _ in range(min(50, repeat)):
        fn()
    walls = []
    c0 = time.process_time()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
    cpu = (time.process_time() - c0) / repeat
    walls.sort()
    return {"median_us": statistics.median(walls) * 1e6, "p99_us": walls[int(0.99 * (len(walls) - 1))] * 1e6,
            "min_us": walls[0] * 1e6, "cpu_us": cpu * 1e6}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--features", type=int, default=21)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=2000)
    a = ap.parse_args(argv)
    if a.quick:
        a.repeat = 300

    import xgboost as xgb

    from adlens.quality.fast import FastScorer, compile_c_backend

    rng = np.random.default_rng(0)
    n = 4000
    X = rng.uniform(size=(n, a.features)).astype(np.float32)
    y = (X @ rng.uniform(size=a.features) + np.sin(3 * X[:, 0]) + rng.normal(0, 0.1, n)).astype(np.float32)
    X[rng.uniform(size=X.shape) < 0.05] = np.nan
    model = xgb.XGBRegressor(n_estimators=a.trees, max_depth=a.depth, learning_rate=0.05, reg_alpha=1,
                             reg_lambda=10, n_jobs=1, random_state=0).fit(X, y)
    bst = model.get_booster()
    cand = np.ascontiguousarray(X[: a.candidates])

    t = time.perf_counter()
    compile_c_backend()
    first_compile_ms = (time.perf_counter() - t) * 1e3
    with tempfile.TemporaryDirectory() as td:
        path = os.path.join(td, "model.json")
        bst.save_model(path)
        t = time.perf_counter()
        b2 = xgb.Booster()
        b2.load_model(path)
        fs = FastScorer.from_booster(b2)
        buf = fs.buffer(a.candidates)
        buf[:] = cand
        first = fs.score_buffer(a.candidates).copy()
        cold_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        fs_file = FastScorer.from_model_file(path)  # no Booster: one JSON parse
        buf2 = fs_file.buffer(a.candidates)
        buf2[:] = cand
        first_file = fs_file.score_buffer(a.candidates).copy()
        cold_file_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        b3 = xgb.XGBRegressor()
        b3.load_model(path)
        b3.predict(cand)
        cold_xgb_ms = (time.perf_counter() - t) * 1e3
    ref = model.predict(cand)
    fn = FastScorer.from_booster(bst, backend="numpy")
    res = {
        "config": {k: getattr(a, k) for k in ("trees", "depth", "features", "candidates", "repeat")},
        "loadavg": os.getloadavg(), "cpus": os.cpu_count(), "backend": fs.backend,
        "max_abs_diff_vs_xgb": float(max(np.abs(first - ref).max(), np.abs(first_file - ref).max())),
        "cold_start_ms": {"fast_scorer_booster_load_then_from_booster": cold_ms,
                          "fast_scorer_from_model_file": cold_file_ms, "xgb_load_and_predict": cold_xgb_ms,
                          "c_compile_or_cache_load": first_compile_ms},
        "warm": {
            "xgb_predict": _time(lambda: model.predict(cand), max(50, a.repeat // 10)),
            "inplace": _time(lambda: bst.inplace_predict(cand), max(50, a.repeat // 5)),
            "fast_c": _time(lambda: fs.score_buffer(a.candidates), a.repeat),
            "fast_numpy": _time(lambda: fn.score(cand), max(50, a.repeat // 10)),
        },
    }
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
