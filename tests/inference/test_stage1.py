"""fit_graph / GraphPosterior: shapes for every sharing mode, determinism, validation, convergence warnings."""

from __future__ import annotations

import warnings

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest

import dice_prob as dp
from dice_prob.errors import ConfigError, ConvergenceWarning, DataValidationError, InputTypeError
from dice_prob.inference.stage1 import GraphPosterior, fit_graph, sample_graphs

ROLES = ["channel", "channel", "intermediate", "target"]
CFG = dp.Stage1Config(n_lags=2, num_warmup=100, num_samples=100, progress_bar=False)


def _panel(n_shops=2, t=60, seed=0):
    """Tiny VAR: x0 -> x2 (lag 1), x2 -> x3 (lag 1), x1 -> x3 (lag 2); x0 -> x3 absent."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_shops, t, 4))
    for s in range(n_shops):
        for k in range(2, t):
            x[s, k, 2] += 0.3 * x[s, k - 1, 2] + 0.8 * x[s, k - 1, 0]
            x[s, k, 3] += 0.2 * x[s, k - 1, 3] + 0.7 * x[s, k - 1, 2] + 0.7 * x[s, k - 2, 1]
    return dp.Panel(x, roles=ROLES, train_steps=t)  # every step: this tiny problem needs all 60


def _fit(key, panel, cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_graph(key, panel, config=cfg)


@pytest.fixture(scope="module")
def shop_post():
    return _fit(jax.random.key(0), _panel(), CFG)


def test_shop_mode_shapes_and_support(shop_post):
    post = shop_post
    assert isinstance(post, GraphPosterior) and post.sharing == "shop"
    mask = _panel().support_mask()
    assert post.pip.shape == (2, 4, 4)
    assert post.draw_probs.shape == (200, 2, 4, 4)
    assert np.all(post.pip[:, ~mask] == 0)
    assert np.all((post.pip >= 0) & (post.pip <= 1))
    assert post.samples["W"].shape == (2, 100, 2, 5, 2)  # (chain, draw, shop, edge, lag)
    assert post.samples["inclusion_prob"].shape == (2, 100, 2, 4, 4)
    assert post.samples["pi"].shape == (2, 100, 2)
    assert set(post.convergence) >= {"max_r_hat", "min_ess", "n_divergences", "ok"}
    np.testing.assert_allclose(post.pip_of_shop(1), post.pip[1])


def test_recovers_strong_edges_on_tiny_problem(shop_post):
    # strong true edges x0->x2, x2->x3, x1->x3 well above 0.5; the absent x0->x3 and x1->x2 below it
    for r in range(2):
        p = shop_post.pip[r]
        assert min(p[0, 2], p[2, 3], p[1, 3]) > 0.9
        assert max(p[0, 3], p[1, 2]) < 0.5


def test_graph_samples_medians_and_frames(shop_post):
    post = shop_post
    g = post.sample_graphs(jax.random.key(1), 50)
    assert g.shape == (50, 2, 4, 4) and set(np.unique(g)) <= {0.0, 1.0}
    assert np.all(g[:, :, ~post.support_mask] == 0)
    g0 = post.sample_graphs(jax.random.key(1), 400, shop=0)
    assert g0.shape == (400, 4, 4)
    np.testing.assert_allclose(g0.mean(0), post.pip[0], atol=0.1)
    assert post.median_graph().shape == (2, 4, 4)
    np.testing.assert_array_equal(post.median_graph(shop=1), (post.pip[1] > 0.5).astype(int))
    top = post.top_k(2, shop=0)
    assert list(top.columns) == ["source", "target", "pip"] and len(top) == 2
    assert top["pip"].iloc[0] >= top["pip"].iloc[1]
    frame = post.pip_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2 * int(post.support_mask.sum())
    assert len(post.top_k(1)) == 2  # one per shop
    graph = post.to_networkx(0.5, shop=0)
    assert isinstance(graph, nx.DiGraph) and graph.has_edge("x0", "x2")
    with pytest.raises(InputTypeError):
        post.to_networkx(0.5)
    with pytest.raises(DataValidationError):
        post.pip_of_shop(5)


def test_sample_graphs_function_is_jittable_and_vmappable():
    p = np.zeros((3, 2, 2), np.float32)
    p[:, 0, 1] = 1.0
    f = jax.jit(sample_graphs, static_argnums=2)
    out = jax.vmap(lambda k: f(k, p, 5))(jax.random.split(jax.random.key(0), 3))
    assert (
        out.shape == (3, 5, 2, 2)
        and float(out[:, :, 0, 1].min()) == 1.0
        and float(out[:, :, 1, 0].max()) == 0
    )


def test_same_key_same_pips_and_different_key_differs(shop_post):
    again = _fit(jax.random.key(0), _panel(), CFG)
    np.testing.assert_array_equal(again.pip, shop_post.pip)
    other = _fit(jax.random.key(1), _panel(), CFG)
    assert not np.array_equal(other.draw_probs, shop_post.draw_probs)


def test_lockstep_tree_stats_are_reported(shop_post):
    c = shop_post.convergence
    # the edge coefficients are Gibbs-only by default, so NUTS builds short trees over the other parameters
    assert c["nuts_edges"] is False
    assert 1 <= c["mean_tree_steps"] <= c["lockstep_tree_steps"] <= 2**CFG.max_tree_depth - 1
    assert 0 <= c["max_tree_depth_hits"] <= 2 * 2 * CFG.num_samples


# Monte Carlo error well below the 0.1 tolerance of the comparison below; the single sweep that follows NUTS needs
# the plain slab
LONGER = CFG.replace(num_warmup=200, num_samples=300, slab_grid=(1.0,))


@pytest.fixture(scope="module")
def nuts_edges_post():
    """NUTS over every site, then the single-edge Gibbs sweep (one fit, shared by two tests)."""
    return _fit(jax.random.key(5), _panel(), LONGER.replace(nuts_edges=True))


def test_nuts_over_edges_too_gives_the_same_posterior(nuts_edges_post):
    """HMC-within-Gibbs (default) and NUTS over every site + the Gibbs sweep target the same posterior."""
    both = nuts_edges_post
    gibbs = _fit(jax.random.key(6), _panel(), LONGER)
    assert both.convergence["nuts_edges"] is True and gibbs.convergence["nuts_edges"] is False
    assert both.convergence["mean_tree_steps"] > gibbs.convergence["mean_tree_steps"]
    mask = _panel().support_mask()
    np.testing.assert_allclose(both.pip[:, mask], gibbs.pip[:, mask], atol=0.1)


def test_nuts_edges_config_is_validated_and_round_trips():
    cfg = dp.Stage1Config(nuts_edges=True, slab_grid=(1.0,))
    assert dp.Stage1Config.from_dict(cfg.to_dict()) == cfg
    assert dp.Stage1Config.from_dict(dp.Stage1Config().to_dict()).nuts_edges is None
    with pytest.raises(ConfigError, match="nuts_edges"):
        dp.Stage1Config(edge_gibbs=False, nuts_edges=False)
    with pytest.raises(ConfigError, match="nuts_edges"):
        dp.Stage1Config(nuts_edges="yes")
    with pytest.raises(ConfigError, match="edge_gibbs"):
        dp.Stage1Config(edge_gibbs=1)
    plain = _fit(jax.random.key(0), _panel(n_shops=1), CFG.replace(edge_gibbs=False, num_samples=20))
    assert plain.convergence["nuts_edges"] is True


def test_edge_sampler_and_learn_slab_are_validated_and_reported(shop_post, nuts_edges_post):
    assert shop_post.convergence["edge_sampler"] == "collapsed"
    cfg = dp.Stage1Config(edge_sampler="single", learn_slab=False, slab_scale_sd=0.5, slab_grid=(1.0,))
    assert dp.Stage1Config.from_dict(cfg.to_dict()) == cfg
    # a scale-mixture slab needs the collapsed sampler; the grid is validated
    with pytest.raises(ConfigError, match="slab_grid"):
        dp.Stage1Config(edge_sampler="single", slab_grid=(0.5, 1.0))
    with pytest.raises(ConfigError, match="slab_grid"):
        dp.Stage1Config(nuts_edges=True, slab_grid=(0.5, 1.0))
    assert dp.Stage1Config(edge_gibbs=False, slab_grid=(0.5, 1.0)).slab_grid == (0.5, 1.0)  # NUTS alone
    for bad in ((), (0.5, 0.0), (1.0, float("nan")), ("1",)):
        with pytest.raises(ConfigError, match="slab_grid"):
            dp.Stage1Config(slab_grid=bad)
    assert dp.Stage1Config(slab_grid=[0.5, 1.0]).slab_grid == (0.5, 1.0)
    assert dp.Stage1Config.from_dict(dp.Stage1Config().to_dict()).slab_grid == dp.Stage1Config().slab_grid
    with pytest.raises(ConfigError, match="edge_sampler"):
        dp.Stage1Config(edge_sampler="blocked")
    # joint flip moves live in the collapsed sampler with the plain slab
    assert dp.Stage1Config.from_dict(dp.Stage1Config(flip_moves=3).to_dict()).flip_moves == 3
    for bad in (
        {"edge_sampler": "single"},
        {"nuts_edges": True},
        {"slab_grid": (0.5, 1.0)},
        {"flip_moves": -1},
    ):
        with pytest.raises(ConfigError, match="flip_moves"):
            dp.Stage1Config(**{"flip_moves": 2, **bad})
    with pytest.raises(ConfigError, match="learn_slab"):
        dp.Stage1Config(learn_slab="yes")
    with pytest.raises(ConfigError, match="slab_scale_sd"):
        dp.Stage1Config(slab_scale_sd=0.0)
    # NUTS over the intercepts and own lags rules out integrating them out: the single sweep runs
    assert nuts_edges_post.convergence["edge_sampler"] == "single"
    # the learned slab is a sampled site, reported per shop like pi
    assert shop_post.samples["slab"].shape == shop_post.samples["pi"].shape
    fixed = _fit(jax.random.key(0), _panel(n_shops=1), CFG.replace(learn_slab=False, num_samples=20))
    assert "slab" not in fixed.samples


def test_learned_slab_tracks_the_size_of_the_effects():
    """Effects drawn with sd 0.08 per lag: the slab's posterior leaves its prior median 0.5 and lands near it."""
    rng = np.random.default_rng(11)
    d, lags, t = 7, 3, 400
    x = rng.normal(size=(t, d))
    w = np.zeros((d, lags))
    w[:4] = rng.normal(0.0, 0.08, size=(4, lags))  # four true parents of the target (last node)
    for k in range(lags, t):
        x[k, -1] = 0.5 * x[k - 1, -1] + np.sum(w[:-1] * x[k - lags : k][::-1].T[:-1]) + 0.1 * rng.normal()
    panel = dp.Panel(x, roles=["channel"] * (d - 1) + ["target"], train_steps=t)
    cfg = CFG.replace(n_lags=lags, num_warmup=300, num_samples=300)
    post = _fit(jax.random.key(2), panel, cfg)
    slab = np.asarray(post.samples["slab"])  # slab sd per lag
    # z-scored data: the per-lag effect sd in standardised units is 0.08 / sd(target) ~ 0.08 / 0.25
    scale = 0.08 / x[:, -1].std()
    assert 0.35 * scale < np.median(slab) < 2.5 * scale
    assert np.all(post.pip[0][:4, -1] > 0.9) and np.all(post.pip[0][4:-1, -1] < 0.5)


def test_short_run_warns_and_can_be_caught():
    with pytest.warns(ConvergenceWarning, match="r_hat|ESS|divergent"):
        post = fit_graph(jax.random.key(0), _panel(), config=CFG)
    assert post.convergence["ok"] is False
    # no flip moves were made, so none are reported
    assert post.convergence["flip_accept_rate"] is None and post.convergence["flip_accept_min_node"] is None
    # the split records are read off this fit's own draws, with the panel's node names
    incl = np.asarray(post.samples["inclusion_prob"])  # (C, n, G, d, d)
    means = incl.mean(axis=1)
    n_split = int(((means.max(axis=0) - means.min(axis=0)) > 0.5).sum())
    split = post.convergence["edge_split"]
    assert (split is None) == (n_split == 0)
    if split is not None:
        assert split["n_edges"] == n_split
        assert all(e["source"] in post.nodes and e["target"] in post.nodes for e in split["edges"])
    assert "chain_split" in post.convergence


def test_shared_mode_pools_shops():
    post = _fit(jax.random.key(2), _panel(), CFG.replace(graph_sharing="shared"))
    assert post.sharing == "shared" and post.pip.shape == (4, 4) and post.draw_probs.shape == (200, 4, 4)
    assert post.samples["W"].shape == (2, 100, 5, 2) and post.samples["b"].shape == (2, 100, 2, 2)
    assert post.sample_graphs(jax.random.key(0), 7).shape == (7, 4, 4)
    assert post.pip[0, 2] > 0.9 and post.pip[2, 3] > 0.9


def test_bad_inputs_raise_named_errors():
    p = _panel()
    with pytest.raises(InputTypeError, match="panel"):
        fit_graph(jax.random.key(0), np.zeros((2, 60, 4)), config=CFG)
    with pytest.raises(InputTypeError, match="config"):
        fit_graph(jax.random.key(0), p, config={"n_lags": 2})
    with pytest.raises(DataValidationError, match="n_lags"):
        fit_graph(jax.random.key(0), _panel(t=12), config=CFG.replace(n_lags=7))
    neg = dp.Panel(np.random.default_rng(0).normal(size=(1, 40, 4)), roles=ROLES)
    with pytest.raises(DataValidationError, match="negative"):
        fit_graph(jax.random.key(0), neg, config=CFG.replace(mode="mmm"))
    with pytest.raises(ConfigError, match="groups"):
        fit_graph(jax.random.key(0), p, config=CFG.replace(graph_sharing="group", groups=(0, 1, 1)))
    with pytest.raises(ConfigError, match="hierarchical_pi"):
        fit_graph(jax.random.key(0), p, config=CFG.replace(graph_sharing="shared", hierarchical_pi=True))
    with pytest.raises(ConfigError, match="support"):
        dp.Stage1Config(support="everything")


@pytest.mark.slow
def test_group_mode_one_graph_per_group():
    panel = _panel(n_shops=3)
    post = _fit(jax.random.key(3), panel, CFG.replace(graph_sharing="group", groups=(7, 3, 7)))
    assert post.sharing == "group" and post.pip.shape == (2, 4, 4)
    assert post.group_labels == (3, 7) and list(post.groups) == [1, 0, 1]
    np.testing.assert_allclose(post.pip_of_shop(0), post.pip[1])
    g = post.sample_graphs(jax.random.key(0), 5)
    assert g.shape == (5, 3, 4, 4)
    np.testing.assert_array_equal(g[:, 0], g[:, 2])  # shops of one group share each graph sample


@pytest.mark.slow
def test_recovery_on_simulated_funnel_auroc():
    from dice_prob.data import simulate
    from dice_prob.diagnostics import metrics

    sim = simulate.funnel(jax.random.key(11), n_shops=3, n_steps=100, n_lags=3, mode="linear")
    post = _fit(jax.random.key(0), sim.panel, dp.Stage1Config(n_lags=3, num_warmup=300, num_samples=300))
    au = metrics.auroc(post.pip, sim.graphs, mask=sim.support_mask)
    assert float(np.mean(au)) >= 0.9


@pytest.mark.slow
def test_mmm_mode_and_hierarchical_pi_run():
    from dice_prob.data import simulate
    from dice_prob.diagnostics import metrics

    sim = simulate.funnel(jax.random.key(12), n_shops=2, n_steps=100, n_lags=3, mode="mmm")
    post = _fit(
        jax.random.key(0), sim.panel, dp.Stage1Config(mode="mmm", n_lags=3, num_warmup=300, num_samples=300)
    )
    assert post.samples["beta"].shape[:3] == (2, 300, 2) and "hill_half" in post.samples
    assert float(np.mean(metrics.auroc(post.pip, sim.graphs, mask=sim.support_mask))) >= 0.8
    hier = _fit(jax.random.key(0), _panel(), CFG.replace(hierarchical_pi=True))
    assert hier.pip.shape == (2, 4, 4) and "pi_mean" in hier.samples


def test_mmm_mode_fits_a_shop_whose_channel_spend_is_flat():
    """A flat spend makes that shop's z-scored Hill curve exactly constant; its gradient must stay finite (a NaN
    gradient turned every transition into a divergence: 201 of 200 draws x 2 chains before the fix)."""
    from dice_prob.data import simulate

    sim = simulate.funnel(
        jax.random.key(3), n_shops=2, n_steps=80, n_lags=2, mode="mmm", n_channels=2, n_intermediate=1
    )
    v = np.array(sim.panel.values)
    v[1, :, 0] = 2.0
    panel = dp.Panel(v, nodes=sim.panel.nodes, roles=sim.panel.roles)
    cfg = dp.Stage1Config(mode="mmm", n_lags=2, num_warmup=100, num_samples=100, progress_bar=False)
    post = _fit(jax.random.key(0), panel, cfg)
    assert np.all(np.isfinite(post.pip))
    assert post.convergence["n_divergences"] <= 10


def test_to_arviz_has_named_dims(shop_post):
    idata = shop_post.to_arviz()
    post = idata.posterior if hasattr(idata, "posterior") else idata["posterior"]
    assert post["inclusion_prob"].dims == ("chain", "draw", "shop", "source", "target")
    assert list(post["inclusion_prob"].coords["source"].values) == list(shop_post.nodes)


def test_lag_decay_reports_weights_on_the_data_scale():
    """With the Minnesota decay the sampler works on prior-scaled lags; the reported W samples are converted back,
    so a strong lag-2 effect is recovered at its true standardised size (not at 2**lag_decay times it)."""
    rng = np.random.default_rng(5)
    t = 300
    x = rng.normal(size=(t, 2))
    x[2:, 1] = 0.8 * x[:-2, 0] + 0.5 * rng.normal(size=t - 2)
    panel = dp.Panel(x, roles=["channel", "target"], train_steps=t)
    truth = 0.8 * x[:, 0].std() / x[:, 1].std()
    for decay in (0.0, 2.0):
        cfg = dp.Stage1Config(n_lags=2, lag_decay=decay, num_warmup=150, num_samples=150, progress_bar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            post = fit_graph(jax.random.key(0), panel, config=cfg)
        w = np.asarray(post.samples["W"]).reshape(-1, 2)  # one shop, one candidate edge (0 -> 1), 2 lags
        assert post.pip[0][0, 1] > 0.99
        assert abs(w[:, 1].mean() - truth) < 0.1 * truth, (decay, w.mean(0), truth)
        if decay:  # the decay only rescales the sampler's inputs: the first fit's compiled sampler is reused
            assert post.timing["compile_s"] == 0.0, post.timing
        assert abs(w[:, 0].mean()) < 0.1


def test_node_scale_ar_residual_reports_weights_on_the_zscore_scale():
    """node_scale='ar_residual' samples weights in innovation-sd units; the reported W are converted back to the
    z-scored data (the target's own lags predict it well, so s_target / s_channel is far from 1 here)."""
    rng = np.random.default_rng(6)
    t = 300  # the shapes of test_lag_decay_reports_weights_on_the_data_scale: its compiled sampler is reused
    x = rng.normal(size=(t, 2))
    for s in range(2, t):
        x[s, 1] = 0.9 * x[s - 1, 1] + 0.3 * x[s - 2, 0] + 0.2 * rng.normal()
    panel = dp.Panel(x, roles=["channel", "target"], train_steps=t)
    truth = 0.3 * x[:, 0].std() / x[:, 1].std()
    for scale in ("zscore", "ar_residual"):
        cfg = dp.Stage1Config(n_lags=2, node_scale=scale, num_warmup=150, num_samples=150, progress_bar=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            post = fit_graph(jax.random.key(0), panel, config=cfg)
        w = np.asarray(post.samples["W"]).reshape(-1, 2)
        assert post.pip[0][0, 1] > 0.99
        assert abs(w[:, 1].mean() - truth) < 0.1 * truth, (scale, w.mean(0), truth)
        assert abs(w[:, 0].mean()) < 0.2 * truth


def test_node_scale_ar_residual_converts_mmm_betas_back():
    """mmm mode: a channel source enters as its z-scored Hill curve (not in AR-residual units), so beta is
    converted back by s_target alone; both scalings must estimate the same z-scale beta (without the conversion
    they differ by s_target ~ 0.4), and that is the true effect per sd of the saturated spend."""
    from dice_prob.models.transforms import carryover_kernel

    rng = np.random.default_rng(7)
    t = 300
    x = np.abs(rng.normal(size=(t, 2)))
    for s in range(1, t):
        x[s, 1] = 0.9 * x[s - 1, 1] + 0.5 * x[s - 1, 0] / (x[s - 1, 0] + 0.5) + 0.1 * rng.normal()
    panel = dp.Panel(x, roles=["channel", "target"], train_steps=t)
    means = {}
    for scale in ("zscore", "ar_residual"):
        cfg = dp.Stage1Config(
            mode="mmm", n_lags=2, node_scale=scale, num_warmup=150, num_samples=150, progress_bar=False
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            post = fit_graph(jax.random.key(0), panel, config=cfg)
        assert post.pip[0][0, 1] > 0.99
        # only the sampler's inputs are rescaled: the zscore fit's compiled program is reused
        if scale == "ar_residual":
            assert post.timing["compile_s"] == 0.0, post.timing
        means[scale] = float(np.asarray(post.samples["beta"]).mean())
        if scale == "zscore":  # the lag-1 weight beta * kappa(1): the kernel may spread some weight to lag 2
            ret, delay = (np.asarray(post.samples[k]).reshape(-1) for k in ("retention", "delay"))
            kern = np.asarray(carryover_kernel(2, ret, delay))  # (draws, 2)
            lag1 = float(np.mean(np.asarray(post.samples["beta"]).reshape(-1) * kern[:, 0]))
    from dice_prob.models.stage1 import ar_residual_sd

    z = (x - x.mean(0)) / x.std(0)
    s_target = float(ar_residual_sd(z[None], 2)[0, 1])
    assert 1.0 / s_target > 2.5  # an unconverted beta would be off by this factor
    assert 0.85 < means["ar_residual"] / means["zscore"] < 1.15, (means, s_target)
    # and both are the true effect per sd of the saturated spend (Hill inputs are z-scored), in target sds
    h = x[:, 0] / (x[:, 0] + 0.5)
    truth = 0.5 * h.std() / x[:, 1].std()
    assert abs(lag1 - truth) < 0.1 * truth, (lag1, truth)


def test_flip_moves_on_a_shared_graph_move_every_shops_residual_sd():
    """Shared graph over two shops: the joint moves update the graph's indicators and each shop's residual sd
    together; the strong edges are still found and the absent ones left out, and the noise site keeps moving."""
    post = _fit(jax.random.key(1), _panel(), CFG.replace(graph_sharing="shared", flip_moves=3))
    pip = post.pip[0] if post.pip.ndim == 3 else post.pip
    assert pip[0, 2] > 0.9 and pip[2, 3] > 0.9 and pip[1, 3] > 0.9
    assert pip[0, 3] < 0.5 and pip[1, 2] < 0.5
    sig = np.asarray(post.samples["sigma"])  # (chain, draw, shop, node)
    assert sig.shape[2] == 2 and np.all(np.std(sig, axis=1) > 0)
    # the moves' acceptance is reported: some proposals pass (sigma moves with them), and flipping the strong
    # edges off is refused, so neither 0 nor 1
    conv = post.convergence
    assert 0.0 < conv["flip_accept_min_node"] <= conv["flip_accept_rate"] < 1.0, conv


def _pi_slab_draws(pi_means, slab_means, *, n=200, pi_sd=0.02, slab_log_sd=0.05, seed=0):
    """(C, n, G) pi and slab draws around given per-chain means (C, G); a stand-in for a fitted posterior."""
    rng = np.random.default_rng(seed)
    pi_means, slab_means = np.asarray(pi_means, float), np.asarray(slab_means, float)
    pi = pi_means[:, None] + pi_sd * rng.standard_normal((pi_means.shape[0], n, pi_means.shape[1]))
    slab = slab_means[:, None] * np.exp(slab_log_sd * rng.standard_normal(pi.shape))
    return {"pi": np.clip(pi, 1e-3, 1 - 1e-3), "slab": slab}


def test_chain_split_finds_the_graphs_whose_chains_sit_in_different_modes():
    from dice_prob.inference.stage1 import _chain_split

    # graph 0 agrees; graph 1 is the diagnosed learned-slab split (all edges on in a narrow slab vs all off);
    # graph 2 has the same pi in both chains but slab sds a factor 3 apart
    s = _pi_slab_draws([[0.5, 0.86, 0.3], [0.5, 0.04, 0.3]], [[0.5, 0.04, 0.3], [0.5, 1.8, 0.9]])
    split = _chain_split(s)
    assert split["n_graphs"] == 3 and split["graphs"] == [1, 2]
    np.testing.assert_allclose(split["pi_by_chain"][0], [0.86, 0.04], atol=0.01)
    np.testing.assert_allclose(split["slab_by_chain"][0], [0.04, 1.8], rtol=0.02)
    # chains that differ by less than the limits, or by a gap the within-chain spread covers, are not split
    assert _chain_split(_pi_slab_draws([[0.5, 0.3], [0.55, 0.3]], [[0.5, 0.3], [0.8, 0.3]])) is None
    wide = _pi_slab_draws([[0.3], [0.6]], [[0.5], [0.5]], pi_sd=0.2)
    assert _chain_split(wide) is None
    # without a learned slab only pi is read; one chain cannot split
    split = _chain_split({"pi": s["pi"]})
    assert split["graphs"] == [1] and split["slab_by_chain"] is None
    assert _chain_split({"pi": s["pi"][:1]}) is None


def test_a_chain_split_warning_says_more_draws_will_not_help_and_names_the_fixed_slab():
    from dice_prob.inference.stage1 import _chain_split, _warn_if_poor

    s = _pi_slab_draws([[0.86], [0.04]], [[0.04], [1.8]])
    conv = {
        "ok": False,
        "max_r_hat": 40.0,
        "r_hat_threshold": 1.01,
        "min_ess": 3.0,
        "ess_required": 200,
        "n_divergences": 0,
        "chain_split": _chain_split(s),
    }
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor(conv)
    msg = str(rec[0].message)
    assert "different modes on 1 of 1 graph(s)" in msg and "pi by chain 0.86/0.04" in msg
    assert "more draws will not join them" in msg and "learn_slab=False" in msg
    assert "Increase Stage1Config.num_warmup" not in msg
    # the suggested config validates, also from a config that used flip moves (they need the plain slab)
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor(conv, dp.Stage1Config(flip_moves=4))
    assert "slab_grid=(0.1, 0.3, 1.0), flip_moves=0)" in str(rec[0].message)
    dp.Stage1Config(flip_moves=4).replace(learn_slab=False, slab_grid=(0.1, 0.3, 1.0), flip_moves=0)
    # a fixed slab has no learned scale to blame: the split is still named, the learned-slab advice is not
    conv["chain_split"] = _chain_split({"pi": s["pi"]})
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor(conv)
    assert "different modes" in str(rec[0].message) and "learn_slab" not in str(rec[0].message)


def test_edge_split_lists_edges_that_are_on_in_some_chains_and_off_in_others():
    from dice_prob.inference.stage1 import _edge_split, _warn_if_poor

    rng = np.random.default_rng(0)
    incl = np.clip(0.5 + 0.05 * rng.standard_normal((4, 100, 2, 3, 3)), 0, 1)  # (C, n, G, d, d): agreeing
    incl[:, :, 1, 0, 2] = np.array([0.0, 0.96, 1.0, 0.0])[:, None]  # graph 1, a -> c: two states
    incl[:, :, 0, 1, 2] = np.array([0.2, 0.5, 0.6, 0.3])[:, None]  # span 0.4: within the limit
    split = _edge_split(incl, ("a", "b", "c"))
    assert split == {
        "n_edges": 1,
        "edges": [{"graph": 1, "source": "a", "target": "c", "by_chain": [0.0, 0.96, 1.0, 0.0]}],
    }
    assert _edge_split(incl[:1]) is None and _edge_split(np.delete(incl, [1, 2], axis=0)) is None
    # a shared graph (no graph axis) reads as graph 0; without names the indices are given
    assert _edge_split(incl[:, :, 1])["edges"][0] == {
        "graph": 0,
        "source": "0",
        "target": "2",
        "by_chain": [0.0, 0.96, 1.0, 0.0],
    }
    conv = {
        "ok": False,
        "max_r_hat": 5.3,
        "r_hat_threshold": 1.01,
        "min_ess": 3.0,
        "ess_required": 200,
        "n_divergences": 0,
        "chain_split": None,
        "edge_split": split,
        "flip_accept_rate": None,
    }
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor(conv)
    msg = str(rec[0].message)
    assert "disagree on 1 edge(s) (graph 1, a -> c: inclusion by chain 0.00/0.96/1.00/0.00)" in msg
    assert "Stage1Config(flip_moves=4)" in msg
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor({**conv, "flip_accept_rate": 0.1})
    assert "More Stage1Config.flip_moves" in str(rec[0].message)
    # a config that cannot take flip moves is not told to use them
    with pytest.warns(ConvergenceWarning) as rec:
        _warn_if_poor(conv, CFG.replace(learn_slab=False, slab_grid=(0.1, 0.3, 1.0)))
    msg = str(rec[0].message)
    assert "flip_moves=4" not in msg and "need the collapsed edge sampler and the plain slab" in msg
    dp.Stage1Config(flip_moves=4)  # the advice given above validates with the defaults
