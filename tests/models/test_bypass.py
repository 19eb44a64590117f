"""Bypass baselines: interface, graph is ignored, and where their cross-node routes are (or are not)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dice_prob.models.bypass import ARTargetDecoder, DenseDecoder

D, W, H = 5, 6, 3


def _perturb(model, seed):
    rng = np.random.default_rng(seed)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree_util.tree_map(lambda p: p + 0.5 * rng.normal(size=p.shape).astype(np.float32), params)
    return eqx.combine(params, static)


@eqx.filter_jit
def _roll(m, x, a, c):
    return m.rollout(x, H, a, c)


@eqx.filter_jit
def _jac(m, x, a, c):
    return jax.jacrev(lambda xx: m.rollout(xx, H, a, c))(x)  # (H, d, W, d)


def test_interface_and_graph_ignored():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(W, D)), jnp.float32)
    for cls in (DenseDecoder, ARTargetDecoder):
        m = _perturb(cls(D, context_size=2, hidden_size=6, key=jax.random.key(0)), 1)
        assert m.uses_graph is False
        c = jnp.ones(2)
        r1 = _roll(m, x, jnp.zeros((D, D)), c)
        r2 = _roll(m, x, jnp.ones((D, D)) - jnp.eye(D), c)
        assert r1.shape == (H, D)
        np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2))
        tf = eqx.filter_jit(lambda mm, xx, cc: mm(xx, None, cc))(m, x, c)
        np.testing.assert_allclose(np.asarray(tf[-1]), np.asarray(r1[0]), rtol=1e-6, atol=1e-6)


def test_dense_mixes_all_nodes_ar_only_mixes_none():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(W, D)), jnp.float32)
    off = ~np.eye(D, dtype=bool)
    dense = _perturb(DenseDecoder(D, hidden_size=6, key=jax.random.key(2)), 3)
    jd = np.abs(np.asarray(_jac(dense, x, jnp.zeros((D, D)), None))).sum(axis=(0, 2))  # [i, j]
    assert np.all(jd[off] > 0)  # every node influences every other node: the dense route
    ar = _perturb(ARTargetDecoder(D, hidden_size=6, key=jax.random.key(4)), 5)
    ja = np.abs(np.asarray(_jac(ar, x, jnp.zeros((D, D)), None))).sum(axis=(0, 2))
    assert np.all(ja[off] == 0) and np.all(np.diag(ja) > 0)  # own lags only


def test_fresh_baselines_start_at_their_ar_skip():
    """The neural parts start at zero output, so an untrained decoder equals its own-lag AR skip (0 here)."""
    x = jnp.asarray(np.random.default_rng(2).normal(size=(W, D)), jnp.float32)
    for cls in (DenseDecoder, ARTargetDecoder):
        m = cls(D, hidden_size=6, key=jax.random.key(0))
        np.testing.assert_array_equal(np.asarray(_roll(m, x, jnp.zeros((D, D)), None)), 0.0)


def test_dense_linear_path_is_an_unrestricted_var_with_masked_diagonal():
    """var_kernel[j, i, l] adds lag l + 1 of node j to node i for every j != i; its diagonal is ignored (own lags
    belong to the AR skip), so a fresh dense decoder with only var_kernel set is exactly that VAR."""
    p = 2
    rng = np.random.default_rng(3)
    m = DenseDecoder(D, hidden_size=6, ar_lags=p, key=jax.random.key(0))
    k = rng.normal(size=(D, D, p)).astype(np.float32)
    m = eqx.tree_at(lambda mm: mm.var_kernel, m, jnp.asarray(k))
    x = rng.normal(size=(W, D)).astype(np.float32)
    tf = np.asarray(eqx.filter_jit(lambda mm, xx: mm(xx))(m, jnp.asarray(x)))
    k_off = k * (1 - np.eye(D))[:, :, None]
    for t in range(p - 1, W):
        ref = sum(x[t - l] @ k_off[:, :, l] for l in range(p))
        np.testing.assert_allclose(tf[t], ref, rtol=1e-5, atol=1e-5)
