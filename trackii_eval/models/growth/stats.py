"""Per-participant sufficient statistics, grouped by design pattern.

With one grouping factor the random-effects cross-product is block diagonal, one q x q block
``T_i = Z_i'Z_i`` per participant. Every quantity the profiled deviance needs is a quadratic
form in the per-participant products ``W_i = Z_i' [X_i, 1, y_i]`` (a q x m matrix) weighted by a
q x q matrix that depends only on ``T_i``. Participants observed at the same set of times share
``T_i``, so we group them into *patterns*: the costly per-block Cholesky factorisation is done
once per pattern. For the quadratic forms there are two layouts:

* ``cell`` mode: the Gram matrices ``sum_i vec(W_i) vec(W_i)'`` are summed over the participants
  of each cell (pattern, or pattern x dialogue), so one evaluation costs O(cells), independent
  of the number of participants;
* ``group`` mode: the W_i are kept per participant (used when almost every participant has a
  pattern of its own, e.g. irregular measurement times, where cell Gram matrices would only
  waste memory).

References
----------
Bates, D., Mächler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects models
using lme4. Journal of Statistical Software 67(1), 1-48 (§3: the penalised least-squares
problem whose blocks these statistics summarise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

__all__ = ["SufficientStats", "compute_stats"]

# Groups per chunk when summing outer products: bounds the temporary to ~50 MB.
_CHUNK_BYTES = 50_000_000


@dataclass(frozen=True)
class SufficientStats:
    """Everything one deviance evaluation reads.

    Shapes: q random terms, p fixed effects, m = p (+ q_o columns of the outer factor's
    random-effects matrix Z_o, a column of ones for an outer intercept) + 1 (response) augmented
    columns, K patterns, D outer levels (1 without an outer factor), G participants, C cells.
    """

    n: int
    p: int
    q: int
    m: int
    i_one: int | None  # first of the q_o Z_o columns in the augmented matrix (outer factor only)
    i_y: int
    T: np.ndarray  # (K, q, q) Z_i'Z_i per pattern
    n_pat: np.ndarray  # (K,) participants per pattern
    pattern_of_group: np.ndarray  # (G,)
    outer_of_group: np.ndarray  # (G,) zeros without an outer factor
    D: int
    XX: np.ndarray  # (D, m, m) augmented cross-products per outer level
    W: np.ndarray  # (G, q, m) per-participant Z_i'[X_i, 1, y_i]
    mode: str
    # cell mode
    S: np.ndarray | None  # (C, q*q, m*m) summed outer products, index [a*q+b, i*m+j]
    pattern_of_cell: np.ndarray | None
    outer_of_cell: np.ndarray | None
    cell_of_group: np.ndarray | None
    cell_to_outer: sp.csr_matrix | None  # (D, C) indicator
    cell_to_pattern: sp.csr_matrix | None  # (K, C) indicator
    # group mode
    group_to_pattern: sp.csr_matrix | None  # (K, G) indicator
    outer_bounds: np.ndarray | None  # group order sorted by outer level and segment bounds
    group_order: np.ndarray | None
    q_outer: int = 0  # columns of Z_o (0 without an outer factor)

    @property
    def outer_cols(self) -> slice:
        """The Z_o columns of the augmented matrix."""
        start = self.i_one if self.i_one is not None else self.p
        return slice(start, start + self.q_outer)

    @property
    def K(self) -> int:
        """Number of distinct patterns."""
        return self.T.shape[0]

    @property
    def G(self) -> int:
        """Number of participants."""
        return self.W.shape[0]

    def contract_M(self, M: np.ndarray) -> np.ndarray:
        """Return ``sum_i W_i' M_{k(i)} W_i`` per outer level, shape (D, m, m)."""
        q, m = self.q, self.m
        if self.mode == "cell":
            assert self.S is not None and self.pattern_of_cell is not None
            if self.D == 1:
                # Cells are the patterns: one matrix-vector product over all of them.
                flat = self.S.reshape(-1, m * m)
                return (M.reshape(-1) @ flat).reshape(1, m, m)
            Mc = M[self.pattern_of_cell].reshape(-1, 1, q * q)
            per_cell = np.matmul(Mc, self.S)[:, 0, :]
            assert self.cell_to_outer is not None
            return np.asarray(self.cell_to_outer @ per_cell).reshape(self.D, m, m)
        Mg = M[self.pattern_of_group]
        tmp = np.matmul(Mg, self.W)  # (G, q, m)
        if self.D == 1:
            G = self.G
            return (self.W.reshape(G * q, m).T @ tmp.reshape(G * q, m)).reshape(1, m, m)
        out = np.empty((self.D, m, m))
        assert self.group_order is not None and self.outer_bounds is not None
        Wo, to = self.W[self.group_order], tmp[self.group_order]
        for d in range(self.D):
            s, e = self.outer_bounds[d], self.outer_bounds[d + 1]
            out[d] = Wo[s:e].reshape(-1, m).T @ to[s:e].reshape(-1, m)
        return out

    def contract_Phi(self, Phi: np.ndarray) -> np.ndarray:
        """Return ``sum_i W_i Phi_{d(i)} W_i'`` summed per pattern, shape (K, q, q)."""
        q, m = self.q, self.m
        if self.mode == "cell":
            assert self.S is not None and self.cell_to_pattern is not None
            if self.D == 1:
                return (self.S @ Phi[0].reshape(m * m)).reshape(self.K, q, q)
            else:
                assert self.outer_of_cell is not None
                Phic = Phi.reshape(self.D, m * m)[self.outer_of_cell]
                per_cell = np.matmul(self.S, Phic[:, :, None])[:, :, 0]
            return np.asarray(self.cell_to_pattern @ per_cell).reshape(self.K, q, q)
        if self.D == 1:
            tmp = np.matmul(self.W, Phi[0])  # (G, q, m)
            R = np.matmul(tmp, self.W.transpose(0, 2, 1))
        else:
            R = np.empty((self.G, q, q))
            assert self.group_order is not None and self.outer_bounds is not None
            for d in range(self.D):
                idx = self.group_order[self.outer_bounds[d] : self.outer_bounds[d + 1]]
                Wd = self.W[idx]
                R[idx] = np.matmul(np.matmul(Wd, Phi[d]), Wd.transpose(0, 2, 1))
        assert self.group_to_pattern is not None
        return np.asarray(self.group_to_pattern @ R.reshape(self.G, q * q)).reshape(self.K, q, q)

    def transform(self, P: np.ndarray, p_new: int) -> SufficientStats:
        """Statistics of the augmented columns ``[X, 1, y] @ P`` (same participants, same Z).

        Used for profiling a fixed effect: dropping column k of X and replacing y by
        ``y - b x_k`` is a linear map of the augmented columns, so no pass over the data is
        needed. ``P`` (m x m') must keep the layout [X', (1,) y'] with ``p_new`` columns of X'.
        """
        m_new = P.shape[1]
        W = self.W @ P
        XX = P.T[None] @ self.XX @ P[None]
        S = None if self.S is None else self.S @ np.kron(P, P)
        return replace(
            self,
            p=p_new,
            m=m_new,
            i_one=p_new if self.i_one is not None else None,
            i_y=m_new - 1,
            W=W,
            XX=XX,
            S=S,
        )

    def with_response(
        self, y: np.ndarray, X: np.ndarray, Z: np.ndarray, group: np.ndarray,
        Zo: np.ndarray | None = None,
    ) -> SufficientStats:
        """Same design, new response: only the y-dependent entries are recomputed.

        ``Zo`` is the outer factor's random-effects matrix (default: a column of ones).
        """
        W = self.W.copy()
        for a in range(self.q):
            W[:, a, self.i_y] = np.bincount(group, weights=Z[:, a] * y, minlength=self.G)
        XX = self.XX.copy()
        if self.i_one is not None and Zo is None:
            Zo = np.ones((y.size, 1))
        aug_y = _augmented_y_products(X, y, Zo if self.i_one is not None else None)
        if self.D == 1:
            XX[0, :, self.i_y] = aug_y.sum(axis=0)
        else:
            outer_row = self.outer_of_group[group]
            for j in range(self.m):
                XX[:, j, self.i_y] = np.bincount(outer_row, weights=aug_y[:, j], minlength=self.D)
        XX[:, self.i_y, :] = XX[:, :, self.i_y]
        S = None
        if self.mode == "cell":
            assert self.cell_of_group is not None
            S = _cell_grams(W, self.cell_of_group)
        return replace(self, W=W, XX=XX, S=S)


def _augmented_y_products(X: np.ndarray, y: np.ndarray, Zo: np.ndarray | None) -> np.ndarray:
    # Row-wise products of the response with every augmented column [X, Z_o, y].
    cols = [X * y[:, None]]
    if Zo is not None:
        cols.append(Zo * y[:, None])
    cols.append((y * y)[:, None])
    return np.hstack(cols)


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a float matrix and the inverse index, fast for many rows.

    A random projection gives a 1-D key that sorts quickly; a collision of different rows on
    the same projection is checked for and, if ever found, we fall back to numpy's row unique.
    """
    if keys.shape[1] == 1:
        uniq, inv = np.unique(keys[:, 0], return_inverse=True)
        return uniq[:, None], inv.ravel()
    rng = np.random.default_rng(20150101)
    proj = keys @ rng.standard_normal(keys.shape[1])
    _, first, inv = np.unique(proj, return_index=True, return_inverse=True)
    inv = inv.ravel()
    uniq = keys[first]
    if not np.array_equal(uniq[inv], keys):
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.ravel()
    return uniq, inv


def _cell_ids(pattern: np.ndarray, outer: np.ndarray, D: int) -> tuple[np.ndarray, np.ndarray]:
    key = pattern.astype(np.int64) * D + outer
    uniq, inv = np.unique(key, return_inverse=True)
    return uniq, inv.ravel()


def _cell_grams(W: np.ndarray, cell_of_group: np.ndarray) -> np.ndarray:
    """Sum vec(W_i) vec(W_i)' over the participants of each cell; shape (C, q*q, m*m)."""
    G, q, m = W.shape
    C = int(cell_of_group.max()) + 1
    order = np.argsort(cell_of_group, kind="stable")
    Wf = W[order].reshape(G, q * m)
    cells = cell_of_group[order]
    bounds = np.flatnonzero(np.diff(cells)) + 1
    starts = np.concatenate(([0], bounds))
    qm = q * m
    gram = np.zeros((C, qm, qm))
    if C <= 4096:
        # Few cells: one BLAS Gram product per cell beats materialising outer products.
        ends = np.concatenate((bounds, [G]))
        for s, e in zip(starts, ends, strict=True):
            gram[cells[s]] = Wf[s:e].T @ Wf[s:e]
    else:
        step = max(1, _CHUNK_BYTES // (8 * qm * qm))
        for s in range(0, G, step):
            e = min(G, s + step)
            outer = Wf[s:e, :, None] * Wf[s:e, None, :]
            local = np.flatnonzero(np.diff(cells[s:e])) + 1
            local_starts = np.concatenate(([0], local))
            summed = np.add.reduceat(outer, local_starts, axis=0)
            # A cell split across two chunks gets two contributions: add.at accumulates both.
            np.add.at(gram, cells[s:e][local_starts], summed)
    # Reorder [a, i, b, j] -> [a, b, i, j] so that M (q x q) and Phi (m x m) contract by matmul.
    g5 = gram.reshape(C, q, m, q, m).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(g5.reshape(C, q * q, m * m))


def _indicator(rows: np.ndarray, n_rows: int) -> sp.csr_matrix:
    n_cols = rows.shape[0]
    data = np.ones(n_cols)
    return sp.csr_matrix((data, (rows, np.arange(n_cols))), shape=(n_rows, n_cols))


def compute_stats(
    y: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    outer_of_group: np.ndarray | None = None,
    mode: str = "auto",
    Zo: np.ndarray | None = None,
) -> SufficientStats:
    """One pass over the data: per-participant products, patterns and cells.

    Parameters
    ----------
    y, X, Z : ndarray
        Response (n,), fixed (n, p) and random (n, q) design.
    group : ndarray of int
        Participant code per row, 0..n_groups-1, every code present.
    n_groups : int
        Number of participants.
    outer_of_group : ndarray of int, optional
        Outer (dialogue) code per participant for a nested outer factor.
    mode : {"auto", "cell", "group"}
        Layout of the quadratic forms (see module docstring); ``auto`` picks by cost.
    Zo : ndarray, optional
        The outer factor's random-effects matrix (n, q_o); default a column of ones (an outer
        random intercept).

    Returns
    -------
    SufficientStats
    """
    n, p = X.shape
    q = Z.shape[1]
    nested = outer_of_group is not None
    if nested and Zo is None:
        Zo = np.ones((n, 1))
    q_outer = Zo.shape[1] if nested and Zo is not None else 0
    i_one = p if nested else None
    m = p + q_outer + 1
    i_y = m - 1
    G = n_groups

    # Per-participant Z_i'Z_i (lower triangle) and Z_i'[X_i, 1, y_i] via weighted bincounts:
    # one sequential pass per entry, no Python loop over participants.
    aug_cols = [X[:, j] for j in range(p)]
    if nested:
        assert Zo is not None
        # A column of ones (outer intercept) needs no product: Z_i'1 is a plain sum.
        aug_cols += [None if np.all(Zo[:, j] == 1.0) else Zo[:, j] for j in range(q_outer)]
    aug_cols.append(y)
    W = np.empty((G, q, m))
    tri = [(a, b) for a in range(q) for b in range(a + 1)]
    Tflat = np.empty((G, len(tri)))
    if not nested:
        # One sparse pass: Zg (G*q x n, Zg[g*q + a, r] = Z[r, a] for the rows r of participant
        # g) times [X, y, Z] gives every Z_i'X_i, Z_i'y_i and Z_i'Z_i. Built column-wise (CSC),
        # which needs no sort of the rows.
        Zg = sp.csc_matrix(
            (np.ascontiguousarray(Z, dtype=float).ravel(),
             (group.astype(np.int64)[:, None] * q + np.arange(q)[None, :]).ravel(),
             np.arange(0, n * q + 1, q)),
            shape=(G * q, n),
        )
        # Column by column: a matrix operand would be copied to C order by scipy first.
        for j in range(p):
            W[:, :, j] = (Zg @ np.ascontiguousarray(X[:, j])).reshape(G, q)
        W[:, :, p] = (Zg @ y).reshape(G, q)
        for b in range(q):
            zb = (Zg @ np.ascontiguousarray(Z[:, b])).reshape(G, q)
            for k, (a, bb) in enumerate(tri):
                if bb == b:
                    Tflat[:, k] = zb[:, a]
    else:
        for a in range(q):
            za = Z[:, a]
            for j, col in enumerate(aug_cols):
                w = za if col is None else za * col
                W[:, a, j] = np.bincount(group, weights=w, minlength=G)
        for k, (a, b) in enumerate(tri):
            Tflat[:, k] = np.bincount(group, weights=Z[:, a] * Z[:, b], minlength=G)
    uniq, pattern_of_group = _unique_rows(Tflat)
    K = uniq.shape[0]
    T = np.empty((K, q, q))
    for k, (a, b) in enumerate(tri):
        T[:, a, b] = uniq[:, k]
        T[:, b, a] = uniq[:, k]
    n_pat = np.bincount(pattern_of_group, minlength=K).astype(float)

    if nested:
        assert outer_of_group is not None
        D = int(outer_of_group.max()) + 1
        outer_row = outer_of_group[group]
        aug = np.column_stack([X, Zo, y])
        XX = np.empty((D, m, m))
        for i in range(m):
            for j in range(i + 1):
                v = np.bincount(outer_row, weights=aug[:, i] * aug[:, j], minlength=D)
                XX[:, i, j] = v
                XX[:, j, i] = v
        og = outer_of_group.astype(np.intp)
    else:
        D = 1
        # Blockwise [X, y]'[X, y]: no (n x m) copy of the data.
        XX = np.empty((1, m, m))
        XX[0, :p, :p] = X.T @ X
        xy = X.T @ y
        XX[0, :p, p] = xy
        XX[0, p, :p] = xy
        XX[0, p, p] = y @ y
        og = np.zeros(G, dtype=np.intp)

    if nested:
        cell_keys, cell_of_group = _cell_ids(pattern_of_group, og, D)
        pattern_of_cell = (cell_keys // D).astype(np.intp)
        outer_of_cell = (cell_keys % D).astype(np.intp)
    else:
        cell_of_group = pattern_of_group
        pattern_of_cell = np.arange(K)
        outer_of_cell = np.zeros(K, dtype=np.intp)
    C = pattern_of_cell.shape[0]
    if mode == "auto":
        # Cell mode costs ~C (qm)^2 per evaluation and memory; group mode ~G q m (q + m).
        cell_cost = C * (q * m) ** 2
        group_cost = G * q * m * (q + m)
        mode = "cell" if cell_cost <= group_cost and cell_cost <= 2e7 else "group"

    S = cell_to_outer = cell_to_pattern = group_to_pattern = None
    group_order = outer_bounds = None
    if mode == "cell":
        S = _cell_grams(W, cell_of_group)
        cell_to_outer = _indicator(outer_of_cell, D)
        cell_to_pattern = _indicator(pattern_of_cell, K)
    else:
        group_to_pattern = _indicator(pattern_of_group, K)
        group_order = np.argsort(og, kind="stable")
        outer_bounds = np.searchsorted(og[group_order], np.arange(D + 1))

    return SufficientStats(
        n=n,
        p=p,
        q=q,
        m=m,
        i_one=i_one,
        i_y=i_y,
        T=T,
        n_pat=n_pat,
        pattern_of_group=pattern_of_group,
        outer_of_group=og,
        D=D,
        XX=XX,
        W=W,
        mode=mode,
        S=S,
        pattern_of_cell=pattern_of_cell if mode == "cell" else None,
        outer_of_cell=outer_of_cell if mode == "cell" else None,
        cell_of_group=cell_of_group if mode == "cell" else None,
        cell_to_outer=cell_to_outer,
        cell_to_pattern=cell_to_pattern,
        group_to_pattern=group_to_pattern,
        outer_bounds=outer_bounds,
        group_order=group_order,
        q_outer=q_outer,
    )
