"""The custom-call-free triangular solves against NumPy / SciPy, batched and broadcast."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from dice_prob.models import linalg


def _spd(rng, batch, n):
    x = rng.normal(size=batch + (n, n + 3))
    return x @ np.swapaxes(x, -1, -2) + 0.1 * np.eye(n)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("n", [1, 5, 40])
def test_solve_lower_matches_scipy(n, transpose):
    rng = np.random.default_rng(10 * n + transpose)
    chol = np.linalg.cholesky(_spd(rng, (4,), n))
    b = rng.normal(size=(4, n, 3))
    # garbage in the strict upper triangle must be ignored
    noisy = chol + np.triu(rng.normal(size=chol.shape), 1)
    got = np.asarray(linalg.solve_lower(jnp.asarray(noisy), jnp.asarray(b), transpose=transpose))
    want = np.stack(
        [
            scipy.linalg.solve_triangular(c, bb, lower=True, trans=int(transpose))
            for c, bb in zip(chol, b, strict=True)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_solve_lower_broadcasts_a_shared_right_hand_side():
    rng = np.random.default_rng(3)
    chol = np.linalg.cholesky(_spd(rng, (2, 3), 6))
    b = rng.normal(size=(6, 2))
    got = np.asarray(linalg.solve_lower(jnp.asarray(chol), jnp.asarray(b)))
    assert got.shape == (2, 3, 6, 2)
    np.testing.assert_allclose(
        got[1, 2], scipy.linalg.solve_triangular(chol[1, 2], b, lower=True), rtol=1e-4, atol=1e-5
    )


def test_cho_solve_inverts_the_spd_matrix():
    rng = np.random.default_rng(4)
    a = _spd(rng, (5,), 9)
    b = rng.normal(size=(5, 9, 2))
    chol = jnp.asarray(np.linalg.cholesky(a))
    got = np.asarray(linalg.cho_solve_lower(chol, jnp.asarray(b)))
    np.testing.assert_allclose(got, np.linalg.solve(a, b), rtol=2e-3, atol=2e-4)


def test_jit_and_vmap_agree_with_eager():
    rng = np.random.default_rng(5)
    a = jnp.asarray(_spd(rng, (6,), 8))
    b = jnp.asarray(rng.normal(size=(6, 8, 1)))
    eager = linalg.cho_solve_lower(jnp.linalg.cholesky(a), b)
    fn = jax.jit(jax.vmap(lambda x, y: linalg.cho_solve_lower(jnp.linalg.cholesky(x), y)))
    np.testing.assert_allclose(np.asarray(fn(a, b)), np.asarray(eager), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("start", [0, 3, 11])
def test_solve_lower_start_skips_rows_whose_right_hand_side_is_zero(start):
    """With b's rows < start zero, starting the substitution at ``start`` (also as a traced value) gives SciPy's
    solution, zeros included."""
    n = 12
    rng = np.random.default_rng(start)
    chol = np.linalg.cholesky(_spd(rng, (3,), n))
    b = rng.normal(size=(3, n, 2))
    b[:, :start] = 0.0
    want = np.stack([scipy.linalg.solve_triangular(c, bb, lower=True) for c, bb in zip(chol, b, strict=True)])
    got = linalg.solve_lower(jnp.asarray(chol), jnp.asarray(b), start=start)
    traced = jax.jit(lambda c, bb, s: linalg.solve_lower(c, bb, start=s))(
        jnp.asarray(chol), jnp.asarray(b), start
    )
    for x in (got, traced):
        np.testing.assert_allclose(np.asarray(x), want, rtol=1e-3, atol=1e-4)
        assert np.all(np.asarray(x)[:, :start] == 0.0)
