"""Reference forecasts: least-squares AR and graph-restricted VAR against NumPy, iterated forecasts against a plain
loop."""

import numpy as np
import pytest

from dice_prob.errors import DataValidationError
from dice_prob.models.forecast_baselines import (
    ar_forecast,
    fit_ar,
    fit_graph_var,
    graph_var_forecast,
    mean_forecast,
    persistence_forecast,
)


def _ar_panel(rng, levels, coef, n_steps=120, noise=0.3):
    """One series per shop: x_s(t) = c_s + sum_l a_l x_s(t - l) + noise, each from a random start."""
    c, a = np.asarray(levels), np.asarray(coef)
    p = a.size
    x = np.zeros((c.size, n_steps))
    x[:, :p] = rng.normal(size=(c.size, p))
    for t in range(p, n_steps):
        x[:, t] = c + x[:, t - p : t][:, ::-1] @ a + noise * rng.normal(size=c.size)
    return x


def _numpy_fit(x, p, shop_intercepts):
    rows, ys = [], []
    n_shops = x.shape[0]
    for s in range(n_shops):
        dummy = np.eye(n_shops)[s] if shop_intercepts else np.ones(1)
        for t in range(p, x.shape[1]):
            rows.append(np.r_[dummy, x[s, t - p : t][::-1]])
            ys.append(x[s, t])
    coef = np.linalg.lstsq(np.asarray(rows), np.asarray(ys), rcond=None)[0]
    k = n_shops if shop_intercepts else 1
    return np.broadcast_to(coef[:k], (n_shops,)), coef[k:]


def _numpy_forecast(intercept, coef, history, horizon):
    p = coef.size
    out = np.zeros((history.shape[0], horizon))
    for n in range(history.shape[0]):
        buf = list(history[n, -p:][::-1])
        for h in range(horizon):
            nxt = intercept[n] + float(np.dot(coef, buf[:p]))
            out[n, h] = nxt
            buf = [nxt, *buf]
    return out


@pytest.mark.parametrize("shop_intercepts", [True, False])
def test_fit_ar_equals_numpy_least_squares(shop_intercepts):
    rng = np.random.default_rng(0)
    x = _ar_panel(rng, [0.2, -0.5, 1.0, 0.0, 0.3, -1.0], [0.5, -0.3, 0.15], n_steps=400)
    c, a = fit_ar(x, 3, shop_intercepts=shop_intercepts)
    c_ref, a_ref = _numpy_fit(x, 3, shop_intercepts)
    np.testing.assert_allclose(np.asarray(a), a_ref, atol=2e-4)
    np.testing.assert_allclose(np.asarray(c), c_ref, atol=2e-4)


def test_fit_ar_recovers_shop_levels_that_a_pooled_intercept_misses():
    rng = np.random.default_rng(2)
    levels, truth = np.array([0.3, -0.6, 1.2, 0.0]), np.array([0.5, -0.3, 0.15])
    x = _ar_panel(rng, levels, truth, n_steps=3000)
    c, a = fit_ar(x, 3)
    np.testing.assert_allclose(np.asarray(a), truth, atol=0.03)
    np.testing.assert_allclose(np.asarray(c), levels, atol=0.06)
    c_pool, a_pool = fit_ar(x, 3, shop_intercepts=False)
    assert np.ptp(np.asarray(c_pool)) == 0.0  # one intercept for every shop
    # the pooled fit cannot place the shops at their own levels, so its implied long-run means are all the same
    # and the fixed-effects fit's track each shop's sample mean
    implied = np.asarray(c) / (1.0 - np.asarray(a).sum())
    np.testing.assert_allclose(implied, x.mean(axis=1), atol=0.02)
    pooled_mean = float(np.asarray(c_pool)[0] / (1.0 - np.asarray(a_pool).sum()))
    assert np.max(np.abs(pooled_mean - x.mean(axis=1))) > 1.0


def test_ar_forecast_equals_a_plain_loop():
    rng = np.random.default_rng(1)
    coef = np.array([0.6, -0.2, 0.1, 0.05])
    history = rng.normal(size=(9, 12))
    intercept = rng.normal(size=9)
    np.testing.assert_allclose(
        np.asarray(ar_forecast(intercept, coef, history, 7)),
        _numpy_forecast(intercept, coef, history, 7),
        atol=1e-5,
    )


def test_persistence_and_mean_forecasts():
    history = np.array([[0.0, 1.0, 2.0], [5.0, 4.0, -1.0]])
    np.testing.assert_array_equal(np.asarray(persistence_forecast(history, 3)), [[2.0] * 3, [-1.0] * 3])
    train = np.array([[1.0, 3.0, 5.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(
        np.asarray(mean_forecast(train, np.array([1, 0, 1]), 2)), [[1, 1], [3, 3], [1, 1]]
    )


def test_bad_inputs_name_the_field():
    with pytest.raises(DataValidationError, match="n_lags"):
        fit_ar(np.zeros((1, 4)), 3)  # one fitting row for four coefficients
    with pytest.raises(DataValidationError, match="series"):
        fit_ar(np.zeros(10), 2)
    with pytest.raises(DataValidationError, match="n_lags"):
        fit_ar(np.zeros((3, 3)), 2)  # three rows for three intercepts and two lags
    with pytest.raises(DataValidationError, match="history"):
        ar_forecast(0.0, np.zeros(3), np.zeros((2, 2)), 3)
    with pytest.raises(DataValidationError, match="coef"):
        ar_forecast(0.0, np.zeros((2, 2)), np.zeros((2, 2)), 3)
    with pytest.raises(DataValidationError, match="horizon"):
        ar_forecast(0.0, np.zeros(1), np.zeros((2, 2)), 0)


def _var_panel(rng, coef, intercept, n_steps=300, noise=0.3):
    """x_s(t) = c_s + sum_{j,l} coef[s, j, :, l] x_s,j(t - l - 1) + noise; coef (S, d, d, p) in A[src, dst] order."""
    n_shops, d, _, p = coef.shape
    x = np.zeros((n_shops, n_steps, d))
    x[:, :p] = rng.normal(size=(n_shops, p, d))
    for t in range(p, n_steps):
        lagged = x[:, t - p : t][:, ::-1]  # (S, p, d), lag 1 first
        x[:, t] = intercept + np.einsum("sjil,slj->si", coef, lagged) + noise * rng.normal(size=(n_shops, d))
    return x


def _numpy_graph_var(x, graph, p, per_shop):
    """Equation by equation: np.linalg.lstsq on own lags, parents' lags and an intercept."""
    n_shops, n_steps, d = x.shape
    g = np.broadcast_to(graph, (n_shops, d, d))
    c_out, a_out = np.zeros((n_shops, d)), np.zeros((n_shops, d, d, p))
    for s in range(n_shops):
        fit_shops = [s] if per_shop else range(n_shops)
        for i in range(d):
            cols = [j for j in range(d) if j == i or g[s, j, i] != 0]
            rows, ys = [], []
            for q in fit_shops:
                for t in range(p, n_steps):
                    rows.append(np.r_[[x[q, t - lag, j] for j in cols for lag in range(1, p + 1)], 1.0])
                    ys.append(x[q, t, i])
            sol = np.linalg.lstsq(np.asarray(rows), np.asarray(ys), rcond=None)[0]
            c_out[s, i] = sol[-1]
            a_out[s, cols, i, :] = sol[:-1].reshape(len(cols), p)
    return c_out, a_out


def _random_var(rng, n_shops, d, p, graph):
    """Stable per-shop VAR coefficients along ``graph`` (S, d, d), own lags included, signs differing by shop."""
    coef = rng.uniform(-0.25, 0.25, size=(n_shops, d, d, p)) / p
    mask = (graph != 0) | np.eye(d, dtype=bool)
    return coef * mask[..., None]


@pytest.mark.parametrize("per_shop", [True, False])
def test_fit_graph_var_equals_numpy_least_squares(per_shop):
    rng = np.random.default_rng(3)
    n_shops, d, p = 3, 4, 2
    graph = (rng.uniform(size=(n_shops, d, d)) < 0.4).astype(float)
    graph[:, np.arange(d), np.arange(d)] = 1.0  # a diagonal in the input is ignored (own lags are always in)
    x = _var_panel(rng, _random_var(rng, n_shops, d, p, graph), rng.normal(size=(n_shops, d)))
    c, a = fit_graph_var(x, graph, p, per_shop=per_shop, ridge=0.0)
    c_ref, a_ref = _numpy_graph_var(x, graph, p, per_shop)
    np.testing.assert_allclose(np.asarray(a), a_ref, atol=2e-4)
    np.testing.assert_allclose(np.asarray(c), c_ref, atol=2e-4)
    off = (graph == 0) & ~np.eye(d, dtype=bool)
    assert np.all(np.asarray(a)[off] == 0.0)  # no edge -> exactly no coefficient


def test_per_shop_graph_var_keeps_effects_of_opposite_sign_that_pooling_cancels():
    rng = np.random.default_rng(4)
    graph = np.array([[0.0, 1.0], [0.0, 0.0]])  # x0 -> x1
    coef = np.zeros((2, 2, 2, 1))
    coef[:, 0, 0, 0] = 0.5
    coef[0, 0, 1, 0], coef[1, 0, 1, 0] = 0.8, -0.8  # the edge's sign flips between the two shops
    x = _var_panel(rng, coef, np.zeros((2, 2)), n_steps=2000, noise=0.2)
    _, a_shop = fit_graph_var(x, graph, 1)
    _, a_pool = fit_graph_var(x, graph, 1, per_shop=False)
    np.testing.assert_allclose(np.asarray(a_shop)[:, 0, 1, 0], [0.8, -0.8], atol=0.05)
    assert abs(float(a_pool[0, 0, 1, 0])) < 0.1  # one slope for both shops averages the signs away


def test_graph_var_forecast_equals_a_plain_loop():
    rng = np.random.default_rng(5)
    n, d, p, horizon = 6, 3, 2, 5
    coef = rng.normal(scale=0.3, size=(n, d, d, p))
    intercept = rng.normal(size=(n, d))
    history = rng.normal(size=(n, 9, d))
    ref = np.zeros((n, horizon, d))
    for w in range(n):
        buf = list(history[w][::-1])  # lag 1 first
        for h in range(horizon):
            nxt = intercept[w] + sum(buf[lag] @ coef[w, :, :, lag] for lag in range(p))
            ref[w, h] = nxt
            buf = [nxt, *buf]
    np.testing.assert_allclose(
        np.asarray(graph_var_forecast(intercept, coef, history, horizon)), ref, atol=1e-5
    )


def test_graph_var_bad_inputs_name_the_field():
    with pytest.raises(DataValidationError, match="series"):
        fit_graph_var(np.zeros((5, 3)), np.zeros((3, 3)), 1)
    with pytest.raises(DataValidationError, match="graph"):
        fit_graph_var(np.zeros((2, 30, 3)), np.zeros((4, 4)), 1)
    with pytest.raises(DataValidationError, match="n_lags"):
        fit_graph_var(np.zeros((2, 6, 3)), np.ones((3, 3)), 2)  # 4 rows per shop for 7 coefficients
    fit_graph_var(np.ones((2, 6, 3)), np.zeros((3, 3)), 2)  # own lags only: 3 coefficients fit in 4 rows
    with pytest.raises(DataValidationError, match="ridge"):
        fit_graph_var(np.zeros((1, 30, 2)), np.zeros((2, 2)), 1, ridge=-1.0)
    with pytest.raises(DataValidationError, match="history"):
        graph_var_forecast(np.zeros((1, 2)), np.zeros((1, 2, 2, 3)), np.zeros((1, 2, 2)), 1)
    with pytest.raises(DataValidationError, match="coef"):
        graph_var_forecast(np.zeros((1, 2)), np.zeros((1, 2, 3, 1)), np.zeros((1, 2, 2)), 1)
    with pytest.raises(DataValidationError, match="horizon"):
        graph_var_forecast(np.zeros((1, 2)), np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2)), 0)
