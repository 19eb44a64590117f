"""Bypass-capable baseline decoders with the graph-safe decoder's interface.

- :class:`DenseDecoder` — an unrestricted GRU over the whole node vector (plus context): every node can talk to
  every other node through one shared latent, plus a linear lagged path from every node to every other node (an
  unrestricted VAR). It ignores the graph input ("dense communication / latent memory" routes of the DICE
  paper).
- :class:`ARTargetDecoder` — every node, the target included, is forecast from its own lags only (a linear AR
  skip plus a shared nonlinear AR MLP with a node embedding): the "target autoregression" route.

Both accept and ignore ``graph`` (pass anything of shape (d, d)); ``uses_graph`` is False. They share
``init_state``/``step``/``__call__``/``rollout`` with :class:`dice_prob.models.decoder.GraphSafeDecoder`, so the
same trainer and every diagnostic run on them.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from dice_prob.models.decoder import _zero_last, scaled_normal, teacher_forced_and_rollout

__all__ = ["ARTargetDecoder", "DenseDecoder"]


class _Interface(eqx.Module):
    uses_graph: ClassVar[bool] = False

    def __call__(self, x, graph=None, context=None):
        """Teacher-forced predictions over a window ``x`` (W, d): row ``t`` predicts ``x[t + 1]``."""
        return teacher_forced_and_rollout(self, x, 1, graph, context)[0]

    def rollout(self, x_history, horizon: int, graph=None, context=None):
        """Teacher-force through ``x_history`` (W, d), then free-run ``horizon`` (static) steps -> (horizon, d)."""
        return teacher_forced_and_rollout(self, x_history, horizon, graph, context)[1]


class DenseDecoder(_Interface):
    """Unrestricted recurrent decoder: one GRU on the full vector ``[x(t), c]``; ignores the graph.

    ``y_i(t+1) = b_i + a_i . buf_i + sum_{j != i} K_ji . buf_j + MLP([h, c])_i``: an own-lag AR skip per node and
    a linear lagged path from every other node (``var_kernel`` (d, d, p), ``[src, dst, lag]``, the graph-safe
    decoder's ``edge_kernel`` with every gate open), so its linear part is an unrestricted VAR(p) that the trainer
    warm-starts by least squares exactly as it does the graph-safe decoder's graph-restricted one; the GRU and
    readout (zero output at initialisation) then add the dense nonlinear route over all nodes.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> dec = DenseDecoder(3, hidden_size=4, key=jax.random.key(0))
    >>> dec.rollout(jnp.zeros((5, 3)), 7, jnp.zeros((3, 3))).shape
    (7, 3)
    """

    ar_coef: jax.Array
    ar_bias: jax.Array
    var_kernel: jax.Array
    cell: eqx.nn.GRUCell
    readout: eqx.nn.MLP
    n_nodes: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    ar_lags: int = eqx.field(static=True)
    target_index: int = eqx.field(static=True)
    context_mean: tuple = eqx.field(static=True)
    context_scale: tuple = eqx.field(static=True)

    def __init__(
        self,
        n_nodes: int,
        *,
        context_size: int = 0,
        hidden_size: int = 64,
        ar_lags: int = 7,
        target_index: int = -1,
        context_mean=None,
        context_scale=None,
        key,
        **_ignored,
    ):
        d, h, p = int(n_nodes), int(hidden_size), int(ar_lags)
        k_cell, k_out = jax.random.split(key)
        self.n_nodes, self.context_size, self.hidden_size, self.ar_lags = d, int(context_size), h, p
        self.target_index = int(target_index) % d
        self.context_mean = tuple(
            float(v) for v in (context_mean if context_mean is not None else [0.0] * context_size)
        )
        self.context_scale = tuple(
            float(v) for v in (context_scale if context_scale is not None else [1.0] * context_size)
        )
        self.ar_coef = jnp.zeros((d, p))
        self.ar_bias = jnp.zeros((d,))
        # K[j, i, l]: lag l + 1 of node j in node i's equation; zero at init (the trainer's LS start fills it)
        self.var_kernel = jnp.zeros((d, d, p))
        self.cell = eqx.nn.GRUCell(d + self.context_size, h, key=k_cell)
        self.readout = _zero_last(
            eqx.nn.MLP(h + self.context_size, d, width_size=h, depth=1, activation=jnp.tanh, key=k_out)
        )

    def init_state(self):
        """Initial state ``(h, buf)``: zeros of shape (hidden_size,) and (d, ar_lags)."""
        return (jnp.zeros((self.hidden_size,)), jnp.zeros((self.n_nodes, self.ar_lags)))

    def _context(self, context):
        if self.context_size == 0 or context is None:
            return jnp.zeros((self.context_size,))
        c = jnp.asarray(context, dtype=self.ar_bias.dtype).reshape(self.context_size)
        return (c - jnp.asarray(self.context_mean)) / jnp.asarray(self.context_scale)

    def step(self, state, x_t, graph=None, context=None):
        """One step (the graph is ignored)."""
        h, buf = state
        x_t = jnp.asarray(x_t, dtype=self.ar_bias.dtype)
        c = self._context(context)
        buf = jnp.concatenate([x_t[:, None], buf[:, :-1]], axis=1)
        h = self.cell(jnp.concatenate([x_t, c]), h)
        y = self.ar_bias + jnp.sum(self.ar_coef * buf, axis=1) + self.readout(jnp.concatenate([h, c]))
        # unrestricted linear lagged path; the diagonal is masked because own lags are the AR skip's
        off = 1.0 - jnp.eye(self.n_nodes, dtype=buf.dtype)
        y = y + jnp.einsum("ji,jil,jl->i", off, self.var_kernel, buf)
        return (h, buf), y

    def constructor_kwargs(self) -> dict:
        return {
            "n_nodes": self.n_nodes,
            "context_size": self.context_size,
            "hidden_size": self.hidden_size,
            "ar_lags": self.ar_lags,
            "target_index": self.target_index,
            "context_mean": list(self.context_mean),
            "context_scale": list(self.context_scale),
        }


class ARTargetDecoder(_Interface):
    """Own-lag-only decoder: ``y_i(t+1) = b_i + a_i . buf_i + MLP([buf_i, e_i])`` for every node (no cross-node
    path at all, context unused); the target is forecast from its own lags only.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> dec = ARTargetDecoder(3, hidden_size=4, key=jax.random.key(0))
    >>> dec(jnp.zeros((5, 3)), jnp.zeros((3, 3))).shape
    (5, 3)
    """

    embed: jax.Array
    ar_coef: jax.Array
    ar_bias: jax.Array
    mlp: eqx.nn.MLP
    n_nodes: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)
    embed_size: int = eqx.field(static=True)
    ar_lags: int = eqx.field(static=True)
    target_index: int = eqx.field(static=True)

    def __init__(
        self,
        n_nodes: int,
        *,
        context_size: int = 0,
        hidden_size: int = 32,
        embed_size: int = 8,
        ar_lags: int = 7,
        target_index: int = -1,
        key,
        **_ignored,
    ):
        d, h, e, p = int(n_nodes), int(hidden_size), int(embed_size), int(ar_lags)
        k_emb, k_mlp = jax.random.split(key)
        self.n_nodes, self.context_size, self.hidden_size, self.embed_size, self.ar_lags = (
            d,
            int(context_size),
            h,
            e,
            p,
        )
        self.target_index = int(target_index) % d
        self.embed = scaled_normal(k_emb, (d, e), 0.5)
        self.ar_coef = jnp.zeros((d, p))
        self.ar_bias = jnp.zeros((d,))
        self.mlp = _zero_last(
            eqx.nn.MLP(p + e, "scalar", width_size=h, depth=1, activation=jnp.tanh, key=k_mlp)
        )

    def init_state(self):
        """Initial state: the own-lag buffer, zeros of shape (d, ar_lags)."""
        return jnp.zeros((self.n_nodes, self.ar_lags))

    def step(self, state, x_t, graph=None, context=None):
        """One step (graph and context are ignored)."""
        x_t = jnp.asarray(x_t, dtype=self.ar_bias.dtype)
        buf = jnp.concatenate([x_t[:, None], state[:, :-1]], axis=1)
        y = self.ar_bias + jnp.sum(self.ar_coef * buf, axis=1)
        y = y + jax.vmap(self.mlp)(jnp.concatenate([buf, self.embed], axis=1))
        return buf, y

    def constructor_kwargs(self) -> dict:
        return {
            "n_nodes": self.n_nodes,
            "context_size": self.context_size,
            "hidden_size": self.hidden_size,
            "embed_size": self.embed_size,
            "ar_lags": self.ar_lags,
            "target_index": self.target_index,
        }
