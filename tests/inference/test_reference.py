"""Exact-enumeration reference sampler, and agreement of the marginalised NUTS sampler with it."""

from __future__ import annotations

import warnings

import jax
import numpy as np
import pytest

import dice_prob as dp
from dice_prob.errors import ConfigError, ConvergenceWarning, DataValidationError
from dice_prob.inference.reference import exact_pips
from dice_prob.inference.stage1 import fit_graph

ROLES = ["channel", "channel", "intermediate", "target"]


def _panel(seed=3, t=80):
    """d = 4, 5 candidate edges, weak-to-moderate effects so that several PIPs are far from 0 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(t, 4))
    for k in range(2, t):
        x[k, 2] += 0.3 * x[k - 1, 2] + 0.35 * x[k - 1, 0] + 0.1 * x[k - 2, 1]
        x[k, 3] += 0.4 * x[k - 1, 3] + 0.3 * x[k - 1, 2] + 0.15 * x[k - 2, 0]
    return dp.Panel(x, roles=ROLES)


CFG = dp.Stage1Config(n_lags=2, noise_sd=0.9, num_warmup=300, num_samples=600, progress_bar=False)


def test_exact_pips_basic_properties():
    pip = exact_pips(_panel(), config=CFG)
    mask = _panel().support_mask()
    assert pip.shape == (4, 4) and np.all(pip[~mask] == 0)
    assert np.all((pip[mask] > 0) & (pip[mask] < 1))
    # the strongest effect (x2 -> x3) is clearly in, the absent x1 -> x2 weak one is not
    assert pip[2, 3] > 0.7 and pip[1, 2] < 0.5


def test_exact_pips_single_edge_matches_closed_form():
    """One candidate edge: PIP = pi-integrated ratio of two Gaussian marginal likelihoods, done by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    x[1:, 1] += 0.25 * x[:-1, 0]
    p = dp.Panel(x, roles=["channel", "target"], train_steps=50)  # the hand computation uses all 50 steps
    cfg = dp.Stage1Config(n_lags=1, noise_sd=1.0, learn_slab=False, slab_grid=(1.0,))
    z = (x - x.mean(0)) / x.std(0)
    y, X = z[1:, 1], np.column_stack([np.ones(49), z[:-1, 1], z[:-1, 0]])

    def log_ml(v):
        cov = np.eye(49) + X @ np.diag([1.0, 0.25, v]) @ X.T
        sign, logdet = np.linalg.slogdet(cov)
        return -0.5 * (logdet + y @ np.linalg.solve(cov, y))

    # Beta(1, 1) prior on pi with one edge: prior P(z = 1) = 1/2
    expected = 1 / (1 + np.exp(log_ml(0.01**2) - log_ml(0.5**2)))
    assert abs(exact_pips(p, config=cfg)[0, 1] - expected) < 1e-6


@pytest.mark.parametrize("lag_decay", [0.0, 1.0, 2.0])
def test_exact_pips_minnesota_lag_decay_matches_closed_form(lag_decay):
    """Two lags of one candidate edge: the lag-l weight's prior sd is slab * l**-lag_decay (spike likewise); the
    PIP is the ratio of two Gaussian marginal likelihoods with those per-lag prior variances, done by hand."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    x[2:, 1] += 0.2 * x[1:-1, 0] + 0.15 * x[:-2, 0]
    p = dp.Panel(x, roles=["channel", "target"], train_steps=60)
    cfg = dp.Stage1Config(n_lags=2, noise_sd=1.0, learn_slab=False, lag_decay=lag_decay, slab_grid=(1.0,))
    z = (x - x.mean(0)) / x.std(0)
    n = 58
    y = z[2:, 1]
    X = np.column_stack([np.ones(n), z[1:-1, 1], z[1:-1, 0], z[:-2, 0]])
    f = np.array([1.0, 2.0**-lag_decay])

    def log_ml(sd):
        cov = np.eye(n) + X @ np.diag([1.0, 0.25, *(sd * f) ** 2]) @ X.T
        sign, logdet = np.linalg.slogdet(cov)
        return -0.5 * (logdet + y @ np.linalg.solve(cov, y))

    expected = 1 / (1 + np.exp(log_ml(0.01) - log_ml(0.5)))
    assert abs(exact_pips(p, config=cfg)[0, 1] - expected) < 1e-5


def test_exact_pips_scale_mixture_slab_matches_closed_form():
    """One candidate edge with the slab an equal-weight mixture over slab_grid: the slab's marginal likelihood is
    the mean of the Gaussian ones over the grid's scales, done by hand."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    x[1:, 1] += 0.1 * x[:-1, 0]
    p = dp.Panel(x, roles=["channel", "target"], train_steps=50)
    grid = (0.125, 0.5, 1.0)
    cfg = dp.Stage1Config(n_lags=1, noise_sd=1.0, learn_slab=False, slab_grid=grid)
    z = (x - x.mean(0)) / x.std(0)
    y, X = z[1:, 1], np.column_stack([np.ones(49), z[:-1, 1], z[:-1, 0]])

    def ml(v):
        cov = np.eye(49) + X @ np.diag([1.0, 0.25, v]) @ X.T
        sign, logdet = np.linalg.slogdet(cov)
        return np.exp(-0.5 * (logdet + y @ np.linalg.solve(cov, y)))

    slab_ml = np.mean([ml((0.5 * m) ** 2) for m in grid])
    expected = slab_ml / (slab_ml + ml(0.01**2))
    got = exact_pips(p, config=cfg)[0, 1]
    assert abs(got - expected) < 1e-6
    # and it differs from the plain slab's (the mixture matters for a small effect)
    assert abs(exact_pips(p, config=cfg.replace(slab_grid=(1.0,)))[0, 1] - got) > 0.05


def test_exact_pips_errors():
    with pytest.raises(ConfigError, match="mode"):
        exact_pips(_panel(), config=dp.Stage1Config(n_lags=2, noise_sd=1.0, mode="mmm"))
    big = dp.Panel(np.random.default_rng(0).normal(size=(30, 6)))  # 5 intermediates + target: 25 edges
    with pytest.raises(DataValidationError, match="at most"):
        exact_pips(big, config=dp.Stage1Config(n_lags=1, noise_sd=1.0))


@pytest.mark.parametrize(
    ("edge_sampler", "grid", "flips"),
    [
        ("collapsed", (1.0,), 0),
        ("collapsed", (0.25, 1.0), 0),
        ("single", (1.0,), 0),
        ("collapsed", (1.0,), 4),
    ],
)
def test_marginalised_nuts_agrees_with_exact_enumeration(edge_sampler, grid, flips):
    """Both edge updates, with the learned slab sd (integrated by quadrature in the reference); the collapsed
    sampler also with a two-component scale-mixture slab (the single sweep supports the plain slab only) and
    with joint flip moves (indicators only here: the residual sd is fixed)."""
    panel = _panel()
    cfg = CFG.replace(edge_sampler=edge_sampler, slab_grid=grid, flip_moves=flips)
    ref = exact_pips(panel, config=cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = fit_graph(jax.random.key(0), panel, config=cfg)
    mask = panel.support_mask()
    diff = np.abs(post.pip[0][mask] - ref[mask])
    assert diff.max() < 0.1, (post.pip[0][mask], ref[mask])


def test_collapsed_sampler_moves_between_co_moving_channels():
    """Two channels with correlation ~0.97; only the first drives the target. The exact posterior splits
    between them; the collapsed indicator update (coefficients integrated out) must reproduce it."""
    rng = np.random.default_rng(4)
    t = 70
    common = rng.normal(size=t)
    x = np.zeros((t, 3))
    x[:, 0] = common + 0.25 * rng.normal(size=t)
    x[:, 1] = common + 0.25 * rng.normal(size=t)
    x[:, 2] = rng.normal(size=t)
    x[1:, 2] += 0.5 * x[:-1, 0]
    panel = dp.Panel(x, roles=["channel", "channel", "target"], train_steps=t)
    cfg = dp.Stage1Config(n_lags=1, noise_sd=1.0, num_warmup=300, num_samples=1000, progress_bar=False)
    ref = exact_pips(panel, config=cfg)
    assert 0.05 < ref[1, 2] < 0.95  # genuinely ambiguous: the second channel is a stand-in
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = fit_graph(jax.random.key(1), panel, config=cfg)
    mask = panel.support_mask()
    assert np.abs(post.pip[0][mask] - ref[mask]).max() < 0.1, (post.pip[0][mask], ref[mask])


@pytest.mark.parametrize("flips", [0, 4])
def test_learned_residual_sd_agrees_with_exact_enumeration(flips):
    """One shop with the residual sd learned (NUTS moves it; with flips the joint moves move it too): PIPs
    against exact enumeration with each node's sd integrated over its HalfNormal prior."""
    panel = _panel()
    cfg = CFG.replace(noise_sd=None, flip_moves=flips)
    ref = exact_pips(panel, config=cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = fit_graph(jax.random.key(0), panel, config=cfg)
    mask = panel.support_mask()
    assert np.abs(post.pip[0][mask] - ref[mask]).max() < 0.1, (post.pip[0][mask], ref[mask])


def test_exact_pips_with_learned_sigma_needs_one_shop():
    two = dp.Panel(np.random.default_rng(0).normal(size=(2, 40, 3)), roles=["channel", "channel", "target"])
    with pytest.raises(ConfigError, match="noise_sd"):
        exact_pips(two, config=dp.Stage1Config(n_lags=1))
