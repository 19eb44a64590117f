"""GraphSafeDecoder: shapes, jit/eager agreement and graph safety as a seeded property test."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.graph import reach
from dice_prob.models.bypass import DenseDecoder
from dice_prob.models.decoder import GraphSafeDecoder, hill

D, W, H = 7, 4, 7
N_CASES = 50


def _randomise(model, seed, scale=0.5):
    """Perturb every float leaf so no parameter is accidentally zero (AR skip starts at 0)."""
    rng = np.random.default_rng(seed)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree_util.tree_map(lambda p: p + scale * rng.normal(size=p.shape).astype(np.float32), params)
    return eqx.combine(params, static)


def _case(seed, cls=GraphSafeDecoder, **kw):
    """A random decoder, sparse weighted graph, history window and context for one property-test case."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.08, 0.3)
    a = (rng.random((D, D)) < density) * rng.uniform(0.2, 2.0, (D, D))
    np.fill_diagonal(a, 0.0)
    if rng.random() < 0.5:
        a = (a > 0).astype(float)  # binary half the time, weighted otherwise
    key = jax.random.key(seed)
    model = cls(
        D,
        context_size=2,
        hidden_size=8,
        message_size=4,
        embed_size=3,
        ar_lags=3,
        hill_head=True,
        key=key,
        **kw,
    )
    model = _randomise(model, seed + 77)
    x = jnp.asarray(rng.normal(size=(W, D)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=2), jnp.float32)
    return model, jnp.asarray(a, jnp.float32), x, ctx, a


@eqx.filter_jit
def _one_step_jac(model, state, x_t, a, ctx):
    # J[i, j] = d y_i(t+1) / d x_j(t)
    return jax.jacrev(lambda x: model.step(state, x, a, ctx)[1])(x_t)


@eqx.filter_jit
def _roll(model, x, horizon, a, ctx=None):
    return model.rollout(x, horizon, a, ctx)


@eqx.filter_jit
def _rollout_jac(model, x, a, ctx):
    # J[h, i, t, j] = d y_i(t0 + h + 1) / d x_j(t)
    return jax.jacrev(lambda xx: model.rollout(xx, H, a, ctx))(x)


def _random_state(model, seed):
    rng = np.random.default_rng(seed + 10_000)
    h, buf = model.init_state()
    return (
        jnp.asarray(rng.normal(size=h.shape), jnp.float32),
        jnp.asarray(rng.normal(size=buf.shape), jnp.float32),
    )


def _violations(cls, n_cases=N_CASES):
    """Count Jacobian entries that graph safety requires to be exactly 0 but are not (and the checks made)."""
    out = {
        "one_step_bad": 0,
        "one_step_checked": 0,
        "one_step_edges_nonzero": 0,
        "roll_bad": 0,
        "roll_checked": 0,
    }
    off = ~np.eye(D, dtype=bool)
    for seed in range(n_cases):
        model, a, x, ctx, a_np = _case(seed, cls)
        j1 = np.asarray(_one_step_jac(model, _random_state(model, seed), x[-1], a, ctx))  # (d, d) [i, j]
        forbidden = (a_np.T == 0) & off  # forbidden[i, j]: A[j, i] = 0, j != i
        out["one_step_bad"] += int(np.count_nonzero(j1[forbidden]))
        out["one_step_checked"] += int(forbidden.sum())
        out["one_step_edges_nonzero"] += int(np.count_nonzero(j1[(a_np.T != 0) & off]))
        jr = np.asarray(_rollout_jac(model, x, a, ctx))  # (H, d, W, d)
        for h in range(H):
            for t in range(W):
                hops = (W - 1 - t) + (h + 1)  # a value k steps before the origin needs <= k + h + 1 hops
                allowed = reach(a_np, hops).T  # allowed[i, j]: j reaches i within `hops`
                out["roll_bad"] += int(np.count_nonzero(jr[h, :, t, :][~allowed]))
                out["roll_checked"] += int((~allowed).sum())
    return out


def test_graph_safety_property_over_50_random_cases():
    res = _violations(GraphSafeDecoder)
    assert res["one_step_checked"] > 500 and res["roll_checked"] > 500, res  # the test is not vacuous
    assert res["one_step_bad"] == 0, res
    assert res["roll_bad"] == 0, res
    # messages do flow along the edges that exist
    assert res["one_step_edges_nonzero"] > 0, res


def test_rollout_influence_from_last_step_bounded_by_7_hops():
    """Pulse on the last observed step (a 1-step history): influence on the 7-step rollout needs j ->* i in 7 hops."""
    bad = checked = 0
    for seed in range(10):
        model, a, x, ctx, a_np = _case(1000 + seed)
        jr = np.asarray(_rollout_jac(model, x[-1:], a, ctx))  # (7, d, 1, d), H = 7
        total = np.abs(jr[:, :, 0, :]).sum(axis=0)  # [i, j] influence of x_j(t0) over all 7 steps
        allowed = reach(a_np, 7).T
        bad += int(np.count_nonzero(total[~allowed]))
        checked += int((~allowed).sum())
    assert checked > 0 and bad == 0


def test_same_property_test_fails_on_dense_decoder():
    res = _violations(DenseDecoder, n_cases=5)
    assert res["one_step_bad"] > 0 and res["roll_bad"] > 0, res


def test_context_only_reaches_target():
    model, a, x, ctx, _ = _case(3)
    j = np.asarray(eqx.filter_jit(jax.jacrev(lambda c: model.rollout(x, 3, a, c)))(ctx))  # (3, d, c)
    nz = np.abs(j).sum(axis=(0, 2))
    assert nz[model.target_index] > 0
    assert np.all(nz[np.arange(D) != model.target_index] == 0)


def test_shapes_and_contract():
    model, a, x, ctx, _ = _case(0)
    h, buf = model.init_state()
    assert h.shape == (D, 8) and buf.shape == (D, 3)
    (h2, _), y = eqx.filter_jit(lambda m, s, xt, aa, c: m.step(s, xt, aa, c))(
        model, model.init_state(), x[0], a, ctx
    )
    assert y.shape == (D,) and h2.shape == (D, 8)
    tf = eqx.filter_jit(lambda m, xx, aa, c: m(xx, aa, c))(model, x, a, ctx)
    roll = _roll(model, x, H, a, ctx)
    assert tf.shape == (W, D) and roll.shape == (H, D)
    np.testing.assert_allclose(roll[0], tf[-1], rtol=1e-6, atol=1e-6)  # row 0 = one-step prediction
    assert _roll(model, x, 1, a, ctx).shape == (1, D)
    assert model.uses_graph is True


def test_jit_matches_eager_and_vmaps_over_graphs_and_windows():
    model, a, x, ctx, _ = _case(7)
    eager = model.rollout(x, H, a, ctx)
    jitted = _roll(model, x, H, a, ctx)
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-5, atol=1e-5)
    graphs = jnp.stack([a, jnp.zeros_like(a), a * 0.5])
    xs = jnp.stack([x, x + 1.0])
    out = eqx.filter_jit(
        lambda m: jax.vmap(lambda g: jax.vmap(lambda xx: m.rollout(xx, H, g, ctx))(xs))(graphs)
    )(model)
    assert out.shape == (3, 2, H, D)
    np.testing.assert_allclose(np.asarray(out[0, 0]), np.asarray(eager), rtol=1e-5, atol=1e-5)


def test_weighted_graph_scales_messages_and_diagonal_is_ignored():
    model, a, x, ctx, _ = _case(11)
    with_diag = a + jnp.eye(D) * 3.0
    base = np.asarray(_roll(model, x, H, a, ctx))
    np.testing.assert_array_equal(base, np.asarray(_roll(model, x, H, with_diag, ctx)))
    assert float(jnp.abs(a).sum()) > 0
    assert not np.allclose(base, np.asarray(_roll(model, x, H, 2 * a, ctx)))


def test_invalid_sizes_raise():
    with pytest.raises(ValueError, match="n_nodes"):
        GraphSafeDecoder(1, key=jax.random.key(0))


def test_hill_is_saturating():
    u = jnp.array([0.0, 1.0, 10.0, 1000.0])
    v = np.asarray(hill(u, 1.0, 2.0))
    assert v[0] == pytest.approx(0.0, abs=1e-6) and v[1] == pytest.approx(0.5, rel=1e-5)
    assert np.all(np.diff(v) > 0) and v[-1] < 1.0 + 1e-6
