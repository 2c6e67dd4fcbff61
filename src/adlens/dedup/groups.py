"""Turning duplicate pairs into groups, and picking each group's canonical member.

* :class:`UnionFind` -- incremental disjoint sets (path halving + union by size), for streams.
* :func:`group_pairs` -- connected components of a pair list, vectorised numpy
  (hook-to-smaller-root + pointer jumping; O((n + m) log n), no scipy).
* :func:`choose_canonical` -- earliest seen, then largest pixel area, then smallest id.

Example
-------
>>> [g.tolist() for g in group_pairs([10, 11, 12, 13], [(10, 12, 3)])]
[[10, 12], [11], [13]]
>>> int(choose_canonical([10, 12], first_seen=["2024-05-02", "2024-05-01"], area=[100, 50]))
12
"""

from __future__ import annotations


import numpy as np

__all__ = ["UnionFind", "group_pairs", "choose_canonical"]


class UnionFind:
    """Disjoint sets over ``0 .. n-1`` with path halving and union by size.

    >>> uf = UnionFind(4); uf.union(0, 2); uf.union(2, 3)
    True
    True
    >>> uf.find(3) == uf.find(0), uf.size(0), uf.n_sets
    (True, 3, 2)
    """

    def __init__(self, n: int):
        self.parent = list(range(n))
        self._size = [1] * n
        self.n_sets = n

    def __len__(self) -> int:
        return len(self.parent)

    def add(self) -> int:
        """Append a new singleton element; returns its index."""
        self.parent.append(len(self.parent))
        self._size.append(1)
        self.n_sets += 1
        return len(self.parent) - 1

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> bool:
        """Merge the sets of ``a`` and ``b``; False if they were already one set."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self._size[ra] += self._size[rb]
        self.n_sets -= 1
        return True

    def size(self, x: int) -> int:
        return self._size[self.find(x)]

    def labels(self) -> np.ndarray:
        """Root of every element (n,) int64."""
        return np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)

    def groups(self) -> list[np.ndarray]:
        """All sets as sorted int64 arrays, ordered by their smallest element."""
        return _groups_from_labels(self.labels(), np.arange(len(self.parent), dtype=np.int64), 1)


def _has_duplicates(a: np.ndarray) -> bool:
    s = np.sort(a)  # sort-based: faster than np.unique's hashing for large int arrays
    return bool(s.size > 1 and np.any(s[1:] == s[:-1]))


def _pairs_array(pairs) -> np.ndarray:
    """Pairs as an (m, 2) int64 array (a third 'distance' column is ignored)."""
    if isinstance(pairs, np.ndarray):
        a = pairs
    else:
        a = np.array([tuple(p)[:2] for p in pairs], dtype=np.int64)
    if a.size == 0:
        return np.zeros((0, 2), np.int64)
    if a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"pairs must be (m, 2) or (m, 3), got shape {a.shape}")
    return a[:, :2].astype(np.int64)


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (smallest member index) of each of n nodes."""
    labels = np.arange(n, dtype=np.int64)
    if a.size == 0:
        return labels
    while True:
        la, lb = labels[a], labels[b]
        low = np.minimum(la, lb)
        if np.array_equal(la, lb):
            return labels
        # hook: each root seen on an edge points to the smaller of the two roots
        np.minimum.at(labels, la, low)
        np.minimum.at(labels, lb, low)
        # pointer jumping until every node points at a root
        while True:
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt


def _groups_from_labels(labels: np.ndarray, ids: np.ndarray, min_size: int) -> list[np.ndarray]:
    order = np.lexsort((ids, labels))
    lab, members = labels[order], ids[order]
    cuts = np.flatnonzero(lab[1:] != lab[:-1]) + 1
    groups = [g for g in np.split(members, cuts) if g.size >= min_size]
    groups.sort(key=lambda g: g[0])
    return groups


def group_pairs(ids_or_n, pairs, min_size: int = 1) -> list[np.ndarray]:
    """Connected components of a duplicate-pair graph.

    Parameters
    ----------
    ids_or_n : int or array-like (n,) of int
        ``n`` (nodes are ``0 .. n-1``) or the node ids (unique); pairs refer to these.
    pairs : iterable of (i, j) or (i, j, distance), or ndarray (m, 2) / (m, 3)
    min_size : int, default 1
        Drop groups smaller than this (1 = every node in exactly one group, a partition;
        2 = only groups that contain duplicates).

    Returns
    -------
    list of int64 ndarrays, each sorted; groups ordered by their smallest id.

    Example
    -------
    >>> [g.tolist() for g in group_pairs(5, [(0, 3), (3, 4)], min_size=2)]
    [[0, 3, 4]]
    """
    if isinstance(ids_or_n, (int, np.integer)):
        ids = np.arange(int(ids_or_n), dtype=np.int64)
    else:
        ids = np.asarray(ids_or_n).astype(np.int64).ravel()
    p = _pairs_array(pairs)
    if _has_duplicates(ids):
        raise ValueError("ids contain duplicates")
    # map ids -> positions
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, p.ravel()).clip(max=max(ids.size - 1, 0))
    if p.size and (ids.size == 0 or not np.array_equal(sorted_ids[pos], p.ravel())):
        missing = np.setdiff1d(p.ravel(), ids)
        raise ValueError(f"pairs refer to unknown ids: {missing[:10].tolist()}")
    pos = order[pos].reshape(-1, 2) if p.size else np.zeros((0, 2), np.int64)
    labels = _components(ids.size, pos[:, 0], pos[:, 1])
    return _groups_from_labels(labels, ids, min_size)


def choose_canonical(members, first_seen=None, area=None) -> np.int64:
    """Pick a group's canonical member: earliest seen, then largest area, then smallest id.

    Parameters
    ----------
    members : array-like (k,) of int
        Ids of the group.
    first_seen : array-like (k,), optional
        When each member was first seen; anything that sorts chronologically (datetime64,
        numbers, ISO-8601 strings of one format). Omitted -> criterion skipped.
    area : array-like (k,) of int, optional
        Pixel area (width * height); larger wins. Omitted -> criterion skipped.

    Returns
    -------
    The chosen id.

    Example
    -------
    >>> int(choose_canonical([7, 3, 5], first_seen=[1, 1, 1], area=[10, 10, 40]))
    5
    """
    m = np.asarray(members).astype(np.int64).ravel()
    if m.size == 0:
        raise ValueError("members is empty")
    keys = [m]
    if area is not None:
        a = np.asarray(area).astype(np.float64).ravel()
        if a.shape != m.shape:
            raise ValueError("area must align with members")
        keys.append(-a)
    if first_seen is not None:
        f = np.asarray(first_seen).ravel()
        if f.shape != m.shape:
            raise ValueError("first_seen must align with members")
        keys.append(f)
    return m[np.lexsort(keys)[0]]
