"""train_decoder / TrainedDecoder / evaluate_mse: determinism, checkpoints, graph inputs, errors, learning."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dice_prob as dp
from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError, InputTypeError
from dice_prob.inference.train import (
    _RIDGE_GRID,
    TrainedDecoder,
    _build_decoder_eager,
    _graph_moments,
    _ls_ar_init,
    _ls_init,
    _split_train_val,
    build_decoder,
    evaluate_mse,
    resolve_graph,
    train_decoder,
)

D = 4
TINY = dp.DecoderConfig(
    hidden_size=4,
    message_size=3,
    embed_size=2,
    ar_lags=2,
    history=6,
    horizon=2,
    batch_size=32,
    max_epochs=3,
    patience=5,
    progress_bar=False,
)


@pytest.mark.parametrize(
    ("architecture", "hidden"), [("graph_safe", 4), ("graph_safe", 16), ("dense", 8), ("ar_only", 4)]
)
def test_jitted_build_gives_the_eager_weights_bit_for_bit(architecture, hidden):
    """build_decoder traces the construction as one program; weights and static fields equal eager construction
    (the graph-safe decoder with its Hill head, whose draws are scaled by 0.1, not a power of two)."""
    cfg = TINY.replace(architecture=architecture, hidden_size=hidden, hill_head=architecture == "graph_safe")
    kw = dict(config=cfg, context_size=2, target_index=-1, context_mean=np.array([0.3, -0.2]))
    kw["context_scale"] = np.array([1.5, 2.0])
    jitted = build_decoder(jax.random.key(3), D, **kw)
    eager = _build_decoder_eager(jax.random.key(3), D, cfg, 2, -1, (0.3, -0.2), (1.5, 2.0))
    arr_j, static_j = eqx.partition(jitted, eqx.is_array)
    arr_e, static_e = eqx.partition(eager, eqx.is_array)
    assert jax.tree_util.tree_structure(arr_j) == jax.tree_util.tree_structure(arr_e)
    assert eqx.tree_equal(static_j, static_e)
    for a, b in zip(jax.tree_util.tree_leaves(arr_j), jax.tree_util.tree_leaves(arr_e), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if architecture != "ar_only":  # the AR-only decoder reads no context
        assert jitted.context_mean == (0.3, -0.2) and jitted.context_scale == (1.5, 2.0)


def _var_panel(seed=0, shops=3, steps=60, noise=0.3):
    """A small VAR(1) chain 0 -> 1 -> 2 -> 3 (target last) with known coefficients."""
    rng = np.random.default_rng(seed)
    a = np.zeros((D, D))
    a[0, 1], a[1, 2], a[2, 3] = 0.8, -0.7, 0.9
    phi = np.array([0.6, 0.5, 0.4, 0.3])
    x = np.zeros((shops, steps + 30, D))
    for t in range(1, steps + 30):
        x[:, t] = phi * x[:, t - 1] + x[:, t - 1] @ a + noise * rng.normal(size=(shops, D))
    return dp.Panel(x[:, 30:]), (a != 0).astype(float)


@pytest.fixture(scope="module")
def panel_and_truth():
    return _var_panel()


@pytest.fixture(scope="module")
def trained(panel_and_truth):
    panel, truth = panel_and_truth
    return train_decoder(jax.random.key(0), panel, graph=truth, config=TINY, label="oracle")


def _leaves(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))


def test_same_key_identical_weights_other_key_differs(panel_and_truth, trained):
    panel, truth = panel_and_truth
    again = train_decoder(jax.random.key(0), panel, graph=truth, config=TINY, label="oracle")
    for u, v in zip(_leaves(trained.model), _leaves(again.model), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    other = train_decoder(jax.random.key(1), panel, graph=truth, config=TINY)
    assert any(
        not np.array_equal(np.asarray(u), np.asarray(v))
        for u, v in zip(_leaves(trained.model), _leaves(other.model), strict=True)
    )
    assert other.train_graph_label == "array"


def test_trained_decoder_fields_and_history(trained, panel_and_truth):
    panel, _ = panel_and_truth
    assert trained.train_graph_label == "oracle" and trained.nodes == panel.nodes
    assert trained.target_index == panel.target_index == D - 1
    h = trained.history
    assert len(h["train_loss"]) == len(h["val_loss"]) == h["epochs_run"] <= TINY.max_epochs
    assert h["n_train_windows"] > 0 and h["n_val_windows"] > 0
    assert np.isfinite(h["train_loss"]).all()
    assert trained.uses_graph
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        trained.config = TINY  # type: ignore[misc]


def test_checkpoint_round_trip_identical_predictions(trained, panel_and_truth, tmp_path):
    panel, truth = panel_and_truth
    path = trained.save(tmp_path / "dec")
    meta = json.loads((path / "decoder.json").read_text())
    assert meta["architecture"] == "GraphSafeDecoder" and meta["config"]["hidden_size"] == 4
    assert not list(path.glob("*.tmp")) and not list(path.glob("*.pkl"))
    loaded = TrainedDecoder.load(path)
    x = jnp.asarray(panel.scaled[0, :6], jnp.float32)
    f = eqx.filter_jit(lambda m, xx, g: m.rollout(xx, 3, g))
    np.testing.assert_array_equal(
        np.asarray(f(trained.model, x, truth)), np.asarray(f(loaded.model, x, truth))
    )
    assert loaded.config == trained.config and loaded.train_graph_label == "oracle"
    assert loaded.history["epochs_run"] == trained.history["epochs_run"]
    with pytest.raises(DataValidationError, match="checkpoint"):
        TrainedDecoder.load(tmp_path / "nothing-here")


def test_rollout_is_vmappable_over_graphs_and_windows(trained, panel_and_truth):
    panel, truth = panel_and_truth
    xs = jnp.asarray(np.stack([panel.scaled[0, :6], panel.scaled[1, 10:16]]), jnp.float32)
    gs = jnp.asarray(np.stack([truth, np.zeros((D, D)), truth * 0.5]), jnp.float32)
    out = jax.jit(jax.vmap(lambda g: jax.vmap(lambda x: trained.rollout(x, 4, g))(xs)))(gs)
    assert out.shape == (3, 2, 4, D)
    single = trained.rollout(xs[1], 4, gs[2])
    np.testing.assert_allclose(np.asarray(out[2, 1]), np.asarray(single), rtol=1e-5, atol=1e-5)


def test_evaluate_mse_stack_matches_loop(trained, panel_and_truth):
    panel, truth = panel_and_truth
    stack = np.stack([truth, np.zeros((D, D)), 0.5 * truth])
    res = evaluate_mse(trained, panel, stack, horizon=2)
    assert res["target"].shape == (3,) and res["all"].shape == (3,)
    for s in range(3):
        one = evaluate_mse(trained, panel, stack[s], horizon=2)
        assert one["target"] == pytest.approx(res["target"][s], rel=1e-5)
        assert one["all"] == pytest.approx(res["all"][s], rel=1e-5)
    per_shop = evaluate_mse(trained, panel, np.stack([truth] * panel.n_shops), horizon=2, per_shop=True)
    assert per_shop["target"] == pytest.approx(res["target"][0], rel=1e-5)


def test_bad_graph_inputs_raise_clear_errors(panel_and_truth):
    panel, truth = panel_and_truth
    key = jax.random.key(0)
    with pytest.raises(GraphValidationError, match="shape"):
        train_decoder(key, panel, graph=np.zeros((D + 1, D + 1)), config=TINY)
    bad = truth.copy()
    bad[0, 2] = np.nan
    with pytest.raises(GraphValidationError, match="NaN"):
        train_decoder(key, panel, graph=bad, config=TINY)
    loops = truth + np.eye(D)
    with pytest.raises(GraphValidationError, match="self-loops"):
        train_decoder(key, panel, graph=loops, config=TINY)
    with pytest.raises(GraphValidationError, match="shops"):
        train_decoder(key, panel, graph=np.stack([truth] * (panel.n_shops + 1)), config=TINY)
    with pytest.raises(ConfigError, match="unknown graph"):
        train_decoder(key, panel, graph="oracle", config=TINY)
    with pytest.raises(ConfigError, match="needs a graph"):
        train_decoder(key, panel, graph=None, config=TINY)
    with pytest.raises(InputTypeError):
        train_decoder(key, panel.values, graph=truth, config=TINY)


class _FakePosterior:
    """Duck-typed GraphPosterior: per-shop draw probabilities."""

    def __init__(self, probs):
        self.draw_probs = probs
        self.sharing = "shop"

    def median_graph(self, shop=None):
        return (self.draw_probs.mean(axis=0) > 0.5).astype(float)


def test_posterior_and_hard_modes(panel_and_truth):
    panel, truth = panel_and_truth
    r = panel.n_shops
    probs = np.broadcast_to(truth * 0.9, (5, r, D, D)).copy()
    post = _FakePosterior(probs)
    src = resolve_graph(panel, post, TINY)
    assert src.mode == "sample" and src.probs.shape == (5, r, D, D)
    hard = resolve_graph(panel, post, TINY.replace(graph_mode="hard"))
    assert hard.mode == "fixed" and np.array_equal(hard.probs[0], np.stack([truth] * r))
    dec = train_decoder(jax.random.key(3), panel, graph=post, config=TINY.replace(max_epochs=1))
    assert dec.train_graph_label == "posterior"
    with pytest.raises(GraphValidationError, match=r"\[0, 1\]"):
        resolve_graph(panel, _FakePosterior(probs * 2), TINY)


def test_window_graph_draws_follow_probabilities(panel_and_truth):
    from dice_prob.inference.train import _window_graphs

    panel, truth = panel_and_truth
    probs = np.zeros((3, 1, D, D), np.float32)
    probs[:, 0, 0, 1] = 0.5
    probs[:, 0, 2, 3] = 1.0
    src = resolve_graph(panel, "empty", TINY)
    src = type(src)("sample", probs, np.zeros(panel.n_shops, np.int32), "posterior")
    g = np.asarray(
        _window_graphs(
            src.mode,
            jnp.asarray(probs),
            jnp.zeros(3, jnp.int32),
            jnp.zeros(4000, jnp.int32),
            jax.random.key(0),
        )
    )
    assert g.shape == (4000, D, D)
    assert abs(g[:, 0, 1].mean() - 0.5) < 0.04  # 4000 Bernoulli(0.5): sd 0.008
    assert np.all(g[:, 2, 3] == 1) and g.sum() == g[:, 0, 1].sum() + g[:, 2, 3].sum()


def test_full_and_empty_and_baselines(panel_and_truth):
    panel, _ = panel_and_truth
    full = resolve_graph(panel, "full", TINY)
    assert np.array_equal(full.probs[0, 0], panel.support_mask().astype(np.float32))
    off = resolve_graph(panel, "full", TINY.replace(full_graph="offdiag"))
    assert off.probs[0, 0].sum() == D * (D - 1)
    for arch in ("dense", "ar_only"):
        dec = train_decoder(
            jax.random.key(0), panel, graph=None, config=TINY.replace(architecture=arch, max_epochs=1)
        )
        assert dec.train_graph_label == "none" and not dec.uses_graph
        assert dec.rollout(panel.scaled[0, :6], 2).shape == (2, D)


def test_ls_ar_warm_start_recovers_ar1():
    rng = np.random.default_rng(0)
    x = np.zeros((20, 200, 1))
    for t in range(1, 200):
        x[:, t] = 0.7 * x[:, t - 1] + rng.normal(size=(20, 1))  # unit-scale, like standardised data
    coef, bias, resid = _ls_ar_init(x[:, :150], x[:, 150:], 2)
    assert coef[0, 0] == pytest.approx(0.7, abs=0.03) and abs(coef[0, 1]) < 0.03
    assert resid[0] == pytest.approx(1.0, rel=0.1)


def _chain_windows(seed=0, shops=20, steps=300):
    panel, truth = _var_panel(seed=seed, shops=shops, steps=steps, noise=1.0)
    from dice_prob.data.windows import forecast_windows

    w = forecast_windows(panel.values, history=10, horizon=3, split="all")
    return w, truth, panel


def test_graph_restricted_ls_var_recovers_chain_coefficients():
    """Warm start along the oracle graph = least-squares VAR restricted to the true parents (known truth)."""
    w, truth, panel = _chain_windows()
    src = resolve_graph(panel, truth, TINY)
    m1, m2 = _graph_moments(src)
    bias, coef, kernel, resid, *_ = _ls_init(w.history, w.future, np.zeros(len(w), np.int64), m1, m2, 2)
    expect = {(0, 1): 0.8, (1, 2): -0.7, (2, 3): 0.9}
    for (j, i), v in expect.items():
        assert kernel[j, i, 0] == pytest.approx(v, abs=0.05) and abs(kernel[j, i, 1]) < 0.05
    np.testing.assert_allclose(coef[:, 0], [0.6, 0.5, 0.4, 0.3], atol=0.05)
    assert np.all(np.abs(coef[:, 1]) < 0.05) and np.all(np.abs(bias) < 0.05)
    off = truth == 0
    assert np.all(kernel[off] == 0.0)  # non-edges (and the diagonal) are exactly zero, not just small
    # the own-lag-only residual variance is graph-independent: node 0 has no parent (noise 1), node 1 does
    assert resid[0] == pytest.approx(1.0, rel=0.1) and resid[1] > 1.3


def test_ls_var_under_random_graphs_minimises_the_expected_loss():
    """Posterior sampling: the closed form from graph moments equals least squares over every enumerated graph."""
    w, _, panel = _chain_windows(seed=1, shops=4, steps=80)
    probs = np.zeros((2, 1, D, D))
    probs[:, 0, 2, 3] = [0.8, 0.1]  # two correlated uncertain parents of node 3 (draw-dependent)
    probs[:, 0, 1, 3] = [0.2, 0.9]
    probs[:, 0, 0, 1] = [0.3, 0.7]
    src = resolve_graph(panel, "empty", TINY)
    src = type(src)("sample", probs, np.zeros(1, np.int32), "posterior")
    m1, m2 = _graph_moments(src)
    p, ridge = 2, 1e-3
    bias, coef, kernel, *_ = _ls_init(w.history, w.future, np.zeros(len(w), np.int64), m1, m2, p, ridge)
    series = np.concatenate([w.history, w.future], axis=1)
    n, length, _ = series.shape
    lags = np.stack([series[:, p - 1 - k : length - 1 - k] for k in range(p)], axis=-1).reshape(-1, D, p)
    y = series[:, p:].reshape(-1, D)
    for i, parents in ((3, (1, 2)), (1, (0,))):
        rows, ys = [], []
        for s in range(2):
            for gates in np.ndindex(*(2,) * len(parents)):
                prob = 0.5 * np.prod(
                    [
                        probs[s, 0, j, i] if g else 1 - probs[s, 0, j, i]
                        for j, g in zip(parents, gates, strict=True)
                    ]
                )
                cols = [np.ones((len(y), 1)), lags[:, i]] + [
                    g * lags[:, j] for j, g in zip(parents, gates, strict=True)
                ]
                rows.append(np.sqrt(prob) * np.concatenate(cols, axis=1))
                ys.append(np.sqrt(prob) * y[:, i])
        x, yy = np.concatenate(rows), np.concatenate(ys)
        pen = np.r_[0.0, np.ones(x.shape[1] - 1)]
        beta = np.linalg.solve(x.T @ x + ridge * len(y) * np.diag(pen), x.T @ yy)
        assert bias[i] == pytest.approx(beta[0], abs=1e-8)
        np.testing.assert_allclose(coef[i], beta[1 : p + 1], atol=1e-8)
        for k, j in enumerate(parents):
            np.testing.assert_allclose(kernel[j, i], beta[p + 1 + k * p : p + 1 + (k + 1) * p], atol=1e-8)
    assert np.all(kernel[:, 0] == 0) and np.all(kernel[:, 2] == 0)  # no possible parent -> exactly zero


def _sparse_var(seed, shops, steps, d=D):
    """VAR(1) chain 0 -> 1 -> 2 -> 3 with unit noise; every other lag and pair is truly zero."""
    rng = np.random.default_rng(seed)
    a = np.zeros((d, d))
    a[0, 1], a[1, 2], a[2, 3] = 0.5, -0.4, 0.5
    phi = np.full(d, 0.5)
    x = np.zeros((shops, steps + 50, d))
    for t in range(1, steps + 50):
        x[:, t] = phi * x[:, t - 1] + x[:, t - 1] @ a + rng.normal(size=(shops, d))
    return x[:, 50:], a, phi


def _full_var_fit(x, p, ridge):
    from dice_prob.data.windows import forecast_windows

    w = forecast_windows(x, history=10, horizon=3, split="all")
    a = (1.0 - np.eye(D))[None]
    m2 = np.einsum("kji,kli->kijl", a, a)
    return _ls_init(
        w.history, w.future, np.zeros(len(w), np.int64), a, m2, p, ridge, shop=w.shop, origin=w.origin
    )


def _coef_error(fit, a, phi, p):
    true_k = np.zeros((D, D, p))
    true_k[:, :, 0] = a
    true_c = np.zeros((D, p))
    true_c[:, 0] = phi
    return float(np.sum((fit.kernel - true_k) ** 2) + np.sum((fit.coef - true_c) ** 2))


def test_ridge_cv_matches_numpy_blocked_cross_validation():
    """ls_ridge="auto": the CV curve and the chosen fit equal an explicit NumPy blocked 5-fold CV over the
    (deduplicated) regression rows of the series the overlapping windows were cut from."""
    x, _, _ = _sparse_var(0, shops=2, steps=40)
    p = 6
    fit = _full_var_fit(x, p, "auto")
    shops, steps, _ = x.shape
    rows, ys, times = [], [], []
    for r in range(shops):
        for t in range(p, steps):
            rows.append(np.r_[1.0, x[r, t - p : t][::-1].T.reshape(-1)])  # node-major, lag 1 first
            ys.append(x[r, t])
            times.append(t)
    xm, ym, times = np.asarray(rows), np.asarray(ys), np.asarray(times)
    fold = ((times - p) * 5) // (steps - p)
    pen = np.diag(np.r_[0.0, np.ones(xm.shape[1] - 1)])

    def ridge(xs, y, c):
        return np.linalg.solve(xs.T @ xs + c * len(y) * pen, xs.T @ y)

    for i in range(D):
        cols = np.r_[True, np.repeat(np.arange(D), p) != i]  # own lags move to the front below
        order = np.r_[0, 1 + i * p + np.arange(p), np.flatnonzero(cols[1:]) + 1]
        xi = xm[:, order]
        cv = [
            sum(
                np.sum((ym[fold == f, i] - xi[fold == f] @ ridge(xi[fold != f], ym[fold != f, i], c)) ** 2)
                for f in range(5)
            )
            / len(ym)
            for c in _RIDGE_GRID
        ]
        np.testing.assert_allclose(fit.cv_mse[i], cv, rtol=1e-7)
        c_best = _RIDGE_GRID[int(np.argmin(cv))]
        assert fit.ridge[i] == c_best
        beta = ridge(xi, ym[:, i], c_best)
        assert fit.bias[i] == pytest.approx(beta[0], abs=1e-9)
        np.testing.assert_allclose(fit.coef[i], beta[1 : p + 1], atol=1e-9)
        others = [j for j in range(D) if j != i]
        np.testing.assert_allclose(fit.kernel[others, i].reshape(-1), beta[p + 1 :], atol=1e-9)


def test_ridge_cv_shrinks_an_overparameterised_var_and_not_a_well_determined_one():
    """Known truth (a sparse VAR(1)): a full VAR(6) on 2 shops x 40 steps has 25 slopes per equation for 68
    rows -- CV picks a strong ridge and lands much closer to the true coefficients than (almost) plain least
    squares; on 20 shops x 400 steps it picks a penalty that shrinks by about 1% at most and matches OLS."""
    p = 6
    small_ridge, ratio_small, ratio_big = [], [], []
    for seed in range(3):
        x, a, phi = _sparse_var(seed, shops=2, steps=40)
        auto, ols = _full_var_fit(x, p, "auto"), _full_var_fit(x, p, 1e-4)
        small_ridge.append(np.median(auto.ridge))
        ratio_small.append(_coef_error(auto, a, phi, p) / _coef_error(ols, a, phi, p))
        x, a, phi = _sparse_var(seed, shops=20, steps=400)
        auto, ols = _full_var_fit(x, p, "auto"), _full_var_fit(x, p, 1e-4)
        assert np.all(auto.ridge <= 0.03)  # penalty <= 3% of the rows on unit-variance lags
        ratio_big.append(_coef_error(auto, a, phi, p) / _coef_error(ols, a, phi, p))
    assert min(small_ridge) >= 0.3  # >= 100x the largest plentiful-data choice above
    assert max(ratio_small) < 0.6  # the shrunk VAR is much nearer the truth
    assert max(ratio_big) < 1.05  # and with plenty of data it is (at least) as good as OLS


def test_ls_ridge_config_validation_round_trip_and_history(panel_and_truth):
    for bad in ("cv", -1.0, True):
        with pytest.raises(ConfigError, match="ls_ridge"):
            dp.DecoderConfig(ls_ridge=bad)
    with pytest.raises(ConfigError, match="ls_refit"):
        dp.DecoderConfig(ls_refit="yes")
    for ok in ("auto", "rollout", 0.0, 0.01):
        cfg = dp.DecoderConfig(ls_ridge=ok)
        assert dp.DecoderConfig.from_json(cfg.to_json()) == cfg
    panel, truth = panel_and_truth
    fixed = train_decoder(
        jax.random.key(0), panel, graph=truth, config=TINY.replace(ls_ridge=0.05, max_epochs=1)
    )
    assert fixed.history["ls_ridge"] == [0.05] * D and fixed.history["ls_cv_mse"] is None
    auto = train_decoder(jax.random.key(0), panel, graph=truth, config=TINY.replace(max_epochs=1))
    assert len(auto.history["ls_ridge"]) == D
    assert set(auto.history["ls_ridge"]) <= set(auto.history["ls_ridge_grid"])
    assert np.asarray(auto.history["ls_cv_mse"]).shape == (D, len(_RIDGE_GRID))


@pytest.mark.parametrize("refit", [False, True])
def test_dense_baseline_starts_at_the_numpy_least_squares_var(panel_and_truth, refit):
    """The dense baseline's linear path (own lags + every other node's lags) is warm-started with the
    unrestricted least-squares VAR: with a learning rate too small to move anything the returned decoder's
    one-step predictions are those of a NumPy ridge VAR fitted on the (deduplicated) training rows -- those of
    the windows left after the validation split, or, refitted once the warm start is kept (``ls_refit``), those
    of every training window."""
    panel, _ = panel_and_truth
    cfg = TINY.replace(architecture="dense", learning_rate=1e-12, max_epochs=2, patience=1, ls_refit=refit)
    dec = train_decoder(jax.random.key(0), panel, graph=None, config=cfg)
    assert dec.history["best_epoch"] == -1 and dec.history["ls_refit"] is refit
    p = cfg.ar_lags
    from dice_prob.data.windows import forecast_windows

    win = forecast_windows(panel.scaled, history=cfg.history, horizon=cfg.horizon, split="train")
    tr, _ = _split_train_val(win, cfg.val_fraction)
    if refit:
        tr = win
    z = panel.scaled
    last = {}  # (shop, time) rows covered by the training windows
    for s, o in zip(tr.shop, tr.origin, strict=True):
        for t in range(o - cfg.history + 1 + p, o + cfg.horizon + 1):
            last[(int(s), t)] = True
    keys = sorted(last)
    xm = np.asarray([np.r_[1.0, z[s, t - p : t][::-1].T.reshape(-1)] for s, t in keys])
    ym = np.asarray([z[s, t] for s, t in keys])
    pen = np.diag(np.r_[0.0, np.ones(xm.shape[1] - 1)])
    ridge = dec.history["ls_ridge_refit" if refit else "ls_ridge"]
    kern = np.asarray(dec.model.var_kernel)
    for i in range(D):
        beta = np.linalg.solve(xm.T @ xm + ridge[i] * len(ym) * pen, xm.T @ ym[:, i])
        lag = beta[1:].reshape(D, p)
        assert float(dec.model.ar_bias[i]) == pytest.approx(beta[0], abs=1e-5)
        np.testing.assert_allclose(np.asarray(dec.model.ar_coef[i]), lag[i], atol=1e-5)
        others = [j for j in range(D) if j != i]
        np.testing.assert_allclose(kern[others, i], lag[others], atol=1e-5)
    # the decoder's one-step forecasts over a test window are the NumPy VAR's
    x = z[0, -12:]
    pred = np.asarray(dec.predict(x))[p - 1 : -1]
    ref = np.stack(
        [
            [np.r_[1.0, x[t - p + 1 : t + 1][::-1].T.reshape(-1)] for t in range(p - 1, len(x) - 1)]
            @ np.linalg.solve(xm.T @ xm + ridge[i] * len(ym) * pen, xm.T @ ym[:, i])
            for i in range(D)
        ],
        axis=1,
    )
    np.testing.assert_allclose(pred, ref, atol=1e-4)
    # var_init=False: own lags only, the cross-node path starts at zero
    own = train_decoder(jax.random.key(0), panel, graph=None, config=cfg.replace(var_init=False))
    assert np.all(np.asarray(own.model.var_kernel) == 0)


@pytest.mark.parametrize("arch", ["graph_safe", "dense", "ar_only"])
@pytest.mark.parametrize("select_on", ["loss", "target"])
def test_every_variant_returns_the_better_of_its_warm_start_and_training(panel_and_truth, arch, select_on):
    """With ``select_se=0`` early stopping keeps the least-squares start unless training beats it on validation,
    for every variant and criterion: the kept criterion is the minimum over the warm start and every epoch, and a
    best_epoch of -1 means the weights are exactly the warm start's."""
    panel, truth = panel_and_truth
    cfg = TINY.replace(
        architecture=arch, max_epochs=6, patience=6, learning_rate=3e-2, select_on=select_on, select_se=0.0
    )
    g = truth if arch == "graph_safe" else None
    dec = train_decoder(jax.random.key(2), panel, graph=g, config=cfg)
    h = dec.history
    init, per_epoch = (
        (h["init_val_loss"], h["val_loss"])
        if select_on == "loss"
        else (h["init_val_target_mse"], h["val_target_mse"])
    )
    assert h["best_val_loss"] == pytest.approx(min([init, *per_epoch]), rel=1e-6)
    assert h["best_val_loss"] <= init
    assert h["select_on"] == select_on
    start = train_decoder(jax.random.key(2), panel, graph=g, config=cfg.replace(learning_rate=1e-12))
    if h["best_epoch"] == -1:
        for u, v in zip(_leaves(dec.model), _leaves(start.model), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6)


def test_one_standard_error_rule_keeps_the_warm_start_unless_the_gain_is_clear(panel_and_truth):
    """``select_se``: a checkpoint must beat the warm start by that many standard errors. A huge margin keeps the
    warm start's exact weights even though training lowered the validation loss, and training itself (the
    per-epoch losses, the number of epochs) is unchanged by the selection rule."""
    panel, truth = panel_and_truth
    # var_init=False: the cross-node path starts at zero, so training has a large, clear gain to make
    cfg = TINY.replace(
        max_epochs=6, patience=6, learning_rate=3e-2, select_se=0.0, var_init=False, select_on="loss"
    )
    free = train_decoder(jax.random.key(2), panel, graph=truth, config=cfg)
    assert free.history["best_epoch"] >= 0
    assert free.history["best_val_loss"] < 0.8 * free.history["init_val_loss"]
    # the default one-standard-error margin accepts a gain that large
    assert (
        train_decoder(jax.random.key(2), panel, graph=truth, config=cfg.replace(select_se=1.0)).history[
            "best_epoch"
        ]
        == free.history["best_epoch"]
    )
    strict = train_decoder(jax.random.key(2), panel, graph=truth, config=cfg.replace(select_se=1e6))
    assert strict.history["best_epoch"] == -1
    assert strict.history["best_val_loss"] == pytest.approx(strict.history["init_val_loss"], rel=1e-6)
    start = train_decoder(jax.random.key(2), panel, graph=truth, config=cfg.replace(learning_rate=1e-12))
    for u, v in zip(_leaves(strict.model), _leaves(start.model), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6)
    # patience counts raw progress, so the strict run trains exactly as long as the free one
    assert strict.history["epochs_run"] == free.history["epochs_run"]
    np.testing.assert_allclose(strict.history["val_loss"], free.history["val_loss"], rtol=1e-6)


def test_paired_gain_matches_a_numpy_cluster_robust_standard_error():
    from dice_prob.inference.train import _paired_gain, _val_clusters

    rng = np.random.default_rng(0)
    shop = np.repeat(np.arange(4), 9)
    origin = np.tile(np.arange(60, 69), 4)
    cid, k = _val_clusters(shop, origin, horizon=7)
    assert k == 8  # origins 60..62 and 63..68 fall in two blocks of 7 (60 // 7 = 8, 63 // 7 = 9) per shop
    diff = rng.normal(size=shop.size)
    mean, se = _paired_gain(diff, cid, k)
    n = diff.size
    # CR1 sandwich for a mean: (k / (k - 1)) * sum over clusters of (sum of centred values in the cluster)^2 / n^2
    resid = diff - diff.mean()
    ref = np.sqrt(k / (k - 1) * sum(resid[cid == c].sum() ** 2 for c in range(k)) / n**2)
    assert float(mean) == pytest.approx(diff.mean(), abs=1e-6)
    assert float(se) == pytest.approx(ref, rel=1e-5)
    # one shop and one block: every window is its own cluster (the plain standard error of the mean)
    cid1, k1 = _val_clusters(np.zeros(5, int), np.arange(70, 75), horizon=7)
    assert k1 == 5 and sorted(cid1.tolist()) == [0, 1, 2, 3, 4]
    _, se1 = _paired_gain(diff[:5], cid1, k1)
    assert float(se1) == pytest.approx(np.std(diff[:5], ddof=1) / np.sqrt(5), rel=1e-5)


def test_warm_start_is_the_ls_var_and_early_stopping_can_keep_it(panel_and_truth):
    """With a learning rate too small to move the weights, the returned decoder is the least-squares VAR."""
    panel, truth = panel_and_truth
    cfg = TINY.replace(learning_rate=1e-12, max_epochs=2, patience=1)
    dec = train_decoder(jax.random.key(0), panel, graph=truth, config=cfg)
    assert dec.history["best_epoch"] in (-1, 0, 1)
    k = np.asarray(dec.model.edge_kernel)
    assert np.all(k[truth == 0] == 0) and np.all(np.abs(k[truth != 0][:, 0]) > 0.2)
    no_var = train_decoder(jax.random.key(0), panel, graph=truth, config=cfg.replace(var_init=False))
    assert np.all(np.asarray(no_var.model.edge_kernel) == 0)
    assert np.all(np.abs(np.asarray(no_var.model.ar_coef)[:, 0]) > 0.05)  # own lags still warm-started


def test_second_call_with_same_shapes_reuses_the_compiled_loop(panel_and_truth, caplog):
    """The training loop is compiled once per (architecture, shapes, static settings), not once per call."""
    import logging

    panel, truth = panel_and_truth
    cfg = TINY.replace(batch_size=16, max_epochs=2)

    def compiled(**kw):
        caplog.clear()
        with jax.log_compiles(True), caplog.at_level(logging.WARNING):
            train_decoder(jax.random.key(kw.pop("seed", 0)), panel, graph=truth, config=cfg.replace(**kw))
        return any("_train_chunk" in r.getMessage() for r in caplog.records)

    compiled()  # may or may not compile (another test can have compiled these shapes)
    assert not compiled(seed=5)  # other key, other graph values: same program
    assert compiled(batch_size=8, max_epochs=3)  # new static settings: the detector does see a compilation


def test_too_short_panel_raises():
    with pytest.raises(DataValidationError):
        train_decoder(
            jax.random.key(0),
            dp.Panel(np.random.default_rng(0).normal(size=(1, 9, 3))),
            graph="empty",
            config=TINY,
        )


@pytest.mark.slow
def test_training_beats_persistence_and_flat_mean():
    """On a VAR chain the oracle-graph decoder must beat persistence and the flat mean on the target."""
    panel, truth = _var_panel(seed=1, shops=6, steps=150)
    cfg = dp.DecoderConfig(
        hidden_size=8, message_size=4, embed_size=4, history=10, horizon=3, max_epochs=40, progress_bar=False
    )
    dec = train_decoder(jax.random.key(0), panel, graph=truth, config=cfg)
    res = evaluate_mse(dec, panel, truth, horizon=3)
    from dice_prob.data.windows import forecast_windows

    w = forecast_windows(panel.scaled, history=10, horizon=3, split="test")
    persist = np.mean((w.future[:, :, -1] - w.history[:, -1:, -1]) ** 2)
    flat = np.mean(w.future[:, :, -1] ** 2)
    assert res["target"] < 0.9 * min(persist, flat)


def test_rollout_floor_matches_numpy_blocked_forecast_cv():
    """ls_ridge="auto" with the rollout floor: each candidate's score equals an explicit NumPy blocked 5-fold CV
    of the 3-step free-running forecast of node 3 (full VAR(6) refitted on the other blocks' rows with penalties
    max(one-step choice, candidate); held out: the windows whose 3 forecast steps fall in the block), the chosen
    floor is its first minimum and the final penalties are raised to it."""
    x, _, _ = _sparse_var(0, shops=2, steps=40)
    p, h, node = 6, 3, 3
    from dice_prob.data.windows import forecast_windows

    w = forecast_windows(x, history=10, horizon=h, split="all")
    a = (1.0 - np.eye(D))[None]
    m2 = np.einsum("kji,kli->kijl", a, a)
    fit = _ls_init(
        w.history, w.future, np.zeros(len(w), np.int64), a, m2, p, "auto",
        shop=w.shop, origin=w.origin, rollout_cv=True, score_node=node,
    )  # fmt: skip
    shops, steps, _ = x.shape
    keys = [(r, t) for r in range(shops) for t in range(p, steps)]
    xm = np.asarray([np.r_[1.0, x[r, t - p : t][::-1].T.reshape(-1)] for r, t in keys])
    ym = np.asarray([x[r, t] for r, t in keys])
    fold = np.asarray([((t - p) * 5) // (steps - p) for _, t in keys])
    pen = np.diag(np.r_[0.0, np.ones(xm.shape[1] - 1)])
    lam1 = np.asarray([_RIDGE_GRID[int(np.argmin(c))] for c in fit.cv_mse])
    ref = []
    for c in (0.0, *_RIDGE_GRID):
        lam = np.maximum(lam1, c)
        sq = []
        for f in range(5):
            tr = fold != f
            beta = np.stack(
                [
                    np.linalg.solve(xm[tr].T @ xm[tr] + lam[i] * tr.sum() * pen, xm[tr].T @ ym[tr, i])
                    for i in range(D)
                ],
                axis=1,
            )  # (1 + D p, D)
            for r, o in zip(w.shop, w.origin, strict=True):
                if any(((t - p) * 5) // (steps - p) != f for t in range(o + 1, o + 1 + h)):
                    continue
                buf = list(x[r, o - p + 1 : o + 1])
                for k in range(h):
                    z = np.r_[1.0, np.asarray(buf[-p:])[::-1].T.reshape(-1)]
                    nxt = z @ beta
                    sq.append((nxt[node] - x[r, o + 1 + k, node]) ** 2)
                    buf.append(nxt)
        ref.append(np.mean(sq))
    np.testing.assert_allclose(fit.floor_cv, ref, rtol=1e-7)
    assert fit.floor == (0.0, *_RIDGE_GRID)[int(np.argmin(ref))]
    np.testing.assert_array_equal(fit.ridge, np.maximum(lam1, fit.floor))


def test_rollout_floor_leaves_a_well_determined_var_alone_and_is_recorded(panel_and_truth):
    """On 20 shops x 400 steps of the sparse VAR(1) chain the rollout floor stays at or below 3% of the rows (the
    one-step choice already forecasts well); train_decoder with ``ls_ridge="rollout"`` records the floor and its
    CV curve, and every node's penalty is at least the floor."""
    from dice_prob.data.windows import forecast_windows

    a = (1.0 - np.eye(D))[None]
    m2 = np.einsum("kji,kli->kijl", a, a)
    for seed in range(2):
        w = forecast_windows(_sparse_var(seed, shops=20, steps=400)[0], history=10, horizon=3, split="all")
        big = _ls_init(
            w.history, w.future, np.zeros(len(w), np.int64), a, m2, 6, "auto",
            shop=w.shop, origin=w.origin, rollout_cv=True, score_node=3,
        )  # fmt: skip
        assert big.floor <= 0.03 and big.floor_cv.shape == (len(_RIDGE_GRID) + 1,)
    panel, truth = panel_and_truth
    dec = train_decoder(
        jax.random.key(0), panel, graph=truth, config=TINY.replace(ls_ridge="rollout", max_epochs=1)
    )
    h = dec.history
    assert h["ls_ridge_floor"] in (0.0, *_RIDGE_GRID)
    assert len(h["ls_floor_cv_mse"]) == len(_RIDGE_GRID) + 1
    assert min(h["ls_ridge"]) >= h["ls_ridge_floor"]
    plain = train_decoder(jax.random.key(0), panel, graph=truth, config=TINY.replace(max_epochs=1))
    assert plain.history["ls_ridge_floor"] == 0.0 and plain.history["ls_floor_cv_mse"] is None
