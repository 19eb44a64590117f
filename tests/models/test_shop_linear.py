"""Per-shop offsets of a decoder's linear part: binding adds them, zero offsets change nothing, graph safety holds."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.models.bypass import ARTargetDecoder, DenseDecoder
from dice_prob.models.decoder import GraphSafeDecoder
from dice_prob.models.shop_linear import ShopOffsets, bind_shop, kernel_attribute, zero_offsets

D, P = 5, 3


def _random(model, seed, scale=0.4):
    rng = np.random.default_rng(seed)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree_util.tree_map(lambda a: a + scale * rng.normal(size=a.shape).astype(np.float32), params)
    return eqx.combine(params, static)


def _offsets(model, n_shops, seed):
    return _random(zero_offsets(model, n_shops), seed, scale=0.8)


@pytest.mark.parametrize(
    ("cls", "attr"),
    [(GraphSafeDecoder, "edge_kernel"), (DenseDecoder, "var_kernel"), (ARTargetDecoder, None)],
)
def test_bind_adds_the_shop_row_of_every_offset(cls, attr):
    model = _random(cls(D, ar_lags=P, key=jax.random.key(0)), 1)
    off = _offsets(model, 3, 2)
    assert kernel_attribute(model) == attr and off.kernel_attr == attr
    bound = bind_shop(model, off, 2)
    np.testing.assert_array_equal(np.asarray(bound.ar_bias), np.asarray(model.ar_bias + off.bias[2]))
    np.testing.assert_array_equal(np.asarray(bound.ar_coef), np.asarray(model.ar_coef + off.coef[2]))
    if attr is not None:
        np.testing.assert_array_equal(
            np.asarray(getattr(bound, attr)), np.asarray(getattr(model, attr) + off.kernel[2])
        )
    else:
        assert off.kernel is None
    assert type(bound) is cls and bind_shop(model, None, 2) is model


def test_zero_offsets_give_the_pooled_forecast_bit_for_bit():
    model = _random(
        GraphSafeDecoder(D, ar_lags=P, hidden_size=6, message_size=3, embed_size=2, key=jax.random.key(3)), 4
    )
    a = jnp.asarray((np.random.default_rng(5).random((D, D)) < 0.3).astype(np.float32))
    x = jnp.asarray(np.random.default_rng(6).normal(size=(8, D)), jnp.float32)
    base = model.rollout(x, 4, a)
    bound = bind_shop(model, zero_offsets(model, 2), 1).rollout(x, 4, a)
    np.testing.assert_array_equal(np.asarray(bound), np.asarray(base))


def test_bind_works_under_vmap_over_windows_of_different_shops():
    model = _random(
        GraphSafeDecoder(D, ar_lags=P, hidden_size=6, message_size=3, embed_size=2, key=jax.random.key(7)), 8
    )
    off = _offsets(model, 3, 9)
    a = jnp.ones((D, D)) - jnp.eye(D)
    x = jnp.asarray(np.random.default_rng(10).normal(size=(4, 8, D)), jnp.float32)
    shops = jnp.array([0, 2, 1, 2])
    batched = jax.vmap(lambda xx, s: bind_shop(model, off, s).rollout(xx, 3, a))(x, shops)
    for n in range(4):
        one = bind_shop(model, off, int(shops[n])).rollout(x[n], 3, a)
        np.testing.assert_allclose(np.asarray(batched[n]), np.asarray(one), atol=1e-5)


def test_graph_safety_holds_for_every_shop_with_random_offsets():
    """Offsets on EVERY kernel entry, edges or not: d y_i(t+1) / d x_j(t) stays exactly 0 where A[j, i] = 0."""
    checked = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        model = _random(
            GraphSafeDecoder(
                D, ar_lags=P, hidden_size=6, message_size=3, embed_size=2, key=jax.random.key(seed)
            ),
            seed + 100,
        )
        off = _offsets(model, 4, seed + 200)
        a_np = (rng.random((D, D)) < 0.3).astype(np.float32)
        np.fill_diagonal(a_np, 0.0)
        forbidden = (a_np.T == 0) & ~np.eye(D, dtype=bool)  # [i, j]
        x = jnp.asarray(rng.normal(size=(6, D)), jnp.float32)
        for s in range(4):
            m = bind_shop(model, off, s)
            jac = np.asarray(
                jax.jacrev(lambda xt, m=m, x=x, a=a_np: m(jnp.concatenate([x[:-1], xt[None]]), a)[-1])(x[-1])
            )
            assert np.count_nonzero(jac[forbidden]) == 0
            assert (
                np.count_nonzero(jac[(a_np.T != 0)]) > 0
            )  # edges do carry influence: the check is not vacuous
            checked += int(forbidden.sum())
    assert checked > 500


def test_zero_offsets_need_a_shop():
    model = GraphSafeDecoder(D, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_shops"):
        zero_offsets(model, 0)
    off = zero_offsets(model, 2)
    assert isinstance(off, ShopOffsets) and off.n_shops == 2
