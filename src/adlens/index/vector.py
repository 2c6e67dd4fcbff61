"""A FAISS vector index with stable int64 ids, metadata filters and save/load.

Scores are inner products: on L2-normalised vectors (everything :mod:`adlens.embed` returns)
they are cosine similarities, higher is closer.

Exact or approximate
--------------------
The index is exact (``IndexFlatIP`` behind ``IndexIDMap2``) until it holds
``approx_threshold`` vectors; from then on it is approximate (the switch happens once, inside
:meth:`VectorIndex.add`, or when you call :meth:`VectorIndex.build_approximate`):

- ``approx="hnsw"`` (default): ``IndexHNSWFlat`` behind ``IndexIDMap2``; fastest queries, no
  training, but slow to build and **no removal** (``remove`` raises).
- ``approx="ivf"``: ``IndexIVFFlat`` (k-means coarse quantiser, ``nlist`` cells, ``nprobe``
  searched) with ids stored in the lists and a hash direct map; supports removal.

Exact single queries read a quarter of the bytes
------------------------------------------------
One query against a flat index scans every float32 vector (512 MB at 100k x 1280-d: memory-bound,
~25-46 ms here). From ``bounded_scan_min`` vectors on, queries of small batches (filtered or not) go through
:class:`~adlens.index.bounded_scan.BoundedScan` instead: int8 codes of a rotated head of every
vector, the tail codes of the rows that Cauchy-Schwarz bounds cannot exclude, float vectors of the
few rows left. The result is the same exact top-k (the bounds are proofs, not heuristics), in
~4-5 ms at 100k x 1280-d on real-embedding-like vectors (BENCHMARKS.md). The codes (a quarter of
the float size) are built on the first such query or by :meth:`VectorIndex.save`, which stores them
next to the index (``bounded_scan.npz``); added vectors are coded incrementally. Without a C
compiler (or with ``ADLENS_NATIVE=0``) FAISS's flat scan is used.

Filters
-------
``search(q, k, filter=...)`` takes either a collection of allowed ids, or a dict of metadata
conditions ``{"category": "Shoes"}`` / ``{"category": ["Shoes", "Hat"], "in_stock": True}``
(columns given to :meth:`add`; conditions are ANDed). The allowed set is then searched so that
the k results are the best *allowed* ones (a pre-filter, not a post-filter that could return
fewer than k):

- on a flat index that uses the bounded scan (above), any allowed set goes through it: the scan
  gives the other rows a score of -inf before any bound, at no extra cost;
- otherwise, allowed sets of at most ``exact_filter_max`` ids are scored exactly, by brute force over
  their vectors (exact even on an approximate index, where a graph walk restricted to a few
  ids would miss some);
- larger ones run inside FAISS with an ``IDSelectorBatch`` (exact on a flat index; on HNSW/IVF
  ``efSearch`` / ``nprobe`` are widened by 1 / selectivity, up to a cap).

Example::

    >>> idx = VectorIndex(dim=4)
    >>> idx.add(np.eye(4, dtype=np.float32), ids=[10, 11, 12, 13],
    ...         metadata={"category": np.array(["a", "a", "b", "b"])})
    array([10, 11, 12, 13])
    >>> scores, ids = idx.search(np.eye(4, dtype=np.float32)[:1], k=2, filter={"category": "b"})
    >>> ids.tolist()
    [[12, 13]]
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adlens.index.bounded_scan import BoundedScan, kernels_available

__all__ = ["VectorIndex"]

_FORMAT_VERSION = 1
_APPROX = ("hnsw", "ivf")


def _faiss():
    import faiss

    return faiss


class VectorIndex:
    """Inner-product nearest-neighbour index over float32 vectors with int64 ids.

    Args:
        dim: vector length.
        approx_threshold: from this many vectors on, the index is approximate; ``None`` keeps
            it exact forever.
        approx: ``"hnsw"`` or ``"ivf"`` (see module docs).
        hnsw_m, ef_construction, ef_search: HNSW graph degree, build and search beam widths.
        nlist, nprobe: IVF cells (default ``4 * sqrt(n)``, rounded) and cells searched.
        exact_filter_max: filtered searches over at most this many allowed ids are brute force.
        num_threads: FAISS OpenMP threads for batches of queries and builds (default: FAISS's
            default, the cores). Searches of fewer than ``4 * num_threads`` queries run on one
            thread: an OpenMP team costs more than it saves on a single query, and on a shared,
            busy CPU a 2-thread team waiting for a descheduled thread made single queries
            60x slower here (24 ms vs 0.4 ms at 20k x 128).
        random_state: seed for the IVF k-means.
        bounded_scan_min: flat indexes of at least this many vectors answer searches (filtered or
            not) of fewer than ``4 * num_threads`` queries with the bounded exact scan (module docs);
            ``None`` never does.
        bounded_scan_segments: cut points of the rotated coordinates the bounded scan reads stage
            by stage (the first segment for every vector, the next ones for survivors).
    """

    def __init__(
        self,
        dim: int,
        *,
        approx_threshold: int | None = 200_000,
        approx: str = "hnsw",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 32,
        exact_filter_max: int = 20_000,
        num_threads: int | None = None,
        random_state: int = 0,
        bounded_scan_min: int | None = 20_000,
        bounded_scan_segments: tuple[int, ...] = (256,),
    ):
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if approx not in _APPROX:
            raise ValueError(f"approx must be one of {_APPROX}, got {approx!r}")
        if approx_threshold is not None and approx_threshold < 1:
            raise ValueError(f"approx_threshold must be >= 1 or None, got {approx_threshold}")
        self.dim = int(dim)
        self.approx_threshold = approx_threshold
        self.approx = approx
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.nlist = nlist
        self.nprobe = int(nprobe)
        self.exact_filter_max = int(exact_filter_max)
        self.num_threads = num_threads
        self.random_state = int(random_state)
        self.bounded_scan_min = None if bounded_scan_min is None else int(bounded_scan_min)
        self.bounded_scan_segments = tuple(int(c) for c in bounded_scan_segments)
        self._scan: BoundedScan | None = None  # rows align with the flat index's rows
        self._codes_cache: dict[str, tuple] = {}  # metadata column -> (array, distinct values, codes)
        faiss = _faiss()
        self._threads = int(num_threads) if num_threads else int(faiss.omp_get_max_threads())
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._kind = "flat"
        self._ids = np.zeros(0, dtype=np.int64)  # insertion order; metadata rows align with it
        self._meta: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ properties

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        """``"flat"`` (exact), ``"hnsw"`` or ``"ivf"``."""
        return self._kind

    @property
    def is_approximate(self) -> bool:
        return self._kind != "flat"

    @property
    def ids(self) -> np.ndarray:
        """All ids, in insertion order (a copy)."""
        return self._ids.copy()

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        """Metadata columns aligned with :attr:`ids` (copies)."""
        return {k: v.copy() for k, v in self._meta.items()}

    # ------------------------------------------------------------------ validation

    def _vectors(self, x, name: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return np.ascontiguousarray(x)

    @staticmethod
    def _id_array(ids, name: str = "ids") -> np.ndarray:
        a = np.asarray(list(ids) if isinstance(ids, (set, frozenset)) else ids)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
        return a.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ mutation

    def add(self, vectors, ids=None, metadata: Mapping[str, Any] | None = None) -> np.ndarray:
        """Add ``(n, dim)`` vectors under ``ids`` (default: next integers) with metadata columns.

        Args:
            vectors: ``(n, dim)`` float32 (normalise them for cosine scores).
            ids: ``(n,)`` unique int64 ids not already in the index.
            metadata: ``{column: (n,) array}`` of numbers, bools or strings; every add must give
                the same columns as the first one.

        Returns:
            The ids assigned, ``(n,)`` int64.
        """
        x = self._vectors(vectors, "vectors")
        n = len(x)
        if ids is None:
            start = int(self._ids.max()) + 1 if len(self._ids) else 0
            ids = np.arange(start, start + n, dtype=np.int64)
        else:
            ids = self._id_array(ids)
            if len(ids) != n:
                raise ValueError(f"got {n} vectors but {len(ids)} ids")
            if len(np.unique(ids)) != n:
                raise ValueError("ids contain duplicates")
            if (ids == -1).any():  # what searches return for "no result": a real row must not look like it
                raise ValueError("id -1 is reserved (it marks empty result slots)")
            clash = ids[np.isin(ids, self._ids)]
            if len(clash):
                raise ValueError(f"ids already in the index: {clash[:5].tolist()}")
        meta = self._check_metadata(metadata, n)
        if n == 0:
            return ids
        if self._kind == "flat" and self.approx_threshold is not None and len(self) + n >= self.approx_threshold:
            self._index.add_with_ids(x, ids)
            self._append(ids, meta)
            self.build_approximate()
            return ids
        if self._kind == "ivf" and not self._index.is_trained:  # pragma: no cover - defensive
            raise RuntimeError("IVF index is not trained")
        with self._omp():
            self._index.add_with_ids(x, ids)
        self._append(ids, meta)
        if self._scan is not None:
            try:
                self._scan.extend(x)
            except Exception:  # noqa: BLE001 - the codes are a cache: drop them, rebuilt on demand
                self._scan = None
        return ids

    def _check_metadata(self, metadata, n: int) -> dict[str, np.ndarray]:
        metadata = dict(metadata or {})
        # every row has every column: an index started without metadata cannot take some later
        if len(self._ids) and set(metadata) != set(self._meta):
            raise ValueError(f"metadata columns must be {sorted(self._meta)}, got {sorted(metadata)}")
        out = {}
        for k, v in metadata.items():
            a = np.asarray(v)
            if a.ndim != 1 or len(a) != n:
                raise ValueError(f"metadata[{k!r}] must be 1-D with {n} entries, got shape {a.shape}")
            if a.dtype == object:
                a = a.astype(str)
            if a.dtype.kind not in "biufUS":
                raise ValueError(f"metadata[{k!r}] must hold numbers, bools or strings, got {a.dtype}")
            out[k] = a
        return out

    def _append(self, ids: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        empty = len(self._ids) == 0  # the first rows (or the first after removing all) set the columns
        self._ids = np.concatenate([self._ids, ids])
        if empty or not self._meta:
            self._meta = meta
        else:
            self._meta = {k: np.concatenate([self._meta[k], meta[k]]) for k in self._meta}

    def remove(self, ids) -> int:
        """Remove ``ids`` (unknown ids are ignored); returns how many were removed.

        Raises:
            NotImplementedError: on an HNSW index (FAISS graphs cannot delete).
        """
        faiss = _faiss()
        ids = self._id_array(ids)
        if self._kind == "hnsw":
            raise NotImplementedError("an HNSW index cannot remove vectors; use approx='ivf' or rebuild")
        keep = ~np.isin(self._ids, ids)
        if keep.all():
            return 0
        present = np.ascontiguousarray(self._ids[~keep])
        # an IVF hash direct map only accepts an explicit id array
        sel = faiss.IDSelectorArray(present) if self._kind == "ivf" else faiss.IDSelectorBatch(present)
        removed = int(self._index.remove_ids(sel))
        if self._scan is not None:  # the flat index compacts its rows in order, like _ids
            try:
                self._scan.keep_rows(keep)
            except Exception:  # noqa: BLE001 - a cache out of step: drop it, rebuilt on demand
                self._scan = None
        self._ids = self._ids[keep]
        self._meta = {k: v[keep] for k, v in self._meta.items()}
        return removed

    def build_approximate(self) -> None:
        """Rebuild the exact index as the approximate one (``approx``), keeping ids."""
        if self._kind != "flat":
            return
        faiss = _faiss()
        n = len(self)
        x = self.get_vectors(self._ids) if n else np.zeros((0, self.dim), np.float32)
        if self.approx == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
            index = faiss.IndexIDMap2(inner)
            with self._omp():
                index.add_with_ids(x, self._ids)
        else:
            nlist = self.nlist or max(1, min(int(round(4 * np.sqrt(max(n, 1)))), max(1, n // 39)))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = self.random_state
            # k-means on at most 64 points per cell: enough for good cells, keeps training fast
            rng = np.random.default_rng(self.random_state)
            sample = x if n <= 64 * nlist else x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
            with self._omp():
                index.train(sample)
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
                index.nprobe = min(self.nprobe, nlist)
                index.add_with_ids(x, self._ids)
            self.nlist = nlist
            quantizer.this.disown()  # owned by the IVF index now
            index.own_fields = True
        self._index = index
        self._kind = self.approx
        self._scan = None

    # ------------------------------------------------------------------ queries

    def get_vectors(self, ids) -> np.ndarray:
        """Stored vectors of ``ids`` as ``(len(ids), dim)`` float32 (KeyError on unknown ids)."""
        ids = self._id_array(ids)
        missing = ids[~np.isin(ids, self._ids)]
        if len(missing):
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        if len(ids) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(np.ascontiguousarray(ids))

    def allowed_ids(self, filter) -> np.ndarray:
        """The ids a ``filter`` (id collection or metadata dict) lets through, sorted."""
        return np.sort(self._ids[self._allowed_rows(filter)])

    def _column_codes(self, col: str) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values, code per row) of a metadata column, cached until the rows change."""
        column = self._meta[col]
        hit = self._codes_cache.get(col)
        if hit is None or hit[0] is not column:  # every add/remove makes new column arrays
            uniq, codes = np.unique(column, return_inverse=True)
            self._codes_cache[col] = hit = (column, uniq, codes.reshape(-1))
        return hit[1], hit[2]

    def _allowed_rows(self, filter) -> np.ndarray:
        """A bool per row (insertion order): does ``filter`` let it through?"""
        if isinstance(filter, Mapping):
            mask = np.ones(len(self._ids), dtype=bool)
            for col, want in filter.items():
                if col not in self._meta:
                    raise KeyError(f"no metadata column {col!r}; have {sorted(self._meta)}")
                vals = np.asarray(list(want) if isinstance(want, (list, tuple, set, frozenset)) else [want])
                uniq, codes = self._column_codes(col)
                # compare the few distinct values, then integer codes: strings are slow to compare
                mask &= np.isin(uniq, vals)[codes]
            return mask
        return np.isin(self._ids, self._id_array(filter, "filter"))

    def search(self, queries, k: int = 10, filter=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` neighbours of each query by inner product.

        Args:
            queries: ``(nq, dim)`` or ``(dim,)`` float32.
            k: neighbours per query.
            filter: ``None``, a collection of allowed ids, or a metadata dict (module docs).

        Returns:
            ``(scores, ids)``, both ``(nq, k)``: scores float32 descending, ids int64. When fewer
            than k vectors qualify, the tail is padded with id ``-1`` and score ``-inf``.
        """
        q = self._vectors(queries, "queries")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        nq = len(q)
        if len(self) == 0 or nq == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        if filter is None:
            if self._use_bounded_scan(nq):
                return self._bounded_search(q, k)
            with self._omp(nq):
                D, ids = self._index.search(q, k)
            return self._clean(D, ids)
        if self._use_bounded_scan(nq):  # a filter costs the bounded scan nothing extra
            rows = self._allowed_rows(filter)
            if rows.any():
                return self._bounded_search(q, k, rows)
        allowed = self.allowed_ids(filter)
        if len(allowed) == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        if len(allowed) <= self.exact_filter_max:
            return self._brute_force(q, k, allowed)
        with self._omp(nq):
            return self._selector_search(q, k, allowed)

    def _use_bounded_scan(self, n_queries: int) -> bool:
        return (self._kind == "flat" and self.bounded_scan_min is not None and len(self) >= self.bounded_scan_min
                and n_queries < 4 * self._threads and kernels_available())

    def _flat_rows(self) -> np.ndarray:
        """Zero-copy view of the flat index's float32 rows (valid until the next add/remove)."""
        faiss = _faiss()
        flat = faiss.downcast_index(self._index.index)
        return faiss.rev_swig_ptr(flat.get_xb(), len(self) * self.dim).reshape(len(self), self.dim)

    def prepare_bounded_scan(self) -> BoundedScan | None:
        """Build the bounded-scan codes now (otherwise the first qualifying search does)."""
        if self._kind != "flat" or not kernels_available():
            return None
        if self._scan is None or self._scan.n != len(self):
            row_ids = _faiss().vector_to_array(self._index.id_map)
            if not np.array_equal(row_ids, self._ids):  # pragma: no cover - would be a bug here
                raise RuntimeError("flat index rows and ids are out of step")
            self._scan = BoundedScan(segments=self.bounded_scan_segments, seed=self.random_state).build(self._flat_rows())
        return self._scan

    def _scan_matches(self, scan: BoundedScan, sample: int = 512) -> bool:
        """Do the codes' stored vector norms match the index's rows (a sample)? Catches codes
        left by an older save next to an index with the same shape but other vectors."""
        if len(self) == 0:
            return True
        rows = np.random.default_rng(0).choice(len(self), min(sample, len(self)), replace=False)
        norms = np.linalg.norm(self._flat_rows()[rows].astype(np.float64), axis=1)
        return bool(np.allclose(norms, scan.x_norm[rows], rtol=1e-5, atol=1e-30))

    def _bounded_search(self, q: np.ndarray, k: int, allowed_rows: np.ndarray | None = None):
        scan = self.prepare_bounded_scan()
        x = self._flat_rows()
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        for i in range(len(q)):
            s, rows, _ = scan.search(x, q[i], k, allowed=allowed_rows)
            scores[i, :len(s)] = s
            ids[i, :len(s)] = self._ids[rows]
        return scores, ids

    def _omp(self, n_queries: int | None = None):
        """Context setting FAISS's (process-wide) OpenMP threads for one call, then restoring."""
        faiss = _faiss()
        want = self._threads if n_queries is None or n_queries >= 4 * self._threads else 1
        return _OmpThreads(faiss, want)

    def _brute_force(self, q: np.ndarray, k: int, allowed: np.ndarray):
        xb = self.get_vectors(allowed)
        S = q @ xb.T
        kk = min(k, len(allowed))
        top = np.argpartition(-S, kk - 1, axis=1)[:, :kk] if kk < len(allowed) else np.tile(np.arange(kk), (len(q), 1))
        part = np.take_along_axis(S, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        scores[:, :kk] = np.take_along_axis(S, top, axis=1)
        ids[:, :kk] = allowed[top]
        return scores, ids

    def _selector_search(self, q: np.ndarray, k: int, allowed: np.ndarray):
        faiss = _faiss()
        sel = faiss.IDSelectorBatch(allowed)
        widen = min(20.0, len(self) / max(1, len(allowed)))  # 1 / selectivity, capped
        if self._kind == "flat":
            params = faiss.SearchParameters(sel=sel)
        elif self._kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=int(min(4096, max(k, self.ef_search * widen))))
        else:
            nprobe = int(min(self._index.nlist, max(1, self.nprobe * widen)))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        D, ids = self._index.search(q, k, params=params)
        return self._clean(D, ids)

    @staticmethod
    def _clean(D: np.ndarray, ids: np.ndarray):
        D = D.astype(np.float32, copy=True)
        D[ids < 0] = -np.inf
        return D, ids.astype(np.int64, copy=False)

    def set_search_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Trade recall for speed on an approximate index (larger = better recall, slower)."""
        if ef_search is not None:
            self.ef_search = int(ef_search)
            if self._kind == "hnsw":
                _faiss().downcast_index(self._index.index).hnsw.efSearch = self.ef_search
        if nprobe is not None:
            self.nprobe = int(nprobe)
            if self._kind == "ivf":
                self._index.nprobe = min(self.nprobe, self._index.nlist)

    # ------------------------------------------------------------------ persistence

    def _config(self) -> dict:
        return {
            "format_version": _FORMAT_VERSION,
            "dim": self.dim,
            "kind": self._kind,
            "approx_threshold": self.approx_threshold,
            "approx": self.approx,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "exact_filter_max": self.exact_filter_max,
            "random_state": self.random_state,
            "bounded_scan_min": self.bounded_scan_min,
            "bounded_scan_segments": list(self.bounded_scan_segments),
            "metadata_columns": sorted(self._meta),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``index.faiss``, ``ids.npz`` (ids + metadata), ``config.json`` and, for a flat index
        that uses the bounded scan, ``bounded_scan.npz`` (its codes) into ``directory``.

        Each file is written to a temporary name and renamed, so a crash never leaves a
        half-written file under the final name.
        """
        faiss = _faiss()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        # codes go first and come back last: a crash in between leaves no codes, never stale ones
        (d / "bounded_scan.npz").unlink(missing_ok=True)
        tmp_index = d / "index.faiss.tmp"
        faiss.write_index(self._index, str(tmp_index))
        tmp_ids = d / "ids.tmp.npz"
        np.savez(tmp_ids, ids=self._ids, **{f"meta__{k}": v for k, v in self._meta.items()})
        tmp_cfg = d / "config.json.tmp"
        tmp_cfg.write_text(json.dumps(self._config(), indent=2))
        scan = self.prepare_bounded_scan() if self._use_bounded_scan(1) else None
        if scan is not None:
            scan.save(d / "bounded_scan.tmp.npz")
        os.replace(tmp_index, d / "index.faiss")
        os.replace(tmp_ids, d / "ids.npz")
        os.replace(tmp_cfg, d / "config.json")
        if scan is not None:
            os.replace(d / "bounded_scan.tmp.npz", d / "bounded_scan.npz")
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, num_threads: int | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`."""
        faiss = _faiss()
        d = Path(directory)
        cfg_path = d / "config.json"
        if not cfg_path.exists():
            raise FileNotFoundError(f"no vector index in {d} (config.json missing)")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{d}: unsupported index format {cfg.get('format_version')}")
        obj = cls(
            cfg["dim"],
            approx_threshold=cfg["approx_threshold"],
            approx=cfg["approx"],
            hnsw_m=cfg["hnsw_m"],
            ef_construction=cfg["ef_construction"],
            ef_search=cfg["ef_search"],
            nlist=cfg["nlist"],
            nprobe=cfg["nprobe"],
            exact_filter_max=cfg["exact_filter_max"],
            num_threads=num_threads,
            random_state=cfg["random_state"],
            bounded_scan_min=cfg.get("bounded_scan_min", 20_000),
            bounded_scan_segments=tuple(cfg.get("bounded_scan_segments", (256,))),
        )
        obj._index = faiss.read_index(str(d / "index.faiss"))
        obj._kind = cfg["kind"]
        with np.load(d / "ids.npz", allow_pickle=False) as z:
            obj._ids = z["ids"].astype(np.int64)
            obj._meta = {k[len("meta__"):]: z[k] for k in z.files if k.startswith("meta__")}
        if len(obj._ids) != obj._index.ntotal:
            raise ValueError(f"{d}: ids.npz has {len(obj._ids)} ids but the index {obj._index.ntotal} vectors")
        obj.set_search_params(ef_search=obj.ef_search, nprobe=obj.nprobe)
        scan_path = d / "bounded_scan.npz"
        if obj._kind == "flat" and scan_path.exists():
            try:
                scan = BoundedScan.load(scan_path)
            except (OSError, ValueError, KeyError) as e:
                warnings.warn(f"{scan_path}: unreadable ({e}); the codes are rebuilt on the first search")
            else:
                if scan.n == len(obj) and scan.dim == obj.dim and obj._scan_matches(scan):
                    obj._scan = scan
                else:
                    warnings.warn(f"{scan_path}: codes for other vectors than the index's ({scan.n} x {scan.dim} vs "
                                  f"{len(obj)} x {obj.dim}, or other norms); rebuilt on the first search")
        return obj

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, n={len(self)}, kind={self._kind!r})"


class _OmpThreads:
    def __init__(self, faiss, n: int):
        self.faiss, self.n = faiss, n

    def __enter__(self):
        self.prev = self.faiss.omp_get_max_threads()
        if self.n != self.prev:
            self.faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.n != self.prev:
            self.faiss.omp_set_num_threads(self.prev)
        return False
