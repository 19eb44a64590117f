"""Pure, jittable media transforms (LightweightMMM-style): adstock, carryover kernel, Hill curve, lag stacks.

Every function here is a pure JAX function of arrays: no Python control flow on values, safe under ``jax.jit``
and ``jax.vmap``. Time runs along axis 0 of ``x``; trailing axes are channels/nodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["carryover_kernel", "geometric_adstock", "hill", "hill_zscore", "lag_stack", "apply_kernel"]


def geometric_adstock(x, retention, *, normalise: bool = True):
    """Geometric adstock ``a(t) = x(t) + r * a(t-1)`` (recursive, infinite memory), along axis 0.

    Parameters
    ----------
    x : array, shape (T, ...)
        Input series (for example spends), time first.
    retention : float or array broadcastable to ``x.shape[1:]``
        Retention rate ``r`` in [0, 1).
    normalise : bool
        Multiply by ``1 - r`` so that a constant input ``c`` converges to ``c`` (total weight 1).

    Returns
    -------
    array, shape (T, ...)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> geometric_adstock(jnp.array([1.0, 0.0, 0.0]), 0.5, normalise=False).tolist()
    [1.0, 0.5, 0.25]
    """
    x = jnp.asarray(x)
    r = jnp.asarray(retention, dtype=x.dtype)

    def step(carry, xt):
        a = xt + r * carry
        return a, a

    _, out = lax.scan(step, jnp.zeros(x.shape[1:], x.dtype) + 0.0 * r, x)
    return out * (1.0 - r) if normalise else out


def carryover_kernel(n_lags: int, retention, delay=0.0):
    """Normalised delayed-geometric carryover kernel over lags ``l = 1..L``.

    ``kappa(l) ∝ retention ** ((l - 1 - delay) ** 2)`` (LightweightMMM's carryover shape, with the peak at lag
    ``1 + delay``), normalised to sum to 1 over the ``L`` lags, so the effect size lives in a separate
    coefficient. ``delay = 0`` and small retention put almost all weight on lag 1.

    Parameters
    ----------
    n_lags : int (static)
        ``L``.
    retention : array, shape (...)
        In (0, 1).
    delay : array broadcastable with ``retention``
        Peak delay in lags, >= 0.

    Returns
    -------
    array, shape (..., L)
        Non-negative weights summing to one along the last axis; entry ``l - 1`` is lag ``l``.

    Examples
    --------
    >>> k = carryover_kernel(3, 0.5, 0.0)
    >>> [round(float(v), 4) for v in k]
    [0.64, 0.32, 0.04]
    """
    r = jnp.asarray(retention)
    dl = jnp.asarray(delay, dtype=r.dtype)
    lags = jnp.arange(n_lags, dtype=r.dtype)
    r, dl = jnp.broadcast_arrays(r, dl)
    logr = jnp.log(jnp.clip(r, 1e-12, 1.0))[..., None]
    logw = logr * (lags - dl[..., None]) ** 2
    logw = logw - jnp.max(logw, axis=-1, keepdims=True)
    w = jnp.exp(logw)
    return w / jnp.sum(w, axis=-1, keepdims=True)


def hill(x, half_max, slope):
    """Hill saturation ``x^n / (x^n + K^n)`` for non-negative ``x`` (0 at 0, 1/2 at ``K``, -> 1).

    Parameters
    ----------
    x : array
        Non-negative inputs (negative entries are clipped to 0).
    half_max : array broadcastable to ``x``
        ``K > 0``, the input at half saturation.
    slope : array broadcastable to ``x``
        ``n > 0``, the shape (``n <= 1`` concave, ``n > 1`` S-shaped).

    Examples
    --------
    >>> float(hill(2.0, 2.0, 1.5))
    0.5
    """
    x, logratio = _hill_logratio(x, half_max, slope)
    # x^n / (x^n + K^n) = 1 / (1 + (K/x)^n)
    return jnp.where(x > 0, 1.0 / (1.0 + jnp.exp(logratio)), 0.0)


def _hill_logratio(x, half_max, slope):
    """``x`` clipped to ``>= 0`` and ``n log(K / x)``, clipped to +-60: the log form keeps the gradient stable
    near 0 (meaningless where ``x == 0``; callers mask it there)."""
    x = jnp.clip(jnp.asarray(x), 0.0, None)
    logratio = jnp.asarray(slope) * (jnp.log(jnp.asarray(half_max)) - jnp.log(jnp.clip(x, 1e-30, None)))
    return x, jnp.clip(logratio, -60.0, 60.0)


def hill_zscore(x, half_max, slope, *, axis):
    """The Hill curve :func:`hill` of ``x``, z-scored over ``axis`` (mean 0, sd 1 along it).

    The z-score is computed from whichever of ``hill`` and its complement ``1 - hill`` is the smaller on
    average (the complement's z-score is minus the curve's): past saturation (``K << x``) the curve is ``1 -
    tiny`` and float32 would lose the ``tiny`` that carries all of its variation. A slice with (numerically)
    constant output (sd below 1e-4 of its mean) keeps its centred values, about 0, unscaled.

    Parameters
    ----------
    x : array
        Non-negative inputs (negative entries are clipped to 0).
    half_max, slope : arrays broadcastable to ``x``
        ``K > 0`` and ``n > 0``, as in :func:`hill`.
    axis : int or tuple of ints
        The axes to standardise over (for example time and lags).

    Examples
    --------
    >>> import numpy as np
    >>> z = hill_zscore(np.array([0.1, 0.2, 0.4, 0.8]), 0.3, 2.0, axis=0)
    >>> bool(abs(float(z.mean())) < 1e-6), round(float(z.std()), 4)
    (True, 1.0)
    """
    x, logratio = _hill_logratio(x, half_max, slope)
    pos = x > 0
    curve = jnp.where(pos, jax.nn.sigmoid(-logratio), 0.0)  # x^n / (x^n + K^n)
    complement = jnp.where(pos, jax.nn.sigmoid(logratio), 1.0)  # K^n / (x^n + K^n), exact where curve ~ 1

    def zscore(a):
        mean = jnp.mean(a, axis=axis, keepdims=True)
        c = a - mean
        var = jnp.mean(c * c, axis=axis, keepdims=True)
        # relative: a constant slice still shows rounding noise ~1e-7 of its level in float32. The where sits
        # inside the sqrt: sqrt'(0) is infinite, and 0 * inf would put NaN into the gradient of a constant slice
        varying = var > (1e-4 * mean) ** 2 + 1e-30
        return c / jnp.sqrt(jnp.where(varying, var, 1.0))

    use_complement = jnp.mean(curve, axis=axis, keepdims=True) > 0.5
    return jnp.where(use_complement, -zscore(complement), zscore(curve))


def lag_stack(x, n_lags: int):
    """Stack lags ``1..L`` of ``x``: ``out[t, i, l-1] = x[t + L - l, i]``.

    Row ``t`` of the output belongs to time ``t + L`` of ``x`` (the first ``L`` steps have no full history),
    and lag ``l`` is ``x(t_abs - l)``.

    Parameters
    ----------
    x : array, shape (T, d)
    n_lags : int (static)
        ``L >= 1`` and ``L < T``.

    Returns
    -------
    array, shape (T - L, d, L)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> lag_stack(jnp.arange(5.0)[:, None], 2)[:, 0, :].tolist()
    [[1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]
    """
    x = jnp.asarray(x)
    t = x.shape[0]
    if not 1 <= n_lags < t:
        raise ValueError(f"n_lags: must be in [1, {t - 1}] for a series of {t} steps, got {n_lags}")
    cols = [x[n_lags - l : t - l] for l in range(1, n_lags + 1)]
    return jnp.stack(cols, axis=-1)


def apply_kernel(lags, kernel):
    """Weighted sum over the lag axis: ``sum_l kernel[..., l] * lags[..., l]``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from dice_prob.models.transforms import apply_kernel
    >>> lags = jnp.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])  # two series, lags 1..3
    >>> print(apply_kernel(lags, jnp.array([0.5, 0.3, 0.2])))
    [1.7 0.3]
    """
    return jnp.sum(jnp.asarray(lags) * jnp.asarray(kernel), axis=-1)
