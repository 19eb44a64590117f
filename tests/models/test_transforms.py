"""Media transforms against plain NumPy loop references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob.models.transforms import (
    apply_kernel,
    carryover_kernel,
    geometric_adstock,
    hill,
    hill_zscore,
    lag_stack,
)

RNG = np.random.default_rng(0)


def _adstock_ref(x, r, normalise):
    out = np.zeros_like(x)
    prev = np.zeros(x.shape[1:])
    for t in range(x.shape[0]):
        prev = x[t] + r * prev
        out[t] = prev
    return out * (1 - r) if normalise else out


@pytest.mark.parametrize("normalise", [True, False])
def test_geometric_adstock_matches_loop(normalise):
    x = RNG.gamma(2.0, size=(30, 3))
    r = np.array([0.0, 0.4, 0.9])
    got = np.asarray(geometric_adstock(jnp.asarray(x), jnp.asarray(r), normalise=normalise))
    np.testing.assert_allclose(got, _adstock_ref(x, r, normalise), rtol=1e-5, atol=1e-6)


def test_adstock_constant_input_converges_to_input_when_normalised():
    got = np.asarray(geometric_adstock(jnp.ones(200), 0.7))
    assert abs(got[-1] - 1.0) < 1e-5


def test_carryover_kernel_matches_formula_and_sums_to_one():
    L = 7
    for r, dl in [(0.3, 0.0), (0.8, 2.0), (0.5, 1.3)]:
        ref = np.array([r ** ((l - 1 - dl) ** 2) for l in range(1, L + 1)])
        ref = ref / ref.sum()
        got = np.asarray(carryover_kernel(L, r, dl))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)
    batch = carryover_kernel(L, jnp.array([[0.2, 0.9]]), jnp.array([[0.0, 3.0]]))
    assert batch.shape == (1, 2, L)
    np.testing.assert_allclose(np.asarray(batch.sum(-1)), 1.0, atol=1e-6)
    # the peak sits at lag 1 + delay
    assert int(np.argmax(np.asarray(batch[0, 1]))) == 3


def test_hill_matches_formula_and_limits():
    x = RNG.uniform(0, 3, size=50)
    k, n = 0.8, 2.3
    ref = x**n / (x**n + k**n)
    np.testing.assert_allclose(np.asarray(hill(x, k, n)), ref, rtol=1e-5, atol=1e-7)
    assert float(hill(0.0, k, n)) == 0.0
    assert float(hill(-1.0, k, n)) == 0.0
    assert abs(float(hill(k, k, n)) - 0.5) < 1e-6
    # finite gradient at 0 and for large inputs
    g = jax.grad(lambda v: hill(v, k, n).sum())(jnp.array([0.0, 1e-8, 1e6]))
    assert np.all(np.isfinite(np.asarray(g)))


def _hill_zscore_ref(x, k, n, axis):
    """Float64 NumPy reference: the complement K^n / (x^n + K^n) keeps its precision near saturation."""
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore"):
        comp = np.where(x > 0, 1.0 / (1.0 + (x / k) ** n), 1.0)
    c = comp - comp.mean(axis=axis, keepdims=True)
    return -c / c.std(axis=axis, keepdims=True)


@pytest.mark.parametrize(("k", "n"), [(0.5, 1.0), (0.05, 2.0), (4.0, 3.0), (0.002, 3.0), (30.0, 0.7)])
def test_hill_zscore_matches_float64_reference_from_far_below_to_past_saturation(k, n):
    # (R, T, S, L) like Stage 1's source lags; x / max-scaled bursty spends, a few exact zeros
    x = RNG.lognormal(-1.5, 0.6, size=(3, 40, 2, 4))
    x[0, :3, 0, 0] = 0.0
    z = np.asarray(hill_zscore(x.astype(np.float32), k, n, axis=(1, 3)))
    np.testing.assert_allclose(z, _hill_zscore_ref(x, k, n, (1, 3)), atol=2e-4)
    np.testing.assert_allclose(z.mean(axis=(1, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(1, 3)), 1.0, atol=1e-4)


def test_hill_zscore_keeps_a_constant_slice_at_zero_with_finite_gradients():
    x = np.stack([np.full(20, 0.3), RNG.uniform(0.1, 1.0, 20)], axis=-1)  # (T, 2): column 0 constant

    def f(k, n):
        return hill_zscore(x, k, n, axis=0)

    z = np.asarray(f(0.4, 2.0))
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-6)
    assert abs(z[:, 1].std() - 1.0) < 1e-5
    g = jax.grad(lambda k, n: (f(k, n)[:, 1] * jnp.arange(20.0)).sum(), argnums=(0, 1))(0.4, 2.0)
    assert np.all(np.isfinite(np.asarray(g)))
    # a constant positive spend (or none) keeps finite gradients wherever the curve sits on it: the sd of a
    # float32-constant slice is exactly 0, and sqrt's infinite slope there must not reach the gradient
    for level in (0.0, 1e-3, 0.3, 1.0):
        xc = np.stack([np.full(20, level), x[:, 1]], axis=-1).astype(np.float32)
        for k in (1e-4, 0.4, 50.0):
            gk = jax.grad(
                lambda k, n, xc=xc: (hill_zscore(xc, k, n, axis=0) * jnp.arange(40.0).reshape(20, 2)).sum(),
                argnums=(0, 1),
            )(k, 2.0)
            assert np.all(np.isfinite(np.asarray(gk))), (level, k, gk)
    # the standardised curve does not depend on the scale of x far below saturation (x^n / K^n regime)
    np.testing.assert_allclose(np.asarray(f(1e4, 2.0))[:, 1], np.asarray(f(1e5, 2.0))[:, 1], atol=1e-4)


def test_lag_stack_matches_loop():
    x = RNG.normal(size=(12, 3))
    L = 4
    got = np.asarray(lag_stack(jnp.asarray(x), L))
    assert got.shape == (12 - L, 3, L)
    for t in range(12 - L):
        for l in range(1, L + 1):
            np.testing.assert_allclose(got[t, :, l - 1], x[t + L - l], rtol=1e-6)


def test_lag_stack_rejects_bad_lags():
    with pytest.raises(ValueError, match="n_lags"):
        lag_stack(jnp.zeros((3, 2)), 3)


def test_apply_kernel_and_jit_vmap():
    x = RNG.normal(size=(20, 2))
    lags = lag_stack(jnp.asarray(x), 3)
    k = carryover_kernel(3, 0.5)
    got = np.asarray(jax.jit(apply_kernel)(lags, k))
    ref = np.zeros((17, 2))
    for t in range(17):
        for l in range(3):
            ref[t] += float(k[l]) * x[t + 3 - (l + 1)]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    vm = jax.vmap(lambda r: carryover_kernel(3, r))(jnp.array([0.1, 0.5]))
    assert vm.shape == (2, 3)
