"""Simulators: shapes, roles, determinism, stationarity, truth consistent with the generating parameters."""

from __future__ import annotations

import json

import jax
import networkx as nx
import numpy as np
import pytest

from dice_prob.data import simulate
from dice_prob.data.simulate import companion_matrix, spectral_radius
from dice_prob.errors import ConfigError, InputTypeError


@pytest.fixture(scope="module")
def lin():
    return simulate.funnel(jax.random.key(0), n_shops=20, n_steps=120)


@pytest.fixture(scope="module")
def mmm():
    return simulate.funnel(jax.random.key(1), n_shops=12, n_steps=120, mode="mmm")


@pytest.fixture(scope="module")
def sparse():
    return simulate.sparse_target(jax.random.key(2), n_shops=8, n_steps=200)


@pytest.fixture(scope="module")
def multi():
    return simulate.multi_graph(jax.random.key(3), n_graphs=3, n_shops=12, n_steps=80)


# ------------------------------------------------------------------------------------------------ shapes, roles
def test_funnel_shapes_and_roles(lin, mmm):
    for sim in (lin, mmm):
        r, t, d = sim.panel.shape
        assert d == 8 and sim.panel.nodes[-1] == "target" and sim.panel.target_index == 7
        assert sim.panel.roles == ("channel",) * 5 + ("intermediate",) * 2 + ("target",)
        assert sim.graph.shape == (r, d, d) and sim.graphs.shape == (r, d, d)
        assert sim.params["weights"].shape == (r, d, d, 7) and sim.params["ar"].shape == (r, d)
        assert sim.support_mask.shape == (d, d) and sim.support_mask.dtype == bool
        assert sim.panel.context.shape == (r, 2)
        assert sim.panel.train_steps == 96  # last 20% held out of the standardisation
        np.testing.assert_array_equal(sim.graph_of_shop(3), sim.graph[3])
        json.dumps(sim.info)
        assert np.all(np.isfinite(sim.panel.values))


def test_shared_graph_is_2d():
    sim = simulate.funnel(jax.random.key(5), n_shops=4, n_steps=60, graph_per_shop=False)
    assert sim.graph.shape == (8, 8)
    assert sim.graphs.shape == (4, 8, 8)
    np.testing.assert_array_equal(sim.graph_of_shop(2), sim.graph)
    # shared graph -> shared weights by default, but fresh series per shop
    np.testing.assert_array_equal(sim.params["weights"][0], sim.params["weights"][3])
    assert not np.allclose(sim.panel.values[0], sim.panel.values[1])
    with pytest.raises(ConfigError, match="shop"):
        sim.graph_of_shop(4)


def test_var_shapes_and_support():
    sim = simulate.var(jax.random.key(0), n_shops=3, n_steps=80, n_nodes=6, n_lags=2)
    assert sim.panel.shape == (3, 80, 6) and sim.graph.shape == (6, 6)
    assert sim.params["weights"].shape == (3, 6, 6, 2)
    assert not np.any(sim.graph[~sim.support_mask])
    assert sim.panel.roles[-1] == "target" and sim.graph[-1].sum() == 0


# ------------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize(
    "fn,kw",
    [
        (simulate.var, {"n_shops": 2}),
        (simulate.funnel, {"n_shops": 3, "n_steps": 60}),
        (simulate.funnel, {"n_shops": 3, "n_steps": 60, "mode": "mmm"}),
        (simulate.sparse_target, {"n_shops": 3, "n_steps": 150}),
        (simulate.multi_graph, {"n_shops": 6, "n_steps": 60}),
    ],
)
def test_same_key_identical_different_key_different(fn, kw):
    a = fn(jax.random.key(11), **kw)
    b = fn(jax.random.key(11), **kw)
    c = fn(jax.random.key(12), **kw)
    np.testing.assert_array_equal(a.panel.values, b.panel.values)
    np.testing.assert_array_equal(a.graph, b.graph)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert a.info == b.info
    assert not np.allclose(a.panel.values, c.panel.values)


def test_legacy_prngkey_and_bad_keys():
    a = simulate.funnel(jax.random.PRNGKey(4), n_shops=2, n_steps=40)
    b = simulate.funnel(jax.random.key(4), n_shops=2, n_steps=40)
    np.testing.assert_array_equal(a.panel.values, b.panel.values)
    for bad in (4, None, "seed", jax.random.split(jax.random.key(0), 3)):
        with pytest.raises(InputTypeError, match="rng_key"):
            simulate.funnel(bad, n_shops=2, n_steps=40)


def test_fresh_series_and_noise_per_shop():
    sim = simulate.funnel(jax.random.key(6), n_shops=5, n_steps=60, graph_per_shop=False)
    v = sim.panel.values
    for r in range(1, 5):
        assert not np.allclose(v[0], v[r])
    # root channel series differ between shops (CausalMMM's release copies them; we must not)
    corr = np.corrcoef(v[:, :, 0])
    assert np.max(np.abs(corr[~np.eye(5, dtype=bool)])) < 0.5


# ------------------------------------------------------------------------------------------------ stationarity
def test_companion_matrix_layout():
    w = np.zeros((2, 2, 2))
    w[0, 1, 0] = 0.5  # 0 -> 1 at lag 1
    w[1, 0, 1] = -0.2  # 1 -> 0 at lag 2
    c = companion_matrix(w, ar=[0.3, 0.1])
    expected = np.array([[0.3, 0.0, 0.0, -0.2], [0.5, 0.1, 0.0, 0.0], [1, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_allclose(c, expected)
    assert spectral_radius(w, [0.3, 0.1]) == pytest.approx(np.abs(np.linalg.eigvals(expected)).max())


@pytest.mark.parametrize("fixture", ["lin", "mmm", "sparse", "multi"])
def test_stationarity_recorded_and_recomputed(fixture, request):
    sim = request.getfixturevalue(fixture)
    rho = spectral_radius(sim.params["weights"], sim.params["ar"])
    assert np.all(rho < sim.info["max_radius"]) and sim.info["max_radius"] <= 0.95
    np.testing.assert_allclose(rho, sim.info["spectral_radius"], rtol=1e-8, atol=1e-10)
    assert sim.info["stationary"] is True


def test_var_rescales_explosive_weights():
    sim = simulate.var(
        jax.random.key(7),
        n_shops=4,
        n_nodes=6,
        density=0.8,
        weight_scale=3.0,
        graph_per_shop=True,
        n_steps=300,
    )
    assert any(sim.info["rescaled"]) and all(f <= 1.0 for f in sim.info["rescale_factor"])
    rho = spectral_radius(sim.params["weights"], sim.params["ar"])
    assert np.all(rho < 0.95)
    np.testing.assert_allclose(rho, sim.info["spectral_radius"], rtol=1e-8)
    v = sim.panel.values
    # no blow-up: the second half is not larger than the first half
    assert np.all(np.isfinite(v)) and v[:, 150:].std() < 3 * v[:, :150].std()


# ------------------------------------------------------------------------------------------------ truth vs parameters
@pytest.mark.parametrize("fixture", ["lin", "mmm", "sparse", "multi"])
def test_graph_iff_nonzero_weights_and_support(fixture, request):
    sim = request.getfixturevalue(fixture)
    nz = np.any(sim.params["weights"] != 0, axis=-1)
    np.testing.assert_array_equal(nz, sim.graphs > 0)
    assert not np.any(sim.graphs[:, ~sim.support_mask])
    assert set(np.unique(sim.graphs)) <= {0.0, 1.0}


@pytest.mark.parametrize("fixture", ["lin", "mmm", "multi"])
def test_funnel_structure(fixture, request):
    sim = request.getfixturevalue(fixture)
    for g in sim.graphs:
        assert np.all(g[:, 5:].sum(0) >= 1)  # every intermediate and the target has a parent
        assert g[:, :5].sum() == 0 and g[7].sum() == 0
        assert nx.is_directed_acyclic_graph(nx.from_numpy_array(g, create_using=nx.DiGraph))


def test_density_near_target():
    sim = simulate.funnel(jax.random.key(8), n_shops=50, n_steps=30)
    dens = sim.graphs.sum((1, 2)) / 56
    assert abs(dens.mean() - 0.22) < 0.02
    assert sim.info["realised_density"] == pytest.approx(dens.mean())
    dense = simulate.funnel(jax.random.key(8), n_shops=10, n_steps=30, density=0.3)
    assert dense.graphs.sum((1, 2)).mean() == pytest.approx(round(0.3 * 56))


def test_linear_residuals_match_noise(lin):
    """Recompute every non-root node from the stored weights: the residual is the N(0, 0.1^2) noise."""
    v = lin.panel.values
    w = lin.params["weights"]
    lags = w.shape[-1]
    pred = np.zeros_like(v[:, lags:])
    for l in range(1, lags + 1):
        pred += np.einsum("rti,rij->rtj", v[:, lags - l : v.shape[1] - l], w[..., l - 1])
    pred += lin.params["ar"][:, None] * v[:, lags - 1 : -1]
    res = v[:, lags:, 5:] - pred[..., 5:]
    assert res.std() == pytest.approx(0.1, rel=0.05)
    assert abs(res.mean()) < 0.01


def test_least_squares_recovers_linear_weights():
    sim = simulate.funnel(jax.random.key(9), n_shops=20, n_steps=200, graph_per_shop=False)
    v, g = sim.panel.values, sim.graph
    w = sim.params["weights"][0]
    lags = w.shape[-1]
    for j in range(5, 8):
        parents = np.flatnonzero(g[:, j])
        x = np.concatenate(
            [v[:, lags - l : v.shape[1] - l][:, :, parents] for l in range(1, lags + 1)], axis=-1
        ).reshape(-1, parents.size * lags)
        y = v[:, lags:, j].reshape(-1)
        coef = np.linalg.lstsq(x, y, rcond=None)[0].reshape(lags, parents.size)
        np.testing.assert_allclose(coef, w[parents, j].T, atol=0.08)


def test_mmm_residuals_match_noise(mmm):
    """Recompute the mmm response (adstock -> Hill -> effect + own AR) from params: residual = noise."""
    p = mmm.params
    v = mmm.panel.values
    lags = p["carryover"].shape[-1]
    ad = sum(v[:, lags - l : v.shape[1] - l] * p["carryover"][:, None, :, l - 1] for l in range(1, lags + 1))
    a = np.maximum(ad, 0.0)[..., None]  # (R, T', src, 1)
    n, k = p["slope"][:, None], p["half_saturation"][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(k > 0, a**n / (a**n + k**n), 0.0)
    eff = (p["effect"][:, None] * h).sum(2)
    pred = p["intercept"][:, None] + p["ar"][:, None] * v[:, lags - 1 : -1] + eff
    res = v[:, lags:, 5:] - pred[..., 5:]
    assert res.std() == pytest.approx(0.1, rel=0.05)


def test_mmm_spends_and_context(mmm):
    v = mmm.panel.values
    assert np.all(v[:, :, :5] >= 0)
    mmm.panel.require_nonnegative("channel")
    assert mmm.info["context_used"] is True
    ctx = mmm.panel.context
    np.testing.assert_array_equal(ctx, mmm.params["context"])
    assert np.all((ctx >= 0) & (ctx <= 1))
    # the target's half-saturation carries the context factor (0.5 + c0); channels -> mids do not
    p = mmm.params
    base = p["half_saturation"] / np.where(p["input_scale"][..., None] > 0, p["input_scale"][..., None], 1)
    into_t = mmm.graphs[:, :, 7] > 0
    ratio = base[:, :, 7][into_t]
    assert np.all((ratio >= 0.5 * 0.5 - 1e-9) & (ratio <= 1.5 * 1.5 + 1e-9))
    assert np.all(p["effect"][mmm.graphs > 0] > 0)  # positive effects


@pytest.mark.parametrize("carryover", ["geometric", "weibull"])
@pytest.mark.parametrize("saturation", ["hill", "log", "none"])
def test_mmm_knobs(carryover, saturation):
    sim = simulate.funnel(
        jax.random.key(10),
        n_shops=3,
        n_steps=60,
        mode="mmm",
        carryover=carryover,
        saturation=saturation,
        channel_correlation=0.5,
    )
    assert np.all(np.isfinite(sim.panel.values)) and np.all(sim.panel.values[:, :, :5] > 0)
    np.testing.assert_allclose(sim.params["carryover"].sum(-1), 1.0)
    assert sim.info["carryover"] == carryover and sim.info["saturation"] == saturation


def test_channel_correlation_knob():
    sim = simulate.funnel(jax.random.key(13), n_shops=10, n_steps=200, channel_correlation=0.7)
    ch = sim.panel.values[:, :, :5].reshape(-1, 5)
    c = np.corrcoef(ch, rowvar=False)[~np.eye(5, dtype=bool)]
    assert abs(c.mean() - 0.7) < 0.1


# ------------------------------------------------------------------------------------------------ sparse target
def test_sparse_target(sparse):
    d = sparse.panel.n_nodes
    assert d >= 10 and sparse.panel.target_index == d - 1
    n_par = sparse.graphs[:, :, -1].sum(-1)
    assert np.all((n_par >= 1) & (n_par <= 2)) and np.all(n_par == 2)
    assert sparse.info["non_degenerate"] is True
    assert sparse.info["oracle_mse"] <= (1 - sparse.info["margin"]) * sparse.info["ar_mse"]
    assert sparse.info["oracle_mse_1"] <= (1 - sparse.info["margin"]) * sparse.info["ar_mse_1"]
    assert sparse.info["ar_mse_1"] < 0.1  # an AR-only one-step forecast of the target is good
    np.testing.assert_allclose(sparse.params["ar"][:, -1], 0.8)
    assert sparse.info["empirical_channel_correlation"] > 0.4


def test_sparse_target_one_parent_and_mmm():
    a = simulate.sparse_target(jax.random.key(14), n_shops=4, n_steps=150, n_target_parents=1, n_nodes=12)
    assert a.panel.n_nodes == 12 and np.all(a.graphs[:, :, -1].sum(-1) == 1)
    b = simulate.sparse_target(jax.random.key(15), n_shops=4, n_steps=150, mode="mmm")
    assert np.all(b.graphs[:, :, -1].sum(-1) == 2) and np.all(b.panel.values[:, :, :7] > 0)
    assert isinstance(b.info["non_degenerate"], bool)


def test_sparse_target_flags_degenerate():
    with pytest.warns(UserWarning, match="non_degenerate"):
        sim = simulate.sparse_target(
            jax.random.key(16), n_shops=3, n_steps=150, target_effect=1e-4, max_redraws=1
        )
    assert sim.info["non_degenerate"] is False
    assert sim.info["redraws"] == 1 and len(sim.info["check_history"]) == 2


def test_forecast_check_by_hand():
    """On an AR(1) target with no parents, AR-only and oracle are the same model."""
    rng = np.random.default_rng(0)
    x = np.zeros((2, 300, 2))
    for t in range(1, 300):
        x[:, t] = 0.9 * x[:, t - 1] + rng.normal(size=(2, 2))
    g = np.zeros((2, 2))
    out = simulate.forecast_check(x, g, 1, 2)
    assert out["ar_mse"] == pytest.approx(out["oracle_mse"])
    assert 0.1 < out["ar_mse_1"] < 0.3  # one-step error variance / stationary variance = 1 - 0.81


# ------------------------------------------------------------------------------------------------ multi graph
def test_multi_graph_map(multi):
    tmpl = multi.params["graph_templates"]
    sg = np.array(multi.info["shop_graph"])
    assert tmpl.shape == (3, 8, 8) and multi.graph.shape == (12, 8, 8)
    np.testing.assert_array_equal(multi.graph, tmpl[sg])
    assert sorted(np.bincount(sg).tolist()) == [4, 4, 4]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.array_equal(tmpl[a], tmpl[b])
    for r in range(12):  # shops sharing a graph share its parameters
        first = int(np.flatnonzero(sg == sg[r])[0])
        np.testing.assert_array_equal(multi.params["weights"][r], multi.params["weights"][first])


# ------------------------------------------------------------------------------------------------ errors, speed
@pytest.mark.parametrize(
    "kw,field",
    [
        ({"mode": "nonlinear"}, "mode"),
        ({"n_shops": 0}, "n_shops"),
        ({"density": 1.5}, "density"),
        ({"channel_correlation": 1.0}, "channel_correlation"),
        ({"carryover": "delayed"}, "carryover"),
        ({"saturation": "tanh"}, "saturation"),
        ({"own_ar": (0.5, 0.2)}, "own_ar"),
        ({"n_steps": 5}, "n_steps"),
        ({"max_radius": 1.0}, "max_radius"),
    ],
)
def test_bad_settings(kw, field):
    with pytest.raises(ConfigError, match=field):
        simulate.funnel(jax.random.key(0), **kw)


def test_bad_sparse_and_multi_settings():
    with pytest.raises(ConfigError, match="n_target_parents"):
        simulate.sparse_target(jax.random.key(0), n_target_parents=3)
    with pytest.raises(ConfigError, match="n_graphs"):
        simulate.multi_graph(jax.random.key(0), n_graphs=5, n_shops=3)
