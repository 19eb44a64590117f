"""dice_prob._random draws flat and reshapes: the same numbers as jax.random, under either threefry setting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dice_prob import _random

SHAPES = [(), (5,), (3, 4), (2, 1, 3, 3)]


@pytest.mark.parametrize("partitionable", [True, False])
def test_flat_draws_equal_jax_random_draws(partitionable):
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        for i, shape in enumerate(SHAPES):
            k = jax.random.key(i)
            u = _random.uniform(k, shape, minval=-0.3, maxval=0.2)
            assert u.shape == shape
            np.testing.assert_array_equal(u, jax.random.uniform(k, shape, minval=-0.3, maxval=0.2))
            n = _random.normal(k, shape, dtype=jnp.float32)
            assert n.shape == shape and n.dtype == jnp.float32
            np.testing.assert_array_equal(n, jax.random.normal(k, shape, dtype=jnp.float32))
    finally:
        jax.config.update("jax_threefry_partitionable", before)
