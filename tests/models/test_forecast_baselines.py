"""Reference forecasts: least-squares AR against NumPy, iterated forecasts against a plain loop."""

import numpy as np
import pytest

from dice_prob.errors import DataValidationError
from dice_prob.models.forecast_baselines import ar_forecast, fit_ar, mean_forecast, persistence_forecast


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
