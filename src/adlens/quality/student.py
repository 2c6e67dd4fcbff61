"""The student: an XGBoost regressor that learns the teacher's 1-10 score from the features.

Defaults are the seed's (000, training): 300 trees with early stopping, depth 6, learning rate 0.05,
L1 1, L2 10; train / test split by ``ad_id`` (80 / 20 of unique ads, no ad ever on both sides);
categorical columns (e.g. ``face_emotion``) label-encoded with a stored mapping (unseen -> -1,
missing -> NaN, which XGBoost treats as "missing").

Input tables are column dicts ``{name: sequence}`` (or record lists / DataFrames / Arrow tables);
the student never reads or writes paths except in :meth:`QualityStudent.save` / :meth:`load`.

Library entry point for ``adlens train``::

    student, report = train_quality(table, y, groups, pair_types=pair_types)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SEED_PARAMS", "QualityStudent", "group_split", "group_kfold", "regression_metrics",
           "spearman", "train_quality", "as_columns", "STUDENT_FORMAT"]

STUDENT_FORMAT = "adlens-quality-student/1"

#: The seed's hyperparameters (000, "XGBoost training pipeline").
SEED_PARAMS: dict[str, Any] = {
    "n_estimators": 300, "max_depth": 6, "learning_rate": 0.05, "reg_alpha": 1.0, "reg_lambda": 10.0,
    "early_stopping_rounds": 30, "tree_method": "hist", "objective": "reg:squarederror",
}

# columns that are identifiers / labels, never features
_NON_FEATURES = {"ad_id", "article_id", "pair_id", "pair_type", "score", "label", "teacher_score",
                 "teacher_score_1_10", "reasoning", "teacher", "cost", "image_hash", "image_path"}


# --------------------------------------------------------------------------- splits

def _group_codes(groups: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray([str(x) for x in groups], dtype=object)
    uniq, inv = np.unique(g, return_inverse=True)  # sorted -> independent of row order
    return uniq, inv


def group_split(groups: Sequence[Any], test_size: float = 0.2, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices so that every group (ad) is entirely in train or entirely in test.

    ``round(test_size * n_groups)`` groups (at least 1 and at most n_groups - 1 when n_groups > 1) go to
    test. Returns ``(train_idx, test_idx)``, both sorted int arrays.
    """
    uniq, inv = _group_codes(groups)
    n = len(uniq)
    if n < 2:
        raise ValueError("need at least 2 groups to split")
    n_test = min(max(1, int(round(test_size * n))), n - 1)
    perm = np.random.default_rng(random_state).permutation(n)
    is_test = np.zeros(n, dtype=bool)
    is_test[perm[:n_test]] = True
    rows = is_test[inv]
    return np.flatnonzero(~rows), np.flatnonzero(rows)


def group_kfold(groups: Sequence[Any], n_splits: int = 5, random_state: int = 0):
    """Yield ``(train_idx, test_idx)`` for ``n_splits`` folds of shuffled groups (each group in one test fold)."""
    uniq, inv = _group_codes(groups)
    if len(uniq) < n_splits:
        raise ValueError(f"{len(uniq)} groups < n_splits={n_splits}")
    perm = np.random.default_rng(random_state).permutation(len(uniq))
    fold_of = np.empty(len(uniq), dtype=np.int64)
    fold_of[perm] = np.arange(len(uniq)) % n_splits
    rows = fold_of[inv]
    for k in range(n_splits):
        yield np.flatnonzero(rows != k), np.flatnonzero(rows == k)


# --------------------------------------------------------------------------- metrics

def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties get the mean rank), like scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    n = len(x)
    # vectorised tie handling
    boundaries = np.flatnonzero(np.diff(xs) != 0) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [n]])
    avg = (starts + ends - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (NaN when fewer than 2 points or a constant input)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2:
        return math.nan
    ra, rb = _rank(a), _rank(b)
    sa, sb = ra.std(), rb.std()
    if sa == 0 or sb == 0:
        return math.nan
    return float(((ra - ra.mean()) * (rb - rb.mean())).mean() / (sa * sb))


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """n, MAE, RMSE, R², Spearman, mean true, mean predicted."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    n = len(t)
    if n == 0:
        return {"n": 0, "mae": math.nan, "rmse": math.nan, "r2": math.nan, "spearman": math.nan,
                "mean_true": math.nan, "mean_pred": math.nan}
    err = p - t
    ss_tot = float(((t - t.mean()) ** 2).sum())
    return {
        "n": int(n),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "r2": float(1 - (err ** 2).sum() / ss_tot) if ss_tot > 0 else math.nan,
        "spearman": spearman(t, p),
        "mean_true": float(t.mean()),
        "mean_pred": float(p.mean()),
    }


def _calibration(y_true: np.ndarray, y_pred: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    """Reliability table: predictions binned in equal-count bins; mean predicted vs mean true per bin."""
    if len(y_pred) == 0:
        return []
    order = np.argsort(y_pred, kind="mergesort")
    out = []
    for chunk in np.array_split(order, min(n_bins, len(order))):
        if len(chunk):
            out.append({"n": int(len(chunk)), "mean_pred": float(y_pred[chunk].mean()),
                        "mean_true": float(y_true[chunk].mean())})
    return out


# --------------------------------------------------------------------------- tables

def as_columns(table: Any, feature_names: Sequence[str] | None = None) -> dict[str, list | np.ndarray]:
    """Normalise a table (column dict, record list, pandas DataFrame, pyarrow Table, or a 2-D array
    with ``feature_names``) to ``{name: column}``."""
    if isinstance(table, np.ndarray):
        if table.ndim != 2 or feature_names is None or table.shape[1] != len(feature_names):
            raise ValueError("a 2-D array needs feature_names of matching length")
        return {n: table[:, j] for j, n in enumerate(feature_names)}
    if hasattr(table, "to_pydict"):
        return dict(table.to_pydict())
    if hasattr(table, "to_dict") and hasattr(table, "columns") and not isinstance(table, Mapping):
        return {c: table[c].to_numpy() for c in table.columns}
    if isinstance(table, Mapping):
        return dict(table)
    recs = list(table)
    keys = list(recs[0].keys()) if recs else []
    return {k: [r.get(k) for r in recs] for k in keys}


def _is_categorical(col: Any) -> bool:
    arr = np.asarray(col) if not isinstance(col, np.ndarray) else col
    if arr.dtype.kind in "US":
        return True
    if arr.dtype.kind == "O":
        return any(isinstance(v, str) for v in arr)
    return False


def _is_numeric_like(col: Any) -> bool:
    arr = col if isinstance(col, np.ndarray) else np.asarray(col, dtype=object)
    if arr.dtype.kind in "biuf":
        return True
    if arr.dtype.kind == "O":
        return all(v is None or isinstance(v, (bool, int, float, np.number)) for v in arr)
    return False


def _to_float(col: Any) -> np.ndarray:
    arr = col if isinstance(col, np.ndarray) else np.asarray(col, dtype=object)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float32)
    return np.array([np.nan if v is None else float(v) for v in arr], dtype=np.float32)


# --------------------------------------------------------------------------- the student

class QualityStudent:
    """XGBoost regressor over a feature table, with the seed's defaults.

    Args:
        features: feature columns in model order; default: every numeric or categorical (string)
            column of the first table seen, minus identifier / label columns, in table order.
        categorical: columns to label-encode; default: the string-valued ones.
        valid_size: share of *training ads* held out for early stopping (0 disables early stopping).
        random_state: seeds the early-stopping split and XGBoost.
        n_jobs: XGBoost threads (1 = bit-reproducible and friendly to shared machines).
        **params: override any of :data:`SEED_PARAMS` (e.g. ``n_estimators=50``).
    """

    def __init__(self, features: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
                 valid_size: float = 0.2, random_state: int = 0, n_jobs: int = 1, **params: Any):
        self.features = list(features) if features is not None else None
        self.categorical = list(categorical) if categorical is not None else None
        self.valid_size = valid_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.params = {**SEED_PARAMS, **params}
        self.encoders: dict[str, dict[str, int]] = {}
        self.model = None  # xgboost.XGBRegressor
        self.best_iteration: int | None = None
        self.fit_info: dict[str, Any] = {}

    # ---- encoding
    def _select(self, cols: Mapping[str, Any]) -> None:
        if self.features is None:
            self.features = [k for k, v in cols.items() if k not in _NON_FEATURES
                             and (_is_categorical(v) or _is_numeric_like(v))]
        if self.categorical is None:
            self.categorical = [k for k in self.features if _is_categorical(cols[k])]
        missing = [k for k in self.features if k not in cols]
        if missing:
            raise KeyError(f"feature columns missing from the table: {missing}")

    def matrix(self, table: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Encode a table into the ``(n, n_features)`` float32 matrix the booster sees."""
        if self.features is None:
            raise RuntimeError("the student has no feature list yet: fit() first")
        cols = as_columns(table, feature_names)
        missing = [k for k in self.features if k not in cols]
        if missing:
            raise KeyError(f"feature columns missing from the table: {missing}")
        n = len(cols[self.features[0]]) if self.features else 0
        X = np.empty((n, len(self.features)), dtype=np.float32)
        for j, name in enumerate(self.features):
            if name in self.encoders:
                enc = self.encoders[name]
                X[:, j] = [np.nan if v is None or (isinstance(v, float) and math.isnan(v)) else enc.get(str(v), -1)
                           for v in cols[name]]
            else:
                X[:, j] = _to_float(cols[name])
        return X

    def _fit_encoders(self, cols: Mapping[str, Any]) -> None:
        self.encoders = {}
        for name in self.categorical or []:
            vals = sorted({str(v) for v in cols[name] if v is not None and not (isinstance(v, float) and math.isnan(v))})
            self.encoders[name] = {v: i for i, v in enumerate(vals)}

    def _xgb_params(self) -> dict[str, Any]:
        p = dict(self.params)
        return {**p, "random_state": self.random_state, "n_jobs": self.n_jobs}

    # ---- fit / predict
    def fit(self, table: Any, y: Sequence[float], groups: Sequence[Any] | None = None,
            feature_names: Sequence[str] | None = None) -> QualityStudent:
        """Fit on ``table`` with targets ``y``; ``groups`` (ad ids) drive the early-stopping split."""
        import xgboost as xgb

        cols = as_columns(table, feature_names)
        self._select(cols)
        self._fit_encoders(cols)
        X = self.matrix(cols)
        y = np.asarray(y, dtype=np.float32)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} rows but {len(y)} targets")
        params = self._xgb_params()
        es = params.pop("early_stopping_rounds", None)
        use_es = bool(es) and self.valid_size and groups is not None and len(set(map(str, groups))) >= 5
        if use_es:
            tr, va = group_split(groups, self.valid_size, self.random_state)
            model = xgb.XGBRegressor(**params, early_stopping_rounds=es)
            model.fit(X[tr], y[tr], eval_set=[(X[va], y[va])], verbose=False)
            self.best_iteration = int(model.best_iteration)
            self.fit_info = {"n_train": int(len(tr)), "n_valid": int(len(va)), "early_stopping": True,
                             "best_iteration": self.best_iteration, "best_score": float(model.best_score)}
        else:
            model = xgb.XGBRegressor(**params)
            model.fit(X, y, verbose=False)
            self.best_iteration = int(params["n_estimators"]) - 1
            self.fit_info = {"n_train": int(len(X)), "n_valid": 0, "early_stopping": False,
                             "best_iteration": self.best_iteration}
        self.model = model
        return self

    @property
    def booster(self):
        if self.model is None:
            raise RuntimeError("not fitted")
        return self.model.get_booster()

    @property
    def iteration_range(self) -> tuple[int, int]:
        """Trees used for prediction (up to the early-stopping best iteration)."""
        return (0, int(self.best_iteration) + 1)

    def predict(self, table: Any, feature_names: Sequence[str] | None = None) -> np.ndarray:
        """Predicted scores (float32) using the trees up to the best iteration."""
        X = table if (isinstance(table, np.ndarray) and feature_names is None and table.ndim == 2
                      and table.dtype == np.float32) else self.matrix(table, feature_names)
        return self.predict_matrix(X)

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """Reference prediction on an already encoded matrix (``XGBRegressor.predict``)."""
        return self.model.predict(X, iteration_range=self.iteration_range)

    # ---- evaluation
    def feature_importance(self, importance_type: str = "total_gain") -> dict[str, float]:
        """Share of total gain (sums to 1) per feature, descending; unused features get 0."""
        raw = self.booster.get_score(importance_type=importance_type)
        names = self.features or []
        vals = {n: float(raw.get(n, raw.get(f"f{j}", 0.0))) for j, n in enumerate(names)}
        tot = sum(vals.values()) or 1.0
        return dict(sorted(((k, v / tot) for k, v in vals.items()), key=lambda kv: -kv[1]))

    def evaluate(self, table: Any, y: Sequence[float], pair_types: Sequence[str] | None = None,
                 groups: Sequence[Any] | None = None, n_bins: int = 10) -> dict[str, Any]:
        """MAE, RMSE, R², Spearman overall and per pair type; mean positive-vs-negative gap (true and
        predicted); calibration table; feature importance."""
        t = np.asarray(y, dtype=np.float64)
        p = self.predict(table).astype(np.float64)
        rep: dict[str, Any] = {"overall": regression_metrics(t, p)}
        if groups is not None:
            rep["overall"]["n_groups"] = len(set(map(str, groups)))
        if pair_types is not None:
            pt = np.asarray([str(x) for x in pair_types], dtype=object)
            rep["per_pair_type"] = {k: regression_metrics(t[pt == k], p[pt == k]) for k in sorted(set(pt))}
            pos, neg = pt == "positive", pt != "positive"
            if pos.any() and neg.any():
                rep["gap_positive_vs_negative"] = {
                    "true": float(t[pos].mean() - t[neg].mean()),
                    "pred": float(p[pos].mean() - p[neg].mean()),
                }
        rep["calibration"] = _calibration(t, p, n_bins)
        rep["feature_importance"] = self.feature_importance()
        rep["best_iteration"] = self.best_iteration
        return rep

    # ---- persistence
    def schema(self) -> dict[str, Any]:
        return {"format": STUDENT_FORMAT, "features": list(self.features or []),
                "categorical": list(self.categorical or []), "encoders": self.encoders,
                "params": self.params, "random_state": self.random_state, "valid_size": self.valid_size,
                "best_iteration": self.best_iteration, "fit_info": self.fit_info}

    def save(self, folder: str | os.PathLike, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write ``model.json`` (XGBoost JSON), ``schema.json`` (features, encoders, params) and, if
        given, ``metrics.json`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.json"))
        (folder / "schema.json").write_text(json.dumps(self.schema(), indent=2, sort_keys=True))
        if metrics is not None:
            (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=_json_default))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> QualityStudent:
        import xgboost as xgb

        folder = Path(folder)
        sch = json.loads((folder / "schema.json").read_text())
        if sch.get("format") != STUDENT_FORMAT:
            raise ValueError(f"unknown student format {sch.get('format')!r}")
        st = cls(features=sch["features"], categorical=sch["categorical"], valid_size=sch["valid_size"],
                 random_state=sch["random_state"], **sch["params"])
        st.encoders = {k: dict(v) for k, v in sch["encoders"].items()}
        st.best_iteration = sch["best_iteration"]
        st.fit_info = sch.get("fit_info", {})
        model = xgb.XGBRegressor()
        model.load_model(str(folder / "model.json"))
        st.model = model
        return st


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def train_quality(table: Any, y: Sequence[float], groups: Sequence[Any], pair_types: Sequence[str] | None = None,
                  test_size: float = 0.2, random_state: int = 0, **student_kwargs: Any) -> tuple[QualityStudent, dict[str, Any]]:
    """Seed training pipeline in one call: split by ad (``test_size`` of ads held out), fit the student
    on the training ads (early stopping on a further group split of those), evaluate on the held-out ads.

    Returns ``(student, report)``; ``report["split"]`` lists sizes and confirms zero shared ads.
    """
    cols = as_columns(table)
    y = np.asarray(y, dtype=np.float64)
    groups = [str(g) for g in groups]
    tr, te = group_split(groups, test_size, random_state)
    sub = lambda c, idx: {k: (np.asarray(v, dtype=object)[idx] if not isinstance(v, np.ndarray) else v[idx]) for k, v in c.items()}  # noqa: E731
    g = np.asarray(groups, dtype=object)
    student = QualityStudent(random_state=random_state, **student_kwargs)
    student.fit(sub(cols, tr), y[tr], g[tr])
    pt = None if pair_types is None else np.asarray(pair_types, dtype=object)[te]
    report = student.evaluate(sub(cols, te), y[te], pt, g[te])
    shared = set(g[tr]) & set(g[te])
    report["split"] = {"n_train_rows": int(len(tr)), "n_test_rows": int(len(te)),
                       "n_train_ads": len(set(g[tr])), "n_test_ads": len(set(g[te])), "shared_ads": len(shared),
                       "test_size": test_size, "random_state": random_state}
    report["fit"] = student.fit_info
    return student, report
