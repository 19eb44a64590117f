"""Classical VAR-Granger baseline: per-shop OLS VAR(L) with F-test p-values per ordered pair.

For every shop, receiver ``j`` and candidate sender ``i`` (off-diagonal, inside an optional support mask):

- unrestricted regression: ``x_j(t)`` on an intercept, ``x_j(t-1..t-L)`` and ``x_k(t-1..t-L)`` for the
  conditioning senders ``k`` (``conditioning="full"``: every candidate sender of ``j``, i.e. a VAR(L) restricted to
  the support; ``"pairwise"``: only ``i``, the bivariate Granger test);
- restricted regression: the same without ``x_i``'s lags;
- ``F = ((RSS_r - RSS_u) / q) / (RSS_u / (n - k_u))`` with ``q = k_u - k_r`` (ranks of the designs) and
  ``p = P(F_{q, n - k_u} > F)``; the edge score is ``1 - p``.

Residual sums of squares come from a rank-revealing SVD of each design (batched over shops), so a constant or
collinear column lowers the rank (and the degrees of freedom) instead of breaking the fit. ``"auto"`` uses the full
conditional VAR when every unrestricted regression keeps at least ``MIN_RESID_DOF`` residual degrees of freedom
and falls back to pairwise tests otherwise (a full VAR over d = 20 nodes with 7 lags has more regressors than a
60-step series has observations).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import f as f_dist

from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError

__all__ = ["MIN_RESID_DOF", "granger_pvalues", "granger_scores"]

# An F-test with fewer residual degrees of freedom has almost no power and an unstable variance estimate.
MIN_RESID_DOF = 10


def _lagged(x: np.ndarray, n_lags: int) -> np.ndarray:
    """(R, T, d) -> (R, T - L, d, L): entry [..., t, k, l] = x[:, t + L - 1 - l, k] (lag l + 1)."""
    n = x.shape[1] - n_lags
    return np.stack([x[:, n_lags - 1 - lag : n_lags - 1 - lag + n] for lag in range(n_lags)], axis=-1)


def _rss(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual sum of squares and rank of OLS ``y ~ design``, batched over the leading axis.

    design (R, n, k), y (R, n) -> rss (R,), rank (R,).
    """
    u, s, _ = np.linalg.svd(design, full_matrices=False)
    # numpy's lstsq cut-off: singular values below eps * max(n, k) * s_max count as zero
    tol = np.finfo(np.float64).eps * max(design.shape[1:]) * s[:, :1]
    keep = s > tol
    proj = np.einsum("rnk,rn->rk", u, y) * keep
    rss = np.maximum(np.einsum("rn,rn->r", y, y) - np.einsum("rk,rk->r", proj, proj), 0.0)
    return rss, keep.sum(-1)


def _check(values, n_lags, mask, conditioning):
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise DataValidationError(
            f"values: expected shape (shops, time, nodes) or (time, nodes), got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise DataValidationError("values: contain NaN or inf; impute or drop those steps first")
    if isinstance(n_lags, bool) or not isinstance(n_lags, (int, np.integer)) or n_lags < 1:
        raise ConfigError(f"n_lags: must be an integer >= 1, got {n_lags!r}")
    d = x.shape[-1]
    pairs = ~np.eye(d, dtype=bool)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (d, d):
            raise GraphValidationError(f"mask: expected shape ({d}, {d}) indexed [src, dst], got {m.shape}")
        pairs &= m.astype(bool)
    if conditioning not in ("full", "pairwise", "auto"):
        raise ConfigError(f"conditioning: must be 'full', 'pairwise' or 'auto', got {conditioning!r}")
    return x, pairs


def granger_pvalues(values, n_lags: int = 7, *, mask=None, conditioning: str = "auto"):
    """F-test p-values ``P[r, src, dst]`` of "src Granger-causes dst" in every shop.

    Parameters
    ----------
    values : array-like, shape (R, T, d) or (T, d)
        Series (shop, time, node); the test is invariant to per-node affine scaling.
    n_lags : int
        L, lags of every regressor.
    mask : array-like of bool, shape (d, d), optional
        Candidate pairs ``[src, dst]``; pairs outside it (and the diagonal) get p = 1. Default: all off-diagonal.
    conditioning : {"auto", "full", "pairwise"}
        See the module docstring.

    Returns
    -------
    pvalues : ndarray, shape (R, d, d)
    used : str
        ``"full"`` or ``"pairwise"``, the conditioning actually used.

    Raises
    ------
    DataValidationError
        Non-finite values, or the series is too short for even the pairwise test
        (``T - L`` observations must exceed ``2 L + 1`` regressors).
    ConfigError, GraphValidationError
        Bad ``n_lags``, ``conditioning`` or ``mask``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(1, 300, 2))
    >>> x[0, 1:, 1] += 0.8 * x[0, :-1, 0]          # node 0 drives node 1 at lag 1
    >>> p, used = granger_pvalues(x, n_lags=2)
    >>> bool(p[0, 0, 1] < 1e-6), bool(p[0, 1, 0] > 0.01), used
    (True, True, 'full')
    """
    x, pairs = _check(values, n_lags, mask, conditioning)
    n_shops, n_steps, d = x.shape
    n_obs = n_steps - n_lags
    if n_obs - (2 * n_lags + 1) < 1:
        raise DataValidationError(
            f"values: {n_steps} steps leave {n_obs} observations for {2 * n_lags + 1} regressors of a pairwise "
            f"Granger test with n_lags={n_lags}; use fewer lags or a longer series"
        )
    n_senders = pairs.sum(0)
    k_full = 1 + n_lags * (1 + int(n_senders.max(initial=0)))
    used = conditioning
    if conditioning == "auto":
        used = "full" if n_obs - k_full >= MIN_RESID_DOF else "pairwise"
    elif conditioning == "full" and n_obs - k_full < 1:
        raise DataValidationError(
            f"values: {n_obs} observations cannot fit the full VAR's {k_full} regressors; "
            "use conditioning='pairwise' or 'auto', fewer lags, or a longer series"
        )
    lags = _lagged(x, n_lags)  # (R, n, d, L)
    ones = np.ones((n_shops, n_obs, 1))
    pv = np.ones((n_shops, d, d))
    for j in range(d):
        senders = np.flatnonzero(pairs[:, j])
        if senders.size == 0:
            continue
        y = x[:, n_lags:, j]
        own = lags[:, :, j, :]
        if used == "full":
            full = np.concatenate([ones, own, lags[:, :, senders, :].reshape(n_shops, n_obs, -1)], -1)
            rss_u, k_u = _rss(full, y)
        for pos, i in enumerate(senders):
            if used == "full":
                rest = np.delete(senders, pos)
                red = np.concatenate([ones, own, lags[:, :, rest, :].reshape(n_shops, n_obs, -1)], -1)
            else:
                red = np.concatenate([ones, own], -1)
                rss_u, k_u = _rss(np.concatenate([red, lags[:, :, i, :]], -1), y)
            rss_r, k_r = _rss(red, y)
            q, dof = k_u - k_r, n_obs - k_u
            ok = (q > 0) & (dof > 0) & (rss_u > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                stat = ((rss_r - rss_u) / q) / (rss_u / dof)
            pv[:, i, j] = np.where(
                ok, f_dist.sf(np.where(ok, stat, 0.0), np.maximum(q, 1), np.maximum(dof, 1)), 1.0
            )
    return pv, used


def granger_scores(values, n_lags: int = 7, *, mask=None, conditioning: str = "auto") -> np.ndarray:
    """Edge scores ``1 - p`` of :func:`granger_pvalues`, shape (R, d, d); 0 on the diagonal and outside ``mask``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(200, 3))
    >>> x[1:, 2] += 0.7 * x[:-1, 1]
    >>> s = granger_scores(x, n_lags=1)
    >>> s.shape, int(np.argmax(s[0]))   # flat index of [1, 2]
    ((1, 3, 3), 5)
    """
    pv, _ = granger_pvalues(values, n_lags, mask=mask, conditioning=conditioning)
    d = pv.shape[-1]
    return np.where(np.eye(d, dtype=bool), 0.0, 1.0 - pv)
