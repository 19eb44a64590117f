"""The Stage-1 NumPyro model: data preparation, log density against a hand computation, PIP formula, Gibbs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.util import log_density
from scipy.stats import beta as beta_dist
from scipy.stats import halfnorm, lognorm, norm

import dice_prob as dp
from dice_prob.config import Stage1Config
from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError
from dice_prob.models import sites
from dice_prob.models.stage1 import (
    AR_SD,
    INTERCEPT_SD,
    edge_contribution,
    edge_features,
    edge_inclusion_prob,
    edge_matrix,
    gibbs_edges,
    gibbs_intercept_ar,
    linear_predictor,
    model,
    per_source_sites,
    prepare_data,
    source_inputs,
)
from dice_prob.models.transforms import carryover_kernel

ROLES = ["channel", "intermediate", "target"]
MASK = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)


def _data(mode="linear", r=1, t=25, lags=2, seed_=0):
    v = np.abs(np.random.default_rng(seed_).normal(size=(r, t, 3))) + 0.1
    return v, prepare_data(v, ROLES, MASK, n_lags=lags, mode=mode)


def test_prepare_data_shapes_and_lags():
    v, d = _data(r=2)
    st = d.structure
    assert st.edge_src == (0, 0, 1) and st.edge_dst == (1, 2, 2)  # grouped by destination
    assert st.recv_nodes == (1, 2) and st.src_nodes == (0, 1)
    assert d.y.shape == (2, 23, 2) and d.xlag.shape == (2, 23, 2, 2)
    z = (v - v.mean(1, keepdims=True)) / v.std(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(d.y[1, :, 1]), z[1, 2:, 2], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d.ylag[1, :, 0]), z[1, 1:-1, 1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d.xlag[0, :, 0, 1]), z[0, :-2, 0], rtol=1e-5, atol=1e-5)  # lag 2


def test_prepare_data_mmm_scales_channels_to_unit_max():
    v, d = _data(mode="mmm")
    np.testing.assert_allclose(np.asarray(d.xlag[0, :, 0, 0]), v[0, 1:-1, 0] / v[0, :, 0].max(), rtol=1e-5)
    assert d.structure.src_is_channel == (True, False)


def test_prepare_data_errors():
    v = np.random.default_rng(0).normal(size=(1, 4, 3))
    with pytest.raises(DataValidationError, match="n_lags"):
        prepare_data(v, ROLES, MASK, n_lags=3)
    with pytest.raises(GraphValidationError, match="no candidate edge"):
        prepare_data(v, ROLES, np.zeros((3, 3), bool), n_lags=1)


def test_log_density_matches_hand_computation():
    cfg = Stage1Config(n_lags=2, slab_grid=(0.25, 1.0))
    _, d = _data()
    tr = trace(seed(model, 1)).get_trace(d, config=cfg, obs=d.y)
    params = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    lp, _ = log_density(model, (d,), {"config": cfg, "obs": d.y}, params)
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    pi, w = p["pi"][0], p["W"][0]  # (E, L)
    ref = beta_dist(1, 1).logpdf(pi)
    # learned slab: sd s per lag, s ~ LogNormal(log 0.5, 1); the spike keeps the ratio spike_scale / 0.5 to it;
    # the slab is an equal-weight scale mixture over s * m, m in slab_grid
    ref += lognorm(s=1.0, scale=0.5).logpdf(p["slab"][0])
    slab_sd = p["slab"][0]
    grid = cfg.slab_grid
    assert len(grid) > 1  # a scale-mixture slab (the plain slab is its one-component case)
    for e in range(3):
        slab = np.mean([np.prod(norm(0, slab_sd * m).pdf(w[e])) for m in grid])
        spike = np.prod(norm(0, slab_sd * cfg.spike_scale / 0.5).pdf(w[e]))
        ref += np.log(pi * slab + (1 - pi) * spike)
    ref += norm(0, 1).logpdf(p["b"]).sum() + norm(0, 0.5).logpdf(p["phi"]).sum()
    ref += halfnorm(scale=1.0).logpdf(p["sigma"]).sum()
    y, ylag, xlag = (np.asarray(a, dtype=np.float64)[0] for a in (d.y, d.ylag, d.xlag))
    mean = p["b"][0] + p["phi"][0] * ylag
    for e, (s_slot, j_slot) in enumerate([(0, 0), (0, 1), (1, 1)]):
        mean[:, j_slot] += xlag[:, s_slot, :] @ w[e]
    ref += norm(mean, p["sigma"][0]).logpdf(y).sum()
    assert abs(float(lp) - ref) < 1e-3 * max(1.0, abs(ref))


def test_mmm_model_traces_with_hill_and_kernel():
    cfg = Stage1Config(n_lags=3, mode="mmm")
    _, d = _data(mode="mmm", lags=3)
    tr = trace(seed(model, 0)).get_trace(d, config=cfg, obs=d.y)
    assert tr[sites.BETA]["value"].shape == (1, 3)
    assert tr[sites.HILL_HALF]["value"].shape == (1, 2)
    lp, _ = log_density(
        model,
        (d,),
        {"config": cfg, "obs": d.y},
        {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]},
    )
    assert np.isfinite(float(lp))


def test_mmm_source_shared_carryover_equals_per_edge_kernels_gathered_by_source():
    """carryover_sharing='source': one (retention, delay) per source, (G, S); its likelihood is the per-edge
    model's with every edge given its source's kernel."""
    _, d = _data(mode="mmm", lags=3)
    src = np.asarray(d.structure.edge_src_slot)
    cfg_src = Stage1Config(n_lags=3, mode="mmm", carryover_sharing="source")
    tr = trace(seed(model, 3)).get_trace(d, config=cfg_src, obs=d.y)
    vals = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    assert vals[sites.RETENTION].shape == (1, len(d.structure.src_nodes)) == (1, 2)
    assert vals[sites.DELAY].shape == (1, 2)
    per_edge = {
        **vals,
        sites.RETENTION: vals[sites.RETENTION][:, src],
        sites.DELAY: vals[sites.DELAY][:, src],
    }
    tr_edge = trace(substitute(model, per_edge)).get_trace(
        d, config=Stage1Config(n_lags=3, mode="mmm"), obs=d.y
    )
    ll_src = float(tr[sites.OBS]["fn"].log_prob(d.y).sum())
    ll_edge = float(tr_edge[sites.OBS]["fn"].log_prob(d.y).sum())
    np.testing.assert_allclose(ll_src, ll_edge, rtol=1e-6)
    # and a different kernel on one of the source's edges changes it (the gather is not a no-op)
    moved = {**per_edge, sites.RETENTION: per_edge[sites.RETENTION].at[0, 0].set(0.95)}
    tr_moved = trace(substitute(model, moved)).get_trace(
        d, config=Stage1Config(n_lags=3, mode="mmm"), obs=d.y
    )
    assert abs(float(tr_moved[sites.OBS]["fn"].log_prob(d.y).sum()) - ll_edge) > 1e-3
    assert Stage1Config.from_dict(cfg_src.to_dict()) == cfg_src
    with pytest.raises(ConfigError, match="carryover_sharing"):
        Stage1Config(mode="mmm", carryover_sharing="channel")


@pytest.mark.parametrize("sharing", ["edge", "source"])
def test_per_source_sites_are_exactly_the_sites_under_the_source_plate(sharing):
    """The ArviZ converter labels per_source_sites() by node name; they must be the model's source-plate sites."""
    _, d = _data(mode="mmm", lags=3)
    cfg = Stage1Config(n_lags=3, mode="mmm", carryover_sharing=sharing)
    tr = trace(seed(model, 0)).get_trace(d, config=cfg, obs=d.y)
    under_source = {
        k
        for k, s in tr.items()
        if s["type"] == "sample" and any(f.name == sites.PLATE_SOURCE for f in s["cond_indep_stack"])
    }
    assert under_source == set(per_source_sites(cfg))
    assert (sites.RETENTION in under_source) == (sharing == "source")


def test_edge_inclusion_prob_closed_form():
    w = np.array([[[0.02, -0.01], [0.3, 0.1], [0.0, 0.0]]])
    pi = np.array([0.3])
    got = np.asarray(edge_inclusion_prob(jnp.asarray(w), jnp.asarray(pi), 0.5, 0.01))
    slab = norm(0, 0.5).pdf(w).prod(-1)
    spike = norm(0, 0.01).pdf(w).prod(-1)
    ref = 0.3 * slab / (0.3 * slab + 0.7 * spike)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    # a scale-mixture slab: equal-weight average of the slab densities over the grid
    grid = (0.1, 1.0)
    got_mix = np.asarray(edge_inclusion_prob(jnp.asarray(w), jnp.asarray(pi), 0.5, 0.01, grid))
    slab_mix = np.mean([norm(0, 0.5 * g).pdf(w).prod(-1) for g in grid], axis=0)
    ref_mix = 0.3 * slab_mix / (0.3 * slab_mix + 0.7 * spike)
    np.testing.assert_allclose(got_mix, ref_mix, rtol=1e-4, atol=1e-6)
    assert got_mix[0, 0] > 2 * got[0, 0]  # the narrow component explains the small weights far better
    m = np.asarray(edge_matrix(jnp.asarray(got), prepare_data(*_data()[:1], ROLES, MASK, n_lags=2).structure))
    assert m.shape == (1, 3, 3) and m[0, 0, 1] == pytest.approx(got[0, 0]) and m[0, 1, 0] == 0


def test_gibbs_edges_draws_from_the_exact_conditional():
    """One edge, known residual: the Gibbs draw's inclusion frequency and slab mean match the closed form."""
    rng = np.random.default_rng(1)
    v = rng.normal(size=(1, 60, 3))
    d = prepare_data(v, ROLES, MASK, n_lags=1)
    st = d.structure
    feats = edge_features(d.xlag, st)  # (1, T', 3, 1)
    f = np.asarray(feats[0, :, 1, :], dtype=np.float64)  # edge 0 -> 2
    resid = np.zeros(d.y.shape, np.float32)
    r = (0.15 * f[:, 0] + rng.normal(size=f.shape[0]) * 0.8).astype(np.float32)
    resid[0, :, 1] = r
    coef = jnp.zeros((1, 3, 1))
    sigma = jnp.full((1, 2), 0.8)
    pi = jnp.array([0.5])
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = jax.vmap(lambda k: gibbs_edges(k, feats, coef, jnp.asarray(resid), sigma, pi, st, 0.5, 0.01))(
        keys
    )
    c = np.asarray(draws[:, 0, 1, 0], dtype=np.float64)
    # closed form for edge 0->2 (others have zero residual signal but are also updated; edge 1 -> 2 shares target)
    s2 = 0.64
    xtx, xtr = f[:, 0] @ f[:, 0] / s2, f[:, 0] @ r / s2

    def lw(v):
        prec = xtx + 1 / v
        return -0.5 * np.log(v) - 0.5 * np.log(prec) + 0.5 * xtr**2 / prec

    p1 = 1 / (1 + np.exp(lw(0.01**2) - lw(0.25)))
    # the draw is in the slab when |c| is far beyond the spike
    share = np.mean(np.abs(c) > 0.05)
    assert abs(share - p1) < 0.05


@pytest.mark.parametrize("mode", ["linear", "mmm"])
def test_edge_contribution_matches_per_edge_sum(mode):
    """The per-target matrix-vector form of the likelihood mean equals the explicit per-edge, per-lag sum."""
    _, d = _data(mode=mode, r=2, lags=3)
    st = d.structure
    rng = np.random.default_rng(3)
    w = rng.normal(size=(1, st.n_edges, 3)).astype(np.float32)
    half = slope = None
    if mode == "mmm":
        half, slope = jnp.full((1, 2), 0.4), jnp.full((1, 2), 1.5)
    x = np.asarray(source_inputs(d, half, slope), dtype=np.float64)  # (R, T', S, L)
    got = np.asarray(edge_contribution(jnp.asarray(x, jnp.float32), jnp.asarray(w), st))
    ref = np.zeros(d.y.shape)
    for e, (src, dst) in enumerate(zip(st.edge_src_slot, st.edge_dst_slot, strict=True)):
        ref[:, :, dst] += np.einsum("rtl,l->rt", x[:, :, src, :], w[0, e])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    if mode == "mmm":  # and equals the kernel-feature form used by the Gibbs sweep
        beta, ret, delay = (
            jnp.asarray(w[..., 0]),
            jnp.full((1, st.n_edges), 0.6),
            jnp.full((1, st.n_edges), 0.5),
        )
        feats = edge_features(d.xlag, st, half, slope, ret, delay)
        zero = jnp.zeros((2, 2))
        via_feats = linear_predictor(feats, beta[..., None], zero, zero, d.ylag, st)
        kern_w = beta[..., None] * carryover_kernel(3, ret, delay)
        np.testing.assert_allclose(
            np.asarray(edge_contribution(source_inputs(d, half, slope), kern_w, st)),
            np.asarray(via_feats),
            rtol=1e-5,
            atol=1e-5,
        )


def test_gibbs_intercept_ar_matches_the_conjugate_posterior():
    """Mean and covariance of the (b, phi) draws equal the Gaussian regression posterior computed by hand."""
    rng = np.random.default_rng(4)
    ylag = rng.normal(size=(1, 40, 2))
    target = 0.3 + 0.6 * ylag + rng.normal(size=ylag.shape) * 0.7
    sigma = np.array([[0.7, 0.9]])
    keys = jax.random.split(jax.random.key(0), 20000)
    b, phi = jax.vmap(
        lambda k: gibbs_intercept_ar(k, jnp.asarray(target), jnp.asarray(ylag), jnp.asarray(sigma))
    )(keys)
    for j in range(2):
        x = np.column_stack([np.ones(40), ylag[0, :, j]])
        prec = x.T @ x / sigma[0, j] ** 2 + np.diag([1 / INTERCEPT_SD**2, 1 / AR_SD**2])
        cov = np.linalg.inv(prec)
        mean = cov @ x.T @ target[0, :, j] / sigma[0, j] ** 2
        draws = np.stack([np.asarray(b[:, 0, j]), np.asarray(phi[:, 0, j])], axis=1).astype(np.float64)
        se = np.sqrt(np.diag(cov) / draws.shape[0])  # Monte Carlo standard error of the mean
        assert np.all(np.abs(draws.mean(0) - mean) < 4 * se + 1e-4), (draws.mean(0), mean)
        np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.05, atol=1e-5)


def test_ar_residual_sd_matches_a_numpy_least_squares_fit_and_pools_shops_by_group():
    from dice_prob.models.stage1 import ar_residual_sd, prepare_data

    rng = np.random.default_rng(3)
    z = rng.normal(size=(3, 50, 2))
    z[:, 1:, 1] += 0.7 * z[:, :-1, 1]

    def ref(series, n_lags):
        y = series[n_lags:]
        design = np.column_stack([np.ones(len(y))] + [series[n_lags - l : -l] for l in range(1, n_lags + 1)])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        return np.mean((y - design @ coef) ** 2)

    var = np.array([[ref(z[r, :, k], 2) for k in range(2)] for r in range(3)])
    got = ar_residual_sd(z, 2, [0, 1, 1])
    np.testing.assert_allclose(got[0], np.sqrt(var[0]), rtol=1e-10)
    np.testing.assert_allclose(got[1], np.sqrt(var[1:].mean(axis=0)), rtol=1e-10)  # root mean square
    assert np.all(ar_residual_sd(np.zeros((1, 20, 2)), 2) == 1e-2)  # floored

    # prepare_data divides each z-scored node by its scale (groups pool the scales)
    mask = np.array([[0, 1], [0, 0]], bool)
    plain = prepare_data(z, ["channel", "target"], mask, n_lags=2)
    scaled = prepare_data(
        z, ["channel", "target"], mask, n_lags=2, node_scale="ar_residual", group_of_shop=[0, 1, 1]
    )
    s = scaled.node_sd
    np.testing.assert_allclose(s, ar_residual_sd(_zscore_ref(z), 2, [0, 1, 1]), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(scaled.y)[1, :, 0], np.asarray(plain.y)[1, :, 0] / s[1, 1], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(scaled.xlag)[0, :, 0, :],
        np.asarray(plain.xlag)[0, :, 0, :] / s[0, 0],
        rtol=1e-5,
        atol=1e-6,
    )
    assert plain.node_sd is None
    with pytest.raises(ConfigError, match="node_scale"):
        prepare_data(z, ["channel", "target"], mask, n_lags=2, node_scale="innovation")
    with pytest.raises(ConfigError, match="node_scale"):
        dp.Stage1Config(node_scale="none")
    # a wrong-length group list is reported as such, whichever node scale is asked for
    for scale in ("zscore", "ar_residual"):
        with pytest.raises(DataValidationError, match="2 group labels for 3 shops"):
            prepare_data(z, ["channel", "target"], mask, n_lags=2, node_scale=scale, group_of_shop=[0, 1])
    with pytest.raises(DataValidationError, match="2 scale group labels for 3 shops"):
        prepare_data(
            z, ["channel", "target"], mask, n_lags=2, node_scale="ar_residual", scale_group_of_shop=[0, 1]
        )
    # mmm mode: the response is scaled, a channel source keeps its x / max scale
    mm = prepare_data(np.abs(z), ["channel", "target"], mask, n_lags=2, mode="mmm", node_scale="ar_residual")
    mm0 = prepare_data(np.abs(z), ["channel", "target"], mask, n_lags=2, mode="mmm")
    np.testing.assert_allclose(np.asarray(mm.xlag), np.asarray(mm0.xlag))
    np.testing.assert_allclose(
        np.asarray(mm.y)[0, :, 0], np.asarray(mm0.y)[0, :, 0] / mm.node_sd[0, 1], rtol=1e-5
    )


def _zscore_ref(x):
    return (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
