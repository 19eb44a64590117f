"""Reference forecasts a decoder has to beat: the last value, the shop's training mean, a least-squares AR(p).

A decoder whose target MSE@7 does not beat these has learned nothing the graph could be credited with, so the
pipeline reports all three beside every decoder. Each works on standardised series of one node and never looks at
the test region: the AR coefficients and the shop means are fitted on the steps before it.

Pure functions of arrays (no priors, no training loop), jittable, tested against NumPy references.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from dice_prob.errors import DataValidationError
from dice_prob.models.transforms import lag_stack

__all__ = ["ar_forecast", "fit_ar", "mean_forecast", "persistence_forecast", "reference_label"]


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
