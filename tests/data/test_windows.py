"""Forecast windows: shapes, contents and a leak-free time split."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from dice_prob.data import windows as W
from dice_prob.errors import DataValidationError


@pytest.fixture()
def values():
    # value encodes (shop, time, node) so every slice can be checked exactly
    r, t, d = 3, 50, 4
    return (
        np.arange(r)[:, None, None] * 10000 + np.arange(t)[None, :, None] * 10 + np.arange(d)[None, None, :]
    )


@pytest.mark.parametrize("history,horizon", [(7, 7), (10, 1), (1, 3), (20, 7)])
@pytest.mark.parametrize("n_steps,frac", [(50, 0.2), (100, 0.2), (60, 0.3), (30, 0.1)])
def test_no_leakage(history, horizon, n_steps, frac):
    v = np.random.default_rng(0).normal(size=(2, n_steps, 3))
    if history + horizon + max(horizon, math.ceil(frac * n_steps)) > n_steps:  # no room for a train window
        with pytest.raises(DataValidationError, match="no 'train' window"):
            W.forecast_windows(v, history=history, horizon=horizon, split="train", test_fraction=frac)
        return
    tr = W.forecast_windows(v, history=history, horizon=horizon, split="train", test_fraction=frac)
    te = W.forecast_windows(v, history=history, horizon=horizon, split="test", test_fraction=frac)
    train_future_end = tr.origin.max() + horizon
    test_future_start = te.origin.min() + 1
    assert train_future_end < test_future_start  # every train future ends before every test future starts
    start = W.test_start(n_steps, frac, horizon)
    assert train_future_end <= start - 1 and test_future_start >= start
    # test futures cover the test region up to the last step; train windows never touch it
    assert te.origin.max() + horizon == n_steps - 1
    assert n_steps - start == max(horizon, math.ceil(frac * n_steps))
    # histories start at index >= 0
    assert tr.origin.min() - history + 1 == 0


def test_shapes_and_contents(values):
    w = W.forecast_windows(values, history=7, horizon=5, split="all", context=np.arange(6.0).reshape(3, 2))
    n_orig = 50 - 7 - 5 + 1
    assert w.history.shape == (3 * n_orig, 7, 4) and w.future.shape == (3 * n_orig, 5, 4)
    assert w.shop.shape == w.origin.shape == (3 * n_orig,) and w.context.shape == (3 * n_orig, 2)
    assert len(w) == 3 * n_orig
    for k in (0, 17, len(w) - 1):
        s, o = w.shop[k], w.origin[k]
        np.testing.assert_array_equal(w.history[k], values[s, o - 6 : o + 1])
        np.testing.assert_array_equal(w.future[k], values[s, o + 1 : o + 6])
        np.testing.assert_array_equal(w.context[k], [2 * s, 2 * s + 1])
    sub = w.take([0, 5])
    assert len(sub) == 2 and sub.context.shape == (2, 2)


def test_max_windows(values):
    a = W.forecast_windows(values, history=5, horizon=3, split="train", max_windows=10)
    assert len(a) == 10
    k1 = W.forecast_windows(
        values, history=5, horizon=3, split="train", max_windows=10, rng_key=jax.random.key(0)
    )
    k2 = W.forecast_windows(
        values, history=5, horizon=3, split="train", max_windows=10, rng_key=jax.random.key(0)
    )
    np.testing.assert_array_equal(k1.origin, k2.origin)
    np.testing.assert_array_equal(k1.shop, k2.shop)
    assert len(k1) == 10 and len(set(zip(k1.shop, k1.origin, strict=True))) == 10
    full = W.forecast_windows(values, history=5, horizon=3, split="train")
    assert W.forecast_windows(
        values, history=5, horizon=3, split="train", max_windows=10**6
    ).history.shape == (full.history.shape)


def test_errors(values):
    with pytest.raises(DataValidationError, match="values: expected"):
        W.forecast_windows(values[0], history=3, horizon=2)
    with pytest.raises(DataValidationError, match="history 45 \\+ horizon 7"):
        W.forecast_windows(values, history=45, horizon=7)
    with pytest.raises(DataValidationError, match="no 'train' window"):
        W.forecast_windows(values, history=35, horizon=7, split="train")
    with pytest.raises(DataValidationError, match="split"):
        W.forecast_windows(values, history=3, horizon=2, split="valid")
    with pytest.raises(DataValidationError, match="test_fraction"):
        W.forecast_windows(values, history=3, horizon=2, test_fraction=1.5)
    with pytest.raises(DataValidationError, match="history and horizon"):
        W.forecast_windows(values, history=0, horizon=2)


@pytest.mark.parametrize("horizon", [1, 7])
@pytest.mark.parametrize("min_origins", [1, 2, 8])
def test_max_history_is_the_longest_history_with_enough_training_origins(horizon, min_origins):
    """Brute force over histories: ``max_history`` is the last one whose train split has >= min_origins origins."""
    for n_steps in range(horizon + 2, 90):

        def n_train(h, n_steps=n_steps):
            if h + horizon > n_steps:
                return 0
            try:
                return W.window_origins(n_steps, history=h, horizon=horizon, split="train").size
            except DataValidationError:  # no train window at all
                return 0

        ok = [h for h in range(1, n_steps) if n_train(h) >= min_origins]
        assert W.max_history(n_steps, horizon, min_origins=min_origins) == (max(ok) if ok else 0), n_steps


def test_max_history_rejects_a_non_positive_origin_count():
    with pytest.raises(DataValidationError, match="min_origins"):
        W.max_history(50, 7, min_origins=0)


@pytest.mark.parametrize("val_fraction", [0.05, 0.2, 0.5, 0.74, 0.75, 0.8, 0.89])
def test_min_train_origins_is_the_fewest_that_survive_the_holdout(val_fraction):
    n = W.min_train_origins(val_fraction)
    assert n - W.holdout_origins(n, val_fraction) >= 1
    assert all(m - W.holdout_origins(m, val_fraction) < 1 for m in range(1, n))
