"""Forecast windows: (history, future) slices of a (shop, time, node) array with a time-based split.

A window with *origin* ``t0`` holds ``x[t0 - history + 1 .. t0]`` (the history, last observed step ``t0``) and
``x[t0 + 1 .. t0 + horizon]`` (the future to forecast). The split is in time: the last ``test_fraction`` of the
steps form the test region; ``"test"`` windows forecast into it, ``"train"`` windows have their whole future
before it, so nothing of the test region is seen in training.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from dice_prob.data.panel import DEFAULT_TEST_FRACTION
from dice_prob.errors import DataValidationError


@dataclasses.dataclass(frozen=True)
class Windows:
    """Stacked forecast windows.

    Attributes
    ----------
    history : ndarray, shape (N, W, d)
    future : ndarray, shape (N, H, d)
    shop : ndarray of int, shape (N,)
    origin : ndarray of int, shape (N,)  — index of the last observed step
    context : ndarray, shape (N, c), or None

    Examples
    --------
    >>> import numpy as np
    >>> from dice_prob.data.windows import forecast_windows
    >>> values = np.arange(2 * 20 * 3, dtype=float).reshape(2, 20, 3)  # 2 shops, 20 steps, 3 nodes
    >>> w = forecast_windows(values, history=5, horizon=2, split="test")
    >>> len(w), w.history.shape, w.future.shape, w.context is None
    (6, (6, 5, 3), (6, 2, 3), True)
    >>> sub = w.take([0, 4])
    >>> sub.shop, sub.origin
    (array([0, 1]), array([15, 16]))
    """

    history: np.ndarray
    future: np.ndarray
    shop: np.ndarray
    origin: np.ndarray
    context: np.ndarray | None

    def __len__(self) -> int:
        return int(self.history.shape[0])

    def take(self, idx) -> Windows:
        idx = np.asarray(idx)
        ctx = None if self.context is None else self.context[idx]
        return Windows(self.history[idx], self.future[idx], self.shop[idx], self.origin[idx], ctx)


def test_start(n_steps: int, test_fraction: float, horizon: int = 1) -> int:
    """First time index of the test region: the last ``test_fraction`` of the steps, but at least ``horizon``."""
    if not 0.0 < test_fraction < 1.0:
        raise DataValidationError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    return n_steps - max(horizon, math.ceil(test_fraction * n_steps))


test_start.__test__ = False  # a library function, not a pytest test (its name starts with "test")


def holdout_origins(n_origins: int, val_fraction: float) -> int:
    """Training origins the decoder's trainer holds out for early stopping: ``round(val_fraction * n)``, at least 1.

    Examples
    --------
    >>> from dice_prob.data.windows import holdout_origins
    >>> holdout_origins(8, 0.2), holdout_origins(3, 0.2)
    (2, 1)
    """
    return max(1, int(round(val_fraction * n_origins)))


def min_train_origins(val_fraction: float) -> int:
    """The fewest training origins that still leave one to train on after :func:`holdout_origins`.

    Examples
    --------
    >>> from dice_prob.data.windows import min_train_origins
    >>> min_train_origins(0.2), min_train_origins(0.8)
    (2, 3)
    """
    n = 2
    while n - holdout_origins(n, val_fraction) < 1:
        n += 1
    return n


def max_history(
    n_steps: int, horizon: int, *, min_origins: int = 1, test_fraction: float = DEFAULT_TEST_FRACTION
) -> int:
    """The longest window history that leaves at least ``min_origins`` training origins (0 when none does).

    Training origins run from ``history - 1`` to ``test_start - horizon - 1`` (:func:`window_origins`), so there
    are ``test_start - horizon - history + 1`` of them.

    Examples
    --------
    >>> from dice_prob.data.windows import max_history, window_origins
    >>> max_history(36, 7, min_origins=8)  # 36 weekly steps: test region from step 28
    14
    >>> window_origins(36, history=14, horizon=7, split="train").size
    8
    >>> max_history(10, 7)
    0
    """
    if min_origins < 1:
        raise DataValidationError(f"min_origins: must be >= 1, got {min_origins}")
    return max(0, test_start(n_steps, test_fraction, horizon) - horizon - min_origins + 1)


def window_origins(
    n_steps: int, *, history: int, horizon: int, split: str, test_fraction: float = DEFAULT_TEST_FRACTION
):
    """Valid origins ``t0`` for ``split`` in {'train', 'test', 'all'}.

    Examples
    --------
    >>> from dice_prob.data.windows import window_origins
    >>> window_origins(20, history=5, horizon=2, split="all")
    array([ 4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14, 15, 16, 17])
    >>> window_origins(20, history=5, horizon=2, split="train", test_fraction=0.2)  # futures end before step 16
    array([ 4,  5,  6,  7,  8,  9, 10, 11, 12, 13])
    >>> window_origins(20, history=5, horizon=2, split="test", test_fraction=0.2)
    array([15, 16, 17])
    >>> window_origins(6, history=5, horizon=2, split="all")
    Traceback (most recent call last):
        ...
    dice_prob.errors.DataValidationError: values: 6 time steps, but history 5 + horizon 2 needs at least 7; use a longer series or a shorter history/horizon
    """
    if history < 1 or horizon < 1:
        raise DataValidationError(f"history and horizon must be >= 1, got {history} and {horizon}")
    if n_steps < history + horizon:
        raise DataValidationError(
            f"values: {n_steps} time steps, but history {history} + horizon {horizon} needs at least "
            f"{history + horizon}; use a longer series or a shorter history/horizon"
        )
    first, last = history - 1, n_steps - horizon - 1
    if split == "all":
        return np.arange(first, last + 1)
    start = test_start(n_steps, test_fraction, horizon)
    if split == "train":
        origins = np.arange(first, min(last, start - horizon - 1) + 1)
    elif split == "test":
        origins = np.arange(max(first, start - 1), last + 1)
    else:
        raise DataValidationError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    if origins.size == 0:
        raise DataValidationError(
            f"values: {n_steps} time steps leave no '{split}' window for history {history}, horizon {horizon} "
            f"and test_fraction {test_fraction}; use a longer series or shorter history/horizon"
        )
    return origins


def forecast_windows(
    values,
    *,
    history: int,
    horizon: int,
    split: str = "test",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    context=None,
    max_windows: int | None = None,
    rng_key=None,
) -> Windows:
    """Every (shop, origin) window of ``split``; with ``max_windows``, a subset (random when ``rng_key`` is given,
    evenly spaced otherwise).

    Parameters
    ----------
    values : array, shape (R, T, d)
        Usually ``panel.scaled``.

    Examples
    --------
    >>> import numpy as np
    >>> from dice_prob.data.windows import forecast_windows
    >>> values = np.arange(2 * 20 * 3, dtype=float).reshape(2, 20, 3)  # 2 shops, 20 steps, 3 nodes
    >>> w = forecast_windows(values, history=5, horizon=2, split="test")
    >>> w.history.shape, w.future.shape
    ((6, 5, 3), (6, 2, 3))
    >>> w.shop, w.origin
    (array([0, 0, 0, 1, 1, 1]), array([15, 16, 17, 15, 16, 17]))
    >>> w.history[0, :, 0], w.future[0, :, 0]  # node 0 of shop 0: steps 11..15, then 16..17
    (array([33., 36., 39., 42., 45.]), array([48., 51.]))
    >>> sub = forecast_windows(values, history=5, horizon=2, split="train", max_windows=4)  # evenly spaced
    >>> sub.shop, sub.origin
    (array([0, 0, 1, 1]), array([ 4, 10,  7, 13]))
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3:
        raise DataValidationError(f"values: expected (shops, time, nodes), got shape {v.shape}")
    r_, t_, _ = v.shape
    origins = window_origins(t_, history=history, horizon=horizon, split=split, test_fraction=test_fraction)
    shop = np.repeat(np.arange(r_), origins.size)
    origin = np.tile(origins, r_)
    if max_windows is not None and max_windows < shop.size:
        if rng_key is not None:
            pick = np.sort(np.asarray(jax.random.choice(rng_key, shop.size, (max_windows,), replace=False)))
        else:
            pick = np.unique(np.linspace(0, shop.size - 1, max_windows).round().astype(int))
        shop, origin = shop[pick], origin[pick]
    hist_idx = origin[:, None] + np.arange(-history + 1, 1)[None, :]
    fut_idx = origin[:, None] + np.arange(1, horizon + 1)[None, :]
    hist = v[shop[:, None], hist_idx]
    fut = v[shop[:, None], fut_idx]
    ctx = None if context is None else np.asarray(context, dtype=np.float64)[shop]
    return Windows(hist, fut, shop, origin, ctx)
