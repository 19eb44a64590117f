"""VAR-Granger baseline: p-values against a hand-written OLS + F-distribution computation, recovery of a known VAR,
calibration under the null, the pairwise fallback and input validation."""

import numpy as np
import pytest
from scipy.stats import f as f_dist

from dice_prob.diagnostics.granger import MIN_RESID_DOF, granger_pvalues, granger_scores
from dice_prob.diagnostics.metrics import auroc
from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError


def _var(rng, n_shops, n_steps, weights, noise=1.0, burn=50):
    """Simulate x(t) = sum_l x(t-l) @ W[l] + e(t), W[l][src, dst]."""
    n_lags, d, _ = weights.shape
    x = np.zeros((n_shops, n_steps + burn, d))
    e = rng.normal(scale=noise, size=x.shape)
    for t in range(n_lags, n_steps + burn):
        x[:, t] = e[:, t] + sum(x[:, t - 1 - lag] @ weights[lag] for lag in range(n_lags))
    return x[:, burn:]


def _hand_p(x, i, j, n_lags, senders):
    """F-test p-value of i -> j for one series x (T, d), conditioning on `senders` (which include i)."""
    n = x.shape[0] - n_lags

    def design(nodes):
        cols = [np.ones(n)]
        for k in nodes:
            cols += [x[n_lags - 1 - lag : n_lags - 1 - lag + n, k] for lag in range(n_lags)]
        return np.column_stack(cols)

    y = x[n_lags:, j]
    full = design([j, *senders])
    red = design([j, *[k for k in senders if k != i]])
    rss_u = np.sum((y - full @ np.linalg.lstsq(full, y, rcond=None)[0]) ** 2)
    rss_r = np.sum((y - red @ np.linalg.lstsq(red, y, rcond=None)[0]) ** 2)
    q, dof = full.shape[1] - red.shape[1], n - full.shape[1]
    return f_dist.sf(((rss_r - rss_u) / q) / (rss_u / dof), q, dof)


@pytest.fixture(scope="module")
def known_var():
    rng = np.random.default_rng(0)
    w = np.zeros((2, 4, 4))
    w[0, 0, 2], w[1, 0, 2] = 0.5, 0.3  # 0 -> 2 at lags 1 and 2
    w[0, 1, 3] = -0.6  # 1 -> 3
    w[1, 2, 3] = 0.4  # 2 -> 3
    w[0, 3, 3] = 0.3  # own lag only
    truth = (np.abs(w).sum(0) > 0).astype(float) * (1 - np.eye(4))
    return _var(rng, 6, 400, w), truth


def test_pvalues_match_hand_ols_and_f_distribution(known_var):
    x, _ = known_var
    mask = ~np.eye(4, dtype=bool)
    mask[:, 0] = False  # node 0 is a pure root: nothing flows into it
    for conditioning in ("full", "pairwise"):
        pv, used = granger_pvalues(x, 2, mask=mask, conditioning=conditioning)
        assert used == conditioning
        for r in (0, 3):
            for i, j in ((0, 2), (2, 3), (3, 1), (1, 2)):
                senders = list(np.flatnonzero(mask[:, j])) if conditioning == "full" else [i]
                want = _hand_p(x[r], i, j, 2, senders)
                np.testing.assert_allclose(pv[r, i, j], want, rtol=1e-6, atol=1e-12)
        assert np.all(pv[:, :, 0] == 1.0) and np.all(pv[:, np.arange(4), np.arange(4)] == 1.0)


def test_recovers_known_var_and_is_calibrated_under_the_null(known_var):
    x, truth = known_var
    s = granger_scores(x, 2, conditioning="full")
    assert s.shape == (6, 4, 4)
    np.testing.assert_array_equal(s[:, np.arange(4), np.arange(4)], 0.0)
    assert np.min(auroc(s, truth)) == 1.0
    # null: independent white noise -> p-values uniform; 200 shops x 12 pairs, share below 0.05 near 0.05
    rng = np.random.default_rng(1)
    pv, _ = granger_pvalues(rng.normal(size=(200, 120, 4)), 2, conditioning="full")
    p = pv[:, ~np.eye(4, dtype=bool)]
    assert abs(np.mean(p < 0.05) - 0.05) < 0.015
    assert abs(np.mean(p) - 0.5) < 0.03


def test_auto_falls_back_to_pairwise_when_the_var_is_too_big():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 60, 10))
    _, used = granger_pvalues(x, 5)  # full VAR: 1 + 5 * 10 = 51 regressors for 55 observations
    assert used == "pairwise"
    _, used = granger_pvalues(x[..., :4], 2)  # 1 + 2 * 4 = 9 regressors for 58 observations
    assert used == "full" and 58 - 9 >= MIN_RESID_DOF
    with pytest.raises(DataValidationError, match="conditioning='pairwise'"):
        granger_pvalues(x, 6, conditioning="full")


def test_constant_sender_gives_no_evidence():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 80, 3))
    x[:, :, 0] = 1.0  # collinear with the intercept: rank drops, q = 0, p = 1
    pv, _ = granger_pvalues(x, 2)
    np.testing.assert_array_equal(pv[:, 0, :], 1.0)


def test_validation_errors():
    x = np.zeros((1, 30, 3)) + np.arange(30)[None, :, None]
    with pytest.raises(ConfigError, match="n_lags"):
        granger_pvalues(x, 0)
    with pytest.raises(ConfigError, match="conditioning"):
        granger_pvalues(x, 1, conditioning="ridge")
    with pytest.raises(GraphValidationError, match="mask"):
        granger_pvalues(x, 1, mask=np.ones((2, 2)))
    with pytest.raises(DataValidationError, match="fewer lags"):
        granger_pvalues(x[:, :10], 4)
    bad = x.copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        granger_pvalues(bad, 1)
