"""Reference forecasts a decoder has to beat: the last value, the shop's training mean, a least-squares AR(p), and a
least-squares VAR(p) restricted to a graph.

A decoder whose target MSE@7 does not beat the first three has learned nothing the graph could be credited with,
so the pipeline reports them beside every decoder. The graph-restricted VAR (:func:`fit_graph_var`, pooled over
shops or one per shop) is the linear ceiling of a graph: what a decoder given the same graph should at least
match. Each works on standardised series of one node and never looks at
the test region: the AR coefficients and the shop means are fitted on the steps before it.

Pure functions of arrays (no priors, no training loop), jittable, tested against NumPy references.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from dice_prob.errors import DataValidationError
from dice_prob.models.transforms import lag_stack

__all__ = [
    "ar_forecast",
    "fit_ar",
    "fit_graph_var",
    "graph_var_forecast",
    "mean_forecast",
    "persistence_forecast",
    "reference_label",
]


def reference_label(key: str, ar_lags: int | None = None) -> str:
    """Words for a reference forecast key (``persistence``, ``flat_mean``, ``ls_ar``) in warnings and reports.

    Examples
    --------
    >>> from dice_prob.models.forecast_baselines import reference_label
    >>> reference_label("ls_ar", 7)
    "a least-squares AR(7) of the target's own lags"
    """
    return {
        "persistence": "the last value",
        "flat_mean": "the shop's training mean",
        "ls_ar": f"a least-squares AR({ar_lags}) of the target's own lags",
    }[key]


def fit_ar(series, n_lags: int, *, shop_intercepts: bool = True):
    """Least-squares AR(``n_lags``) of a panel: lag coefficients shared by the shops, an intercept per shop.

    Parameters
    ----------
    series : array, shape (S, T)
        One node's series per shop (standardised), the fitting steps only.
    n_lags : int
        ``p >= 1``; every shop contributes its ``T - p`` steps that have ``p`` lags.
    shop_intercepts : bool
        One intercept per shop (a fixed-effects panel AR, default: shops differ in level) or one pooled intercept.

    Returns
    -------
    intercept : array, shape (S,)
        ``c_s`` (all equal when pooled).
    coef : array, shape (p,)
        ``[a_1, ..., a_p]`` with ``x_s(t) ~ c_s + sum_l a_l x_s(t - l)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from dice_prob.models.forecast_baselines import fit_ar
    >>> x = jnp.array([[1.0, 0.5, 0.25, 0.125, 0.0625], [3.0, 2.5, 2.25, 2.125, 2.0625]])  # c = 0 and 1, a = 0.5
    >>> c, a = fit_ar(x, 1)
    >>> print(np.round(np.asarray(c), 4) + 0.0, np.round(np.asarray(a), 4))  # + 0.0 turns -0.0 into 0.0
    [0. 1.] [0.5]
    """
    x = jnp.asarray(series)
    if x.ndim != 2:
        raise DataValidationError(f"series: expected shape (shops, steps), got {x.shape}")
    n_shops, n_steps = x.shape
    p = int(n_lags)
    n_coef = p + (n_shops if shop_intercepts else 1)
    if p < 1 or n_shops * (n_steps - p) < n_coef:
        raise DataValidationError(
            f"n_lags: an AR({p}) needs p >= 1 and at least {n_coef} fitting rows, but {n_shops} shop(s) x "
            f"{n_steps} steps give {max(0, n_shops * (n_steps - p))}; use fewer lags or a longer training period"
        )
    return _fit_ar(x, p, bool(shop_intercepts))


@partial(jax.jit, static_argnums=(1, 2))
def _fit_ar(x, p: int, shop_intercepts: bool):
    n_shops, n_steps = x.shape
    lags = jax.vmap(lambda s: lag_stack(s[:, None], p)[:, 0, :])(x)  # (S, T - p, p), lag 1 first
    dummies = jnp.eye(n_shops, dtype=x.dtype) if shop_intercepts else jnp.ones((n_shops, 1), x.dtype)
    dummies = jnp.broadcast_to(dummies[:, None, :], (n_shops, n_steps - p, dummies.shape[1]))
    design = jnp.concatenate([dummies, lags], axis=-1).reshape(n_shops * (n_steps - p), -1)
    coef, *_ = jnp.linalg.lstsq(design, x[:, p:].reshape(-1))
    k = dummies.shape[-1]
    return jnp.broadcast_to(coef[:k], (n_shops,)), coef[k:]


def ar_forecast(intercept, coef, history, horizon: int):
    """Iterate a fitted AR ``horizon`` steps from the end of each history, feeding back its own forecasts.

    Parameters
    ----------
    intercept : float or array, shape (N,)
        Each window's intercept (its shop's, from :func:`fit_ar`).
    coef : array, shape (p,)
        Lag coefficients from :func:`fit_ar`, lag 1 first.
    history : array, shape (N, W)
        The node's observed values up to each forecast origin, ``W >= p``.
    horizon : int (static)

    Returns
    -------
    array, shape (N, horizon)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from dice_prob.models.forecast_baselines import ar_forecast
    >>> print(np.round(np.asarray(ar_forecast(1.0, jnp.array([0.5]), jnp.array([[0.0, 4.0]]), 3)), 3))  # 1 + x/2
    [[3.   2.5  2.25]]
    """
    coef, history = jnp.asarray(coef), jnp.asarray(history)
    p = coef.shape[0]
    if coef.ndim != 1 or p < 1:
        raise DataValidationError(f"coef: expected shape (p,) with p >= 1, got {coef.shape}")
    if history.ndim != 2 or history.shape[1] < p:
        raise DataValidationError(f"history: expected shape (windows, W >= {p}), got {history.shape}")
    if int(horizon) < 1:
        raise DataValidationError(f"horizon: must be >= 1, got {horizon}")
    intercept = jnp.broadcast_to(jnp.asarray(intercept, history.dtype), history.shape[:1])
    return _ar_forecast(intercept, coef, history, int(horizon))


@partial(jax.jit, static_argnums=3)
def _ar_forecast(intercept, coef, history, horizon: int):
    p = coef.shape[0]
    buf = history[:, ::-1][:, :p]  # lag 1 first

    def step(buf, _):
        nxt = intercept + buf @ coef
        return jnp.concatenate([nxt[:, None], buf[:, :-1]], axis=1), nxt

    _, out = jax.lax.scan(step, buf, None, length=horizon)
    return out.T


def persistence_forecast(history, horizon: int):
    """The last observed value, held flat: (N, W) -> (N, horizon).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from dice_prob.models.forecast_baselines import persistence_forecast
    >>> persistence_forecast(jnp.array([[1.0, 3.0]]), 2).tolist()
    [[3.0, 3.0]]
    """
    history = jnp.asarray(history)
    return jnp.broadcast_to(history[:, -1:], (history.shape[0], int(horizon)))


def mean_forecast(series, shop, horizon: int):
    """Each window's shop mean over the fitting steps, held flat.

    Parameters
    ----------
    series : array, shape (S, T)
        The fitting steps of every shop (as in :func:`fit_ar`).
    shop : int array, shape (N,)
        The shop of each forecast window.
    horizon : int

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from dice_prob.models.forecast_baselines import mean_forecast
    >>> mean_forecast(jnp.array([[0.0, 2.0], [4.0, 4.0]]), jnp.array([1, 0]), 2).tolist()
    [[4.0, 4.0], [1.0, 1.0]]
    """
    level = jnp.asarray(series).mean(axis=1)[jnp.asarray(shop)]
    return jnp.broadcast_to(level[:, None], (level.shape[0], int(horizon)))


def fit_graph_var(series, graph, n_lags: int, *, per_shop: bool = True, ridge: float = 1e-6):
    """Least-squares VAR(``n_lags``) restricted to a graph: node ``i`` regressed on its own lags and the lags of its
    parents ``{j : graph[j, i] != 0}``, plus an intercept.

    Parameters
    ----------
    series : array, shape (S, T, d)
        Standardised values of every shop over the fitting steps only.
    graph : array, shape (d, d) or (S, d, d)
        ``A[src, dst]``; non-zero entries are edges, the diagonal is ignored (own lags are always in).
    n_lags : int
        ``p >= 1``.
    per_shop : bool
        One VAR per shop (slopes and intercept fitted on that shop's steps alone: shops whose effects differ in
        sign or size keep them) or one pooled over every shop (shared slopes and intercept; shop ``s`` uses the
        pooled fit along its own graph).
    ridge : float
        Penalty on the slopes relative to the mean diagonal of the normal equations, for numerical stability only
        (a zero-variance lag would otherwise make them singular).

    Returns
    -------
    intercept : array, shape (S, d)
    coef : array, shape (S, d, d, p)
        ``coef[s, j, i, l]``: effect of node ``j`` at lag ``l + 1`` on node ``i`` in shop ``s`` (``A[src, dst]``
        order); exactly 0 where ``j != i`` and ``graph[j, i] == 0``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from dice_prob.models.forecast_baselines import fit_graph_var
    >>> u = np.random.default_rng(0).normal(size=(1, 60, 1))
    >>> x = jnp.concatenate([u, 0.5 * jnp.roll(u, 1, axis=1)], axis=-1)  # x1(t) = 0.5 x0(t - 1)
    >>> c, a = fit_graph_var(x[:, 1:], jnp.array([[0.0, 1.0], [0.0, 0.0]]), 1)
    >>> print(np.round(np.asarray(a[0, :, 1, 0]), 3) + 0.0)  # effects on x1 at lag 1: from x0, from itself
    [0.5 0. ]
    >>> float(a[0, 1, 0, 0])  # x1 -> x0 is not an edge: exactly 0
    0.0
    """
    x = jnp.asarray(series)
    if x.ndim != 3:
        raise DataValidationError(f"series: expected shape (shops, steps, nodes), got {x.shape}")
    n_shops, n_steps, d = x.shape
    g = jnp.asarray(graph, dtype=x.dtype)
    if g.shape not in ((d, d), (n_shops, d, d)):
        raise DataValidationError(
            f"graph: expected shape ({d}, {d}) or ({n_shops}, {d}, {d}) for {n_shops} shop(s) of {d} nodes, "
            f"got {g.shape}"
        )
    p = int(n_lags)
    rows = n_steps - p if per_shop else n_shops * (n_steps - p)
    # the widest equation: own lags, its parents' lags and the intercept
    gb = np.broadcast_to(np.asarray(g) != 0, (n_shops, d, d)) | np.eye(d, dtype=bool)
    n_coef = int(gb.sum(axis=1).max()) * p + 1
    if p < 1 or rows < n_coef:
        raise DataValidationError(
            f"n_lags: a VAR({p}) whose widest equation has {n_coef} coefficients needs at least that many fitting "
            f"rows {'per shop' if per_shop else 'over all shops'}, got {max(0, rows)}; use fewer lags, a longer "
            "training period" + (" or per_shop=False" if per_shop else "")
        )
    if not math.isfinite(float(ridge)) or float(ridge) < 0:
        raise DataValidationError(f"ridge: must be a finite number >= 0, got {ridge}")
    g = jnp.broadcast_to(g, (n_shops, d, d))
    return _fit_graph_var(x, g, p, bool(per_shop), float(ridge))


@partial(jax.jit, static_argnums=(2, 3))
def _fit_graph_var(x, g, p: int, per_shop: bool, ridge: float):
    n_shops, n_steps, d = x.shape
    lags = jax.vmap(lambda s: lag_stack(s, p))(x)  # (S, T - p, d, p)
    design = lags.reshape(n_shops, n_steps - p, d * p)
    design = jnp.concatenate([design, jnp.ones((n_shops, n_steps - p, 1), x.dtype)], axis=-1)
    y = x[:, p:, :]  # (S, T - p, d)
    if not per_shop:
        design = design.reshape(1, -1, d * p + 1)
        y = y.reshape(1, -1, d)
    xtx = jnp.einsum("snk,snl->skl", design, design)  # (S or 1, k, k)
    xty = jnp.einsum("snk,sni->sik", design, y)  # (S or 1, d, k)
    eye = jnp.eye(d, dtype=x.dtype)

    def one(xtx_s, xty_s, g_s):
        lam = ridge * jnp.trace(xtx_s[:-1, :-1]) / (d * p) + 1e-12

        def node(i, xty_i):
            use = jnp.maximum(g_s[:, i] != 0, eye[i] > 0).astype(x.dtype)  # (d,) own lags and parents
            m = jnp.concatenate([jnp.repeat(use, p), jnp.ones((1,), x.dtype)])  # (d * p + 1,)
            pen = jnp.concatenate([jnp.full((d * p,), lam, x.dtype), jnp.zeros((1,), x.dtype)])
            # unused columns: zero rows/columns and a unit diagonal, so their coefficient solves to exactly 0
            a = xtx_s * m[:, None] * m[None, :] + jnp.diag(pen * m + (1.0 - m))
            return jnp.linalg.solve(a, xty_i * m) * m

        return jax.vmap(node)(jnp.arange(d), xty_s)  # (d, k): row i = equation of node i

    if per_shop:
        sol = jax.vmap(one)(xtx, xty, g)  # (S, d, k)
    else:
        sol = jax.vmap(one, in_axes=(None, None, 0))(xtx[0], xty[0], g)
    intercept = sol[..., -1]
    coef = sol[..., :-1].reshape(n_shops, d, d, p)  # [s, i (equation), j (source), l]
    return intercept, jnp.swapaxes(coef, 1, 2)


def graph_var_forecast(intercept, coef, history, horizon: int):
    """Iterate a graph-restricted VAR ``horizon`` steps from the end of each window, feeding back its own forecasts.

    Parameters
    ----------
    intercept : array, shape (N, d)
        Each window's intercepts (its shop's row of :func:`fit_graph_var`'s output).
    coef : array, shape (N, d, d, p)
        Each window's coefficients, ``coef[n, j, i, l]`` as returned by :func:`fit_graph_var`.
    history : array, shape (N, W, d)
        Observed values up to each forecast origin, ``W >= p``.
    horizon : int (static)

    Returns
    -------
    array, shape (N, horizon, d)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from dice_prob.models.forecast_baselines import graph_var_forecast
    >>> coef = jnp.array([[[[0.5], [1.0]], [[0.0], [0.0]]]])  # x0 <- 0.5 x0, x1 <- x0 (lag 1)
    >>> graph_var_forecast(jnp.zeros((1, 2)), coef, jnp.array([[[4.0, 0.0]]]), 2).tolist()
    [[[2.0, 4.0], [1.0, 2.0]]]
    """
    coef, history = jnp.asarray(coef), jnp.asarray(history)
    if coef.ndim != 4 or coef.shape[1] != coef.shape[2]:
        raise DataValidationError(f"coef: expected shape (windows, d, d, p), got {coef.shape}")
    n, d, _, p = coef.shape
    if history.ndim != 3 or history.shape[0] != n or history.shape[2] != d or history.shape[1] < p:
        raise DataValidationError(f"history: expected shape ({n}, W >= {p}, {d}), got {history.shape}")
    intercept = jnp.broadcast_to(jnp.asarray(intercept, history.dtype), (n, d))
    if int(horizon) < 1:
        raise DataValidationError(f"horizon: must be >= 1, got {horizon}")
    return _graph_var_forecast(intercept, coef, history, int(horizon))


@partial(jax.jit, static_argnums=3)
def _graph_var_forecast(intercept, coef, history, horizon: int):
    p = coef.shape[-1]
    buf = jnp.swapaxes(history[:, ::-1][:, :p], 1, 2)  # (N, d, p), lag 1 first

    def step(buf, _):
        nxt = intercept + jnp.einsum("njil,njl->ni", coef, buf)
        return jnp.concatenate([nxt[:, :, None], buf[:, :, :-1]], axis=2), nxt

    _, out = jax.lax.scan(step, buf, None, length=horizon)
    return jnp.swapaxes(out, 0, 1)
