"""Batched triangular solves written in plain XLA ops (no LAPACK custom call).

Why: on CPU, jaxlib 0.10 runs a batched ``solve_triangular`` (LAPACK ``trsm``) as an FFI call that splits the
batch over the intra-op thread pool and blocks until its pieces finish. Inside Stage 1's compiled sampler (many
vmapped lanes, nested while loops) such calls deadlocked: every XLA thread idle, two ``trsm`` calls waiting in
``ParallelBatchMap`` (gdb stacks; three hangs out of three runs of the 50-shop calibration panel with
``node_scale="ar_residual"``). Substitution as a ``fori_loop`` over the (small) matrix dimension keeps each step
a plain batched matrix-vector product, so nothing waits on the pool. (XLA's own ``triangular_solve`` expansion,
the path jax takes for dtypes LAPACK lacks, was tried and is far slower at these sizes.) Matrices here have at
most a few hundred rows (lags x parents), so the loop is short.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def solve_lower(chol: jax.Array, b: jax.Array, *, transpose: bool = False, start=0) -> jax.Array:
    """Solve ``L x = b`` (or ``L^T x = b`` with ``transpose=True``) for lower-triangular ``L``.

    Parameters
    ----------
    chol : array (..., n, n)
        Lower-triangular matrices (the strict upper triangle is ignored), non-zero diagonal.
    b : array (..., n, m)
        Right-hand sides; leading dimensions broadcast against ``chol``'s.
    transpose : bool
        Solve with ``L^T`` (back substitution) instead of ``L`` (forward substitution).
    start : int or scalar int array
        Forward substitution only: the caller guarantees that rows ``< start`` of ``b`` are zero, so the same
        rows of ``x`` are zero and the loop begins at row ``start`` (a unit block deep in the matrix then costs
        only the rows below it). May be traced.

    Returns
    -------
    array (..., n, m)
        The same as ``jax.scipy.linalg.solve_triangular(chol, b, lower=True, trans=int(transpose))``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> chol = jnp.array([[2.0, 0.0], [1.0, 4.0]])
    >>> solve_lower(chol, jnp.array([[2.0], [9.0]]))[:, 0].tolist()
    [1.0, 2.0]
    >>> solve_lower(chol, jnp.array([[4.0], [8.0]]), transpose=True)[:, 0].tolist()
    [1.0, 2.0]
    """
    n = chol.shape[-1]
    batch = jnp.broadcast_shapes(chol.shape[:-2], b.shape[:-2])
    chol = jnp.broadcast_to(chol, batch + chol.shape[-2:])
    b = jnp.broadcast_to(b, batch + b.shape[-2:]).astype(chol.dtype)
    tri = jnp.tril(chol)
    # forward: row i of L; backward: row i of L^T. Entries not yet solved multiply zeros.
    rows = jnp.swapaxes(tri, -1, -2) if transpose else tri

    def step(k, x):
        i = n - 1 - k if transpose else k
        row = lax.dynamic_index_in_dim(rows, i, axis=-2, keepdims=False)  # (..., n)
        rhs = lax.dynamic_index_in_dim(b, i, axis=-2, keepdims=False)  # (..., m)
        diag = lax.dynamic_index_in_dim(row, i, axis=-1, keepdims=False)  # (...,)
        xi = (rhs - jnp.einsum("...k,...km->...m", row, x)) / diag[..., None]
        return lax.dynamic_update_index_in_dim(x, xi, i, axis=-2)

    return lax.fori_loop(0 if transpose else start, n, step, jnp.zeros_like(b))


def cho_solve_lower(chol: jax.Array, b: jax.Array) -> jax.Array:
    """Solve ``(L L^T) x = b`` given the lower Cholesky factor ``L`` (..., n, n); ``b`` (..., n, m)."""
    return solve_lower(chol, solve_lower(chol, b), transpose=True)
