"""Random draws over several axes that compile fast on XLA:CPU.

JAX's default (partitionable) threefry hashes a counter array of the output's shape. XLA:CPU compiles that hash
slowly for arrays of rank 3 and more with odd trailing sizes: one eager ``jax.random.uniform(key, (6, 2, 1, 19,
7))`` takes 8 s to compile on 2 cores, against 0.2 s for the same 1596 numbers drawn flat. The counters are the
row-major flat index, so a flat draw reshaped is the same array, value for value, under either threefry setting:
these helpers change compile time only, never a random number.

Use them for draws made outside a jitted program (initial values, parameter initialisation), where every new
shape is its own compile; inside one large jitted program the cost did not show in our measurements.
"""

from __future__ import annotations

import math

import jax


def uniform(key, shape, minval=0.0, maxval=1.0, dtype=None) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)`` drawn flat and reshaped (the same values).

    ``minval`` and ``maxval`` must be scalars.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from dice_prob import _random
    >>> k = jax.random.key(0)
    >>> a = _random.uniform(k, (2, 3, 5), minval=-0.1, maxval=0.1)
    >>> bool(np.array_equal(a, jax.random.uniform(k, (2, 3, 5), minval=-0.1, maxval=0.1)))
    True
    """
    shape = tuple(shape)
    kw = {} if dtype is None else {"dtype": dtype}
    return jax.random.uniform(key, (math.prod(shape),), minval=minval, maxval=maxval, **kw).reshape(shape)


def normal(key, shape, dtype=None) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)`` drawn flat and reshaped (the same values).

    Examples
    --------
    >>> import jax, numpy as np
    >>> from dice_prob import _random
    >>> k = jax.random.key(1)
    >>> bool(np.array_equal(_random.normal(k, (4, 7)), jax.random.normal(k, (4, 7))))
    True
    """
    shape = tuple(shape)
    kw = {} if dtype is None else {"dtype": dtype}
    return jax.random.normal(key, (math.prod(shape),), **kw).reshape(shape)
