"""CIG / AR-CIG against analytic answers on hand-built graph-safe decoders."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.data.panel import Panel
from dice_prob.data.windows import forecast_windows
from dice_prob.diagnostics.influence import ar_cig, as_graph_stack, cig, forecast_draws, influence
from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError, InputTypeError
from dice_prob.graph import reach

D = 5


class LinearVAR(eqx.Module):
    """Graph-safe linear VAR: y(t+1) = sum_l x(t-l) @ (B_l * A_offdiag + diag(own_l)). Rollout only."""

    B: jax.Array  # (L, d, d), B[l, src, dst]
    own: jax.Array  # (L, d)
    uses_graph: bool = eqx.field(static=True, default=True)

    def _coef(self, graph):
        d = self.B.shape[-1]
        a = jnp.asarray(graph) * (1.0 - jnp.eye(d))
        return self.B * a[None] + jax.vmap(jnp.diag)(self.own)

    def rollout(self, x_history, horizon, graph, context=None):
        m = self._coef(graph)
        n_lags = self.B.shape[0]
        buf = x_history[-n_lags:]

        def body(buf, _):
            y = sum(buf[-1 - k] @ m[k] for k in range(n_lags))
            return jnp.concatenate([buf[1:], y[None]], axis=0), y

        _, ys = jax.lax.scan(body, buf, None, length=horizon)
        return ys


class TanhGraphSafe(eqx.Module):
    """Nonlinear graph-safe recurrent decoder with private per-node states and init_state/step/rollout."""

    w_msg: jax.Array
    w_h: jax.Array
    w_out: jax.Array
    emb: jax.Array
    uses_graph: bool = eqx.field(static=True, default=True)

    def __init__(self, d, k, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.w_msg = jax.random.normal(k1, (k + 1, k)) / np.sqrt(k)
        self.w_h = jax.random.normal(k2, (3 * k + 1, k)) / np.sqrt(k)
        self.w_out = jax.random.normal(k3, (k,)) / np.sqrt(k)
        self.emb = jax.random.normal(k4, (d, k))

    def init_state(self):
        return jnp.zeros(self.emb.shape)

    def step(self, state, x_t, graph, context=None):
        a = jnp.asarray(graph) * (1.0 - jnp.eye(x_t.shape[0]))
        out = jnp.tanh(jnp.concatenate([state, x_t[:, None]], axis=1) @ self.w_msg)
        msg = a.T @ out
        h = jnp.tanh(jnp.concatenate([state, msg, self.emb, x_t[:, None]], axis=1) @ self.w_h)
        return h, 0.5 * x_t + h @ self.w_out

    def rollout(self, x_history, horizon, graph, context=None):
        def tf(s, x):
            return self.step(s, x, graph, context)

        s, ys = jax.lax.scan(tf, self.init_state(), x_history)
        y0 = ys[-1]

        def fr(c, _):
            s, y = c
            s, y = self.step(s, y, graph, context)
            return (s, y), y

        _, rest = jax.lax.scan(fr, (s, y0), None, length=horizon - 1)
        return jnp.concatenate([y0[None], rest])


class DenseBypass(eqx.Module):
    """A non-graph-safe baseline: dense linear map over all nodes, ignores the graph input."""

    w: jax.Array
    uses_graph: bool = eqx.field(static=True, default=False)

    def rollout(self, x_history, horizon, graph, context=None):
        def body(x, _):
            y = x @ self.w
            return y, y

        _, ys = jax.lax.scan(body, x_history[-1], None, length=horizon)
        return ys


def _linear(seed=0, n_lags=2, d=D):
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.1, 0.4, size=(n_lags, d, d)) * rng.choice([-1, 1], size=(n_lags, d, d))
    own = rng.uniform(0.2, 0.5, size=(n_lags, d)) / n_lags
    return LinearVAR(jnp.asarray(b, jnp.float32), jnp.asarray(own, jnp.float32)), b, own


def _graph(seed=1, d=D, p=0.35):
    rng = np.random.default_rng(seed)
    a = (rng.uniform(size=(d, d)) < p).astype(float)
    np.fill_diagonal(a, 0.0)
    return a


def _analytic_ar(b, own, a, horizon):
    """Impulse response of the linear VAR to a unit pulse on x_i(t0): mean_h |dy_j(t0+h)| and per-h."""
    n_lags, d, _ = b.shape
    m = [b[k] * (a * (1 - np.eye(d))) + np.diag(own[k]) for k in range(n_lags)]
    out = np.zeros((horizon, d, d))
    for i in range(d):
        past = [np.zeros(d) for _ in range(n_lags)]
        past[-1] = np.eye(d)[i]  # the pulse at t0 (most recent)
        for h in range(horizon):
            y = sum(past[-1 - k] @ m[k] for k in range(n_lags))
            out[h, i] = np.abs(y)
            past = past[1:] + [y]
    return out.mean(axis=0), out


def _hist(n=6, w=8, d=D, seed=3):
    return np.random.default_rng(seed).normal(size=(n, w, d))


def test_cig_equals_analytic_influence_matrix():
    dec, b, own = _linear()
    a = _graph()
    got = cig(dec, _hist(), a)
    want = np.abs(b[0] * a) + np.diag(np.abs(own[0]))
    assert got.shape == (1, D, D)
    np.testing.assert_allclose(got[0], want, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("method", ["finite", "jvp"])
def test_ar_cig_equals_analytic_impulse_response(method):
    dec, b, own = _linear(n_lags=3)
    a = _graph()
    want, want_h = _analytic_ar(b, own, a, 7)
    got = ar_cig(dec, _hist(), a, horizon=7, method=method)
    np.testing.assert_allclose(got[0], want, atol=1e-5, rtol=1e-4)
    per_h = ar_cig(dec, _hist(), a, horizon=7, method=method, per_horizon=True)
    assert per_h.shape == (1, 7, D, D)
    np.testing.assert_allclose(per_h[0], want_h, atol=1e-5, rtol=1e-4)


def test_jvp_and_finite_agree_on_linear_decoder():
    dec, _, _ = _linear(n_lags=2)
    graphs = np.stack([_graph(s) for s in range(4)])
    for h in (1, 7):
        fin = ar_cig(dec, _hist(), graphs, horizon=h, method="finite", delta=0.5)
        jv = ar_cig(dec, _hist(), graphs, horizon=h, method="jvp")
        assert np.max(np.abs(fin - jv)) <= 1e-4


@pytest.mark.parametrize("engine", ["step", "rollout"])
def test_ar_cig_exactly_zero_outside_reach(engine):
    dec = TanhGraphSafe(D, 4, jax.random.key(0))
    graphs = np.stack([_graph(s, p=0.2) for s in range(6)])
    for horizon in (1, 2, 3):
        for method in ("finite", "jvp"):
            res = influence(dec, _hist(), graphs, horizon=horizon, method=method, engine=engine)
            r = reach(graphs, horizon)
            assert np.all(res.scores[~r] == 0.0)
            assert np.all(res.by_window[np.broadcast_to(~r[:, None], res.by_window.shape)] == 0.0)
            # influence inside the reach is actually there (a generic nonlinear decoder is never exactly 0)
            assert np.all(res.scores[r] > 0.0)


def test_reach_zero_for_package_graph_safe_decoder():
    decoder_mod = pytest.importorskip("dice_prob.models.decoder")
    dec = decoder_mod.GraphSafeDecoder(D, hidden_size=6, message_size=3, embed_size=2, key=jax.random.key(2))
    graphs = np.stack([_graph(s, p=0.25) for s in range(3)])
    res = influence(dec, _hist(w=9), graphs, horizon=3)
    assert np.all(res.scores[~reach(graphs, 3)] == 0.0)


def test_step_and_rollout_engines_agree():
    dec = TanhGraphSafe(D, 4, jax.random.key(1))
    graphs = np.stack([_graph(s) for s in range(3)])
    for method in ("finite", "jvp"):
        a = influence(dec, _hist(), graphs, horizon=4, method=method, engine="step")
        b = influence(dec, _hist(), graphs, horizon=4, method=method, engine="rollout")
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.forecast, b.forecast, atol=1e-5)


def test_forecast_matches_rollout_and_chunking_is_invisible():
    dec = TanhGraphSafe(D, 4, jax.random.key(1))
    graphs = np.stack([_graph(s) for s in range(5)])
    x = _hist()
    full = influence(dec, x, graphs, horizon=3, graph_batch_size=5)
    chunked = influence(dec, x, graphs, horizon=3, graph_batch_size=2)
    scanned = influence(dec, x, graphs, horizon=3, graph_batch_size=1)
    np.testing.assert_allclose(full.scores, chunked.scores, atol=1e-6)
    np.testing.assert_allclose(full.scores, scanned.scores, atol=1e-6)
    direct = np.asarray(dec.rollout(jnp.asarray(x[2], jnp.float32), 3, jnp.asarray(graphs[4], jnp.float32)))
    np.testing.assert_allclose(full.forecast[4, 2], direct, atol=1e-5)
    fc, _ = forecast_draws(dec, x, graphs, horizon=3)
    np.testing.assert_allclose(fc, full.forecast, atol=1e-5)


def test_bypass_decoder_ignores_graph_and_is_broadcast():
    w = np.full((D, D), 0.1) + 0.3 * np.eye(D)
    dec = DenseBypass(jnp.asarray(w, jnp.float32))
    graphs = np.stack([np.zeros((D, D)), _graph(0)])
    got = cig(dec, _hist(), graphs)
    assert got.shape == (2, D, D)
    np.testing.assert_allclose(got[0], got[1])
    np.testing.assert_allclose(got[0], w, atol=1e-6)  # dense influence even under the empty graph


class _FakePosterior:
    def __init__(self, probs):
        self.probs = np.asarray(probs)

    def sample_graphs(self, rng_key, n):
        u = np.asarray(jax.random.uniform(rng_key, (n, *self.probs.shape)))
        return (u < self.probs).astype(float)


def test_posterior_like_and_trained_decoder_like_inputs():
    dec, b, own = _linear()
    probs = 0.5 * (1 - np.eye(D))
    post = _FakePosterior(probs)
    with pytest.raises(ConfigError, match="rng_key"):
        cig(dec, _hist(), post)
    k = jax.random.key(7)
    a1 = cig(dec, _hist(), post, rng_key=k, n_samples=12)
    a2 = cig(dec, _hist(), post, rng_key=k, n_samples=12)
    assert a1.shape == (12, D, D)
    np.testing.assert_array_equal(a1, a2)  # same key, same numbers

    class Trained:  # TrainedDecoder-like: .model + .config.history
        model = dec

        class config:
            history = 4

    res = influence(Trained(), _hist(w=10), _graph(), horizon=1)
    assert res.windows.history.shape[1] == 10  # explicit histories are used as given
    np.testing.assert_allclose(res.scores[0], np.abs(b[0] * _graph()) + np.diag(np.abs(own[0])), atol=2e-6)


def test_panel_windows_and_per_shop_graphs():
    rng = np.random.default_rng(0)
    panel = Panel(rng.normal(size=(2, 40, 3)), nodes=["a", "b", "y"], roles=["channel", "channel", "target"])
    n_lags = 1
    b = np.full((n_lags, 3, 3), 0.5)
    dec = LinearVAR(jnp.asarray(b, jnp.float32), jnp.zeros((n_lags, 3), jnp.float32))
    g_shop = np.zeros((2, 3, 3))
    g_shop[0, 0, 2] = 1.0  # only shop 0 has a -> y
    res = influence(dec, panel, g_shop[None], horizon=1, n_windows=None, history=5)
    win = forecast_windows(panel.scaled, history=5, horizon=1, split="test")
    assert len(res.windows) == len(win)
    on0 = res.by_window[0, res.windows.shop == 0, 0, 2]
    on1 = res.by_window[0, res.windows.shop == 1, 0, 2]
    np.testing.assert_allclose(on0, 0.5, atol=1e-6)
    np.testing.assert_array_equal(on1, 0.0)
    # "full" means the panel's support mask
    full = as_graph_stack("full", 3, support=panel.support_mask())
    np.testing.assert_array_equal(full[0, 0], panel.support_mask().astype(float))
    sub = influence(dec, panel, "full", horizon=1, n_windows=4, history=5, rng_key=jax.random.key(0))
    assert len(sub.windows) == 4


def test_input_errors():
    dec, _, _ = _linear()
    with pytest.raises(ConfigError, match="method"):
        cig(dec, _hist(), _graph(), method="adjoint")
    with pytest.raises(ConfigError, match="delta"):
        cig(dec, _hist(), _graph(), delta=0.0)
    with pytest.raises(GraphValidationError, match="graphs"):
        cig(dec, _hist(), np.zeros((2, 3, 4, 4)))
    with pytest.raises(DataValidationError, match="per-shop"):
        cig(dec, _hist(), np.zeros((2, 3, D, D)))  # 3 shop graphs, but the histories come from 1 shop
    with pytest.raises(InputTypeError, match="decoder"):
        cig(object(), _hist(), _graph())
    with pytest.raises(ConfigError, match="engine"):
        cig(dec, _hist(), _graph(), engine="step")  # LinearVAR has no step()


def test_rounding_floor_zeroes_lane_noise_only():
    from dice_prob.diagnostics.influence import _floored_diff

    base = jnp.array([1.0, 1e-3, 2.0, 0.0], jnp.float32)
    pulse = base + jnp.array([3e-7, 5e-10, 1e-3, 0.0], jnp.float32)  # ulp-level, ulp-level, real, none
    out = np.asarray(_floored_diff(pulse, base, 64 * float(jnp.finfo(jnp.float32).eps)))
    assert out[0] == 0.0 and out[1] == 0.0 and out[3] == 0.0
    assert out[2] == pytest.approx(1e-3, rel=1e-3)
    np.testing.assert_array_equal(np.asarray(_floored_diff(pulse, base, 0.0)) != 0, [True, True, True, False])
