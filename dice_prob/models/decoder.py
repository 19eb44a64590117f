"""The graph-safe latent decoder (Stage 2).

Every node ``i`` keeps a **private** state: a GRU hidden vector ``h_i`` and a buffer of its own last ``p``
standardised values. One step, given the observation ``x(t)`` and the runtime graph ``A[src, dst]``:

1. messages  ``m_i = sum_{j != i} A[j, i] * M(h_j, buf_j, e_j)`` — the ONLY path between nodes;
2. update    ``h_i <- GRU([x_i(t), m_i, e_i], h_i)``, ``buf_i <- (x_i(t), buf_i[:-1])``;
3. readout   ``y_i(t+1) = b_i + a_i . buf_i + sum_j A[j, i] K_ji . buf_j + O(h_i, m_i, e_i)`` — an own-lag AR
   skip, a linear lagged path along the edges (one lag kernel ``K_ji`` (p,) per ordered pair, gated by the
   runtime ``A[j, i]``; zero at initialisation, so a pair that never carries an edge in training contributes
   nothing), plus a shared MLP. The linear part is exactly a graph-restricted VAR(p), so the trainer can start it
   at the least-squares VAR along the training graph and let the network learn only what is left;
   optionally the target adds a Hill head ``s(c) * u^n / (u^n + K^n)`` driven by the shop context ``c``
   (context enters nothing else).

``M``, the GRU and ``O`` are shared across nodes; ``e_i`` is a learned node embedding and ``a_i, b_i`` are the
node's own AR-skip coefficients. Nothing pools, attends or normalises over nodes, and no latent is shared, so
``d y_i(t+1) / d x_j(t) = 0`` exactly whenever ``A[j, i] = 0`` (``j != i``), and a value observed ``k`` steps before
the forecast origin reaches ``y_i(t0 + h)`` only along paths of at most ``k + h`` edges. The graph is an input, so
one frozen decoder runs under any graph (binary or weighted) and can be ``jax.vmap``-ed over graphs, windows and
shops. The diagonal of the graph input is ignored (own information already flows through ``h_i`` and ``buf_i``).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["GraphSafeDecoder", "hill", "teacher_forced_and_rollout"]


def hill(u, half, slope):
    """Hill saturation ``u^n / (u^n + K^n)`` for ``u >= 0`` (``K = half``, ``n = slope``).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from dice_prob.models.decoder import hill
    >>> print(np.round(hill(jnp.array([-1.0, 1.0, 2.0, 4.0]), 2.0, 2.0), 3))  # 0.5 at u = half; u < 0 -> 0
    [0.  0.2 0.5 0.8]
    """
    u = jnp.maximum(u, 0.0)
    un = jnp.power(u + 1e-12, slope)
    return un / (un + jnp.power(half, slope))


def scaled_normal(key, shape, scale: float):
    """``scale * N(0, 1)`` draws, the same bits whether built eagerly or inside a jit.

    The barrier keeps XLA from folding ``scale`` into the normal's own constants when a constructor is traced as one
    program (``inference.train.build_decoder`` is): a reassociated product rounds differently in the last bit for a
    scale that is not a power of two. Eagerly the barrier is the identity.
    """
    return scale * jax.lax.optimization_barrier(jax.random.normal(key, shape))


def _zero_last(mlp: eqx.nn.MLP) -> eqx.nn.MLP:
    """Zero the last layer of an MLP so a fresh decoder starts exactly at its own-lag AR skip."""
    last = mlp.layers[-1]
    zb = None if last.bias is None else jnp.zeros_like(last.bias)
    return eqx.tree_at(
        lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp, (jnp.zeros_like(last.weight), zb)
    )


def _zero_diag(graph, dtype):
    a = jnp.asarray(graph, dtype=dtype)
    return a * (1.0 - jnp.eye(a.shape[-1], dtype=dtype))


def teacher_forced_and_rollout(model, x_history, horizon: int, graph, context=None):
    """Teacher-forced predictions over ``x_history`` and a free-running forecast, in one pass.

    Returns ``(tf, roll)``: ``tf`` (W, d) with row ``t`` predicting ``x_history[t + 1]`` (the last row predicts the
    first future step) and ``roll`` (horizon, d) with ``roll[0] == tf[-1]``. Works for every decoder with
    ``init_state``/``step`` (the graph-safe decoder and the baselines in :mod:`dice_prob.models.bypass`).

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from dice_prob.models.decoder import GraphSafeDecoder, teacher_forced_and_rollout
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, ar_lags=2, key=jax.random.key(0))
    >>> A = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # x0 -> x1 -> x2
    >>> x_history = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3)  # (W, d), standardised
    >>> tf, roll = teacher_forced_and_rollout(dec, x_history, 4, A)
    >>> tf.shape, roll.shape, bool(jnp.allclose(roll[0], tf[-1]))
    ((5, 3), (4, 3), True)
    """
    horizon = int(horizon)
    if horizon < 1:
        raise ValueError(f"horizon: must be >= 1, got {horizon}")
    x_history = jnp.asarray(x_history)
    w, d = x_history.shape
    # ONE scan over W + horizon - 1 steps: observed inputs while t < W, then the previous prediction. Same maths
    # as a teacher-forced scan followed by a free-running scan, but half the loops to trace, differentiate and
    # compile (compilation dominates a short training run).
    xs = jnp.concatenate([x_history, jnp.zeros((horizon - 1, d), x_history.dtype)], axis=0)
    free = jnp.arange(w + horizon - 1) >= w

    def body(carry, inp):
        state, y_prev = carry
        x_obs, is_free = inp
        state, y = model.step(state, jnp.where(is_free, y_prev, x_obs), graph, context)
        return (state, y), y

    _, ys = jax.lax.scan(body, (model.init_state(), jnp.zeros((d,), x_history.dtype)), (xs, free))
    return ys[:w], ys[w - 1 :]


class GraphSafeDecoder(eqx.Module):
    """Graph-safe recurrent decoder: per-node private latent state, messages only along the graph input.

    Parameters
    ----------
    n_nodes : int
        Number of nodes ``d``.
    context_size : int
        Width ``c`` of the per-shop context (0 = none). Context only drives the target's Hill head.
    hidden_size, message_size, embed_size : int
        Width of ``h_i``, of the messages and of the node embeddings.
    ar_lags : int
        Length ``p`` of each node's own-lag buffer (AR skip, and what a node sends in its messages).
    hill_head : bool
        Add a context-scaled Hill saturation term to the target's readout.
    target_index : int
        Index of the target node (negative counts from the end).
    context_mean, context_scale : sequence of float, optional
        Fixed standardisation of the raw context (fitted by the trainer; defaults 0 and 1).
    key : jax.random key
        Initialisation key (keyword-only).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> A = jnp.array([[0., 1., 0.], [0., 0., 1.], [0., 0., 0.]])
    >>> dec(jnp.zeros((5, 3)), A).shape, dec.rollout(jnp.zeros((5, 3)), 7, A).shape
    ((5, 3), (7, 3))
    """

    embed: jax.Array
    ar_coef: jax.Array
    ar_bias: jax.Array
    message_mlp: eqx.nn.MLP
    cell: eqx.nn.GRUCell
    readout: eqx.nn.MLP
    edge_kernel: jax.Array
    hill_proj: jax.Array | None
    hill_params: jax.Array | None
    hill_ctx: jax.Array | None
    n_nodes: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    message_size: int = eqx.field(static=True)
    embed_size: int = eqx.field(static=True)
    ar_lags: int = eqx.field(static=True)
    hill_head: bool = eqx.field(static=True)
    target_index: int = eqx.field(static=True)
    context_mean: tuple = eqx.field(static=True)
    context_scale: tuple = eqx.field(static=True)
    uses_graph: ClassVar[bool] = True

    def __init__(
        self,
        n_nodes: int,
        *,
        context_size: int = 0,
        hidden_size: int = 32,
        message_size: int = 16,
        embed_size: int = 8,
        ar_lags: int = 7,
        hill_head: bool = False,
        target_index: int = -1,
        context_mean=None,
        context_scale=None,
        key,
    ):
        d, h, m, e, p = int(n_nodes), int(hidden_size), int(message_size), int(embed_size), int(ar_lags)
        if d < 2 or min(h, m, e, p) < 1 or context_size < 0:
            raise ValueError(
                "GraphSafeDecoder: n_nodes >= 2 and hidden/message/embed sizes and ar_lags >= 1 are required, "
                f"got n_nodes={n_nodes}, hidden_size={hidden_size}, message_size={message_size}, "
                f"embed_size={embed_size}, ar_lags={ar_lags}"
            )
        k_emb, k_msg, k_cell, k_out, k_hill = jax.random.split(key, 5)
        self.n_nodes, self.context_size = d, int(context_size)
        self.hidden_size, self.message_size, self.embed_size, self.ar_lags = h, m, e, p
        self.hill_head = bool(hill_head)
        self.target_index = int(target_index) % d
        self.context_mean = tuple(
            float(v) for v in (context_mean if context_mean is not None else [0.0] * context_size)
        )
        self.context_scale = tuple(
            float(v) for v in (context_scale if context_scale is not None else [1.0] * context_size)
        )
        self.embed = scaled_normal(k_emb, (d, e), 0.5)
        self.ar_coef = jnp.zeros((d, p))
        self.ar_bias = jnp.zeros((d,))
        # linear graph-gated lag path K[j, i, l] (src, dst, lag), zero at init; gated by A[j, i] at every step,
        # so it adds a cross-node route only where the runtime graph has an edge
        self.edge_kernel = jnp.zeros((d, d, p))
        self.message_mlp = eqx.nn.MLP(h + p + e, m, width_size=2 * m, depth=1, activation=jnp.tanh, key=k_msg)
        self.cell = eqx.nn.GRUCell(1 + m + e, h, key=k_cell)
        self.readout = _zero_last(
            eqx.nn.MLP(h + m + e, "scalar", width_size=h, depth=1, activation=jnp.tanh, key=k_out)
        )
        if self.hill_head:
            k1, k2 = jax.random.split(k_hill)
            self.hill_proj = scaled_normal(k1, (h + 1,), 0.1)  # u = softplus(w . h_T + b)
            self.hill_params = jnp.zeros((2,))  # log K, log n
            self.hill_ctx = scaled_normal(k2, (self.context_size + 1,), 0.1)  # s(c) = v . c + v0
        else:
            self.hill_proj = self.hill_params = self.hill_ctx = None

    # ------------------------------------------------------------------ recurrence
    def init_state(self):
        """Initial state ``(h, buf)``: zeros of shape (d, hidden_size) and (d, ar_lags)."""
        return (jnp.zeros((self.n_nodes, self.hidden_size)), jnp.zeros((self.n_nodes, self.ar_lags)))

    def _context(self, context):
        if self.context_size == 0 or context is None:
            return jnp.zeros((self.context_size,))
        c = jnp.asarray(context, dtype=self.embed.dtype).reshape(self.context_size)
        return (c - jnp.asarray(self.context_mean)) / jnp.asarray(self.context_scale)

    def step(self, state, x_t, graph, context=None):
        """One step: observe ``x_t`` (d,), return the new state and the prediction of ``x(t+1)`` (d,)."""
        h, buf = state
        dt = self.embed.dtype
        x_t = jnp.asarray(x_t, dtype=dt)
        a = _zero_diag(graph, dt)
        buf = jnp.concatenate([x_t[:, None], buf[:, :-1]], axis=1)
        # messages from each sender's private state; the only cross-node path: m_i = sum_j A[j, i] M_j
        out = jax.vmap(self.message_mlp)(jnp.concatenate([h, buf, self.embed], axis=1))  # (d, m)
        msg = a.T @ out
        h = jax.vmap(self.cell)(jnp.concatenate([x_t[:, None], msg, self.embed], axis=1), h)
        y = self.ar_bias + jnp.sum(self.ar_coef * buf, axis=1)
        # linear lagged effects along the edges: sum_j A[j, i] sum_l K[j, i, l] buf_j[l]
        y = y + jnp.einsum("ji,jil,jl->i", a, self.edge_kernel, buf)
        y = y + jax.vmap(self.readout)(jnp.concatenate([h, msg, self.embed], axis=1))
        if self.hill_head:
            t = self.target_index
            u = jax.nn.softplus(jnp.dot(self.hill_proj[:-1], h[t]) + self.hill_proj[-1])
            half, slope = jnp.exp(self.hill_params[0]), jnp.exp(self.hill_params[1])
            scale = jnp.dot(self.hill_ctx[:-1], self._context(context)) + self.hill_ctx[-1]
            y = y.at[t].add(scale * hill(u, half, slope))
        return (h, buf), y

    def __call__(self, x, graph, context=None):
        """Teacher-forced predictions over a window ``x`` (W, d): row ``t`` predicts ``x[t + 1]``."""
        return teacher_forced_and_rollout(self, x, 1, graph, context)[0]

    def rollout(self, x_history, horizon: int, graph, context=None):
        """Teacher-force through ``x_history`` (W, d), then free-run ``horizon`` (static) steps -> (horizon, d)."""
        return teacher_forced_and_rollout(self, x_history, horizon, graph, context)[1]

    def constructor_kwargs(self) -> dict:
        """Keyword arguments that rebuild this architecture (used by checkpoints)."""
        return {
            "n_nodes": self.n_nodes,
            "context_size": self.context_size,
            "hidden_size": self.hidden_size,
            "message_size": self.message_size,
            "embed_size": self.embed_size,
            "ar_lags": self.ar_lags,
            "hill_head": self.hill_head,
            "target_index": self.target_index,
            "context_mean": list(self.context_mean),
            "context_scale": list(self.context_scale),
        }


def n_parameters(model) -> int:
    """Number of trainable scalars of a decoder.

    Examples
    --------
    >>> import jax
    >>> from dice_prob.models.decoder import GraphSafeDecoder, n_parameters
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, ar_lags=2, key=jax.random.key(0))
    >>> n_parameters(dec)
    244
    """
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return int(sum(np.prod(x.shape) for x in leaves))
