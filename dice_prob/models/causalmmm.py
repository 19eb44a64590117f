"""CausalMMM (Gong et al., WSDM 2024) re-implemented in JAX/Equinox as a baseline.

Written from the engineering description in ``shared/reference/causalmmm.md`` only (the official PyTorch code has
no licence; nothing is copied from it). The model is a graph variational auto-encoder:

* **CREncoder** (causal relational encoder): each node's whole series is its feature vector. Four MLP blocks
  (Linear -> ELU -> dropout -> Linear -> ELU -> BatchNorm1d) run node -> edge ([receiver, sender]) -> node (sum
  over incoming edges divided by N) -> edge (+ skip) and a final Linear gives K = 2 edge-type logits per ordered
  pair. Xavier-normal weights, bias 0.1. BatchNorm mirrors PyTorch: batch statistics in training, running
  statistics (momentum 0.1, eps 1e-5, running variance from the *unbiased* batch variance) in evaluation.
* **Edges**: ``q = softmax(logits)``; one soft Gumbel-softmax sample (tau = 0.5) per forward pass, reused at
  every time step. KL term ``sum q log(q + 1e-16) / (N * B)`` (uniform prior up to a constant).
* **MRDecoderS** (marketing response decoder): a graph-conditioned GRU-like recurrence. Messages
  ``tanh(Linear(tanh(Linear([h_sender, h_receiver]))))`` are multiplied by the soft edge sample, summed into the
  receiver and divided by N; gates ``r, u = sigmoid(A x + B m)``, candidate ``n = sigmoid(A_n x + r * B_n m)``
  (sigmoid, not tanh; no biases); ``h <- (1 - u) n + u h``. A shared ReLU readout gives the *absolute* next value
  of every node. The target (last node) goes through a context-driven Hill factor
  ``p * f^a / (f^a + g^a)``, ``f = max(p, 0.1)``, ``a, g = max(Linear(context), 0.1)``.
* **Rollout**: input at step t is the truth if ``t <= T - M`` else the model's previous (post-saturation) output;
  gradients flow through the fed-back outputs.
* **Loss**: ``sum (yhat - y)^2 / (2 * 5e-7) / (B * N) + 100 * KL``.

Departures from the original, all deliberate and documented:

* Batched over shops (the original hard-wires batch size 1 in the saturation head). With
  ``batchnorm="shop"`` (default) BatchNorm statistics are computed per shop, exactly as the original computes
  them with one shop per batch, so a batched forward pass equals B single-shop passes; running statistics are
  updated as if the B shops had been seen one after another.
* The unused type-0 message MLP is not created (``preSkip``), so parameter counts differ from the original.
* The first Linear of every pairwise MLP is applied per node and then gathered onto edges
  (``W [h_r, h_s] = W_r h_r + W_s h_s``): the same function, N/E times the cost.
* ``leak_free=True`` feeds the encoder only ``x[:, :T - M + 1]`` (the steps the decoder sees as truth).

Properties worth knowing (they follow from the description, not from our choices):

* Messages at step t are built from the hidden states of step t - 1, so the prediction of x_i(t+1) sees a
  parent's values only up to x_j(t-1): a parent's lag-1 effect is out of the decoder's reach (lags >= 2 are not).
* An edge only scales a message by its soft sample in [0, 1], and the message MLP is shared by all pairs, so
  with K = 2 the decoder cannot use parents whose effects have opposite signs on one receiver, or signs that
  change from shop to shop: only mechanisms shared across shops with consistent signs are learnable.
* **Edge-logit saturation with the original's KL weight.** At initialisation the cross-node path (sender
  input -> hidden -> message MLP -> / N -> gates -> readout) is about three orders of magnitude weaker than a
  node's own path, so for the first hundred or so Adam steps the NLL carries almost no information about the
  edges. It does carry a small but *consistent* push towards deterministic samples (Gumbel noise in the
  messages only adds variance), and Adam, being scale-free, turns that push into full-size steps on every
  encoder weight: with the decoder frozen at its initialisation and lambda = 100, the standard deviation of
  the per-edge logit difference grows from 1.8 to 5.6 in 8 steps and to 14 in 100 (lr 5e-3; about ten
  times slower at 5e-4), with no change in the loss. Once ``|logit difference| >> tau`` the Gumbel-softmax
  derivative ``y (1 - y) / tau`` vanishes and the encoder is frozen on a random graph before the decoder
  could have told it anything (AUROC ~0.5). The uniform-prior KL is the only force against this, and at
  lambda = 100 it is inert next to an NLL scaled by ``1 / (2 * 5e-7)``. A KL weight of about 1e6 (on
  standardised data; equivalently ``nll_var`` about 5e-3 with lambda = 100, since Adam is scale-free) keeps
  the logits near 0 until the decoder's edge gradient is informative, and the port then learns an easy
  funnel (``tests/inference/test_causalmmm_train.py``). The default stays at the original's 100; measured
  figures are in the trainer's module docstring.

Conventions: arrays are (shop, time, node) at the API; edge k is the k-th off-diagonal entry, row-major, of the
N x N matrix with row = receiver i and column = sender j (edge j -> i). Edge scores are returned in dice_prob's
``A[src, dst]`` convention.
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from dice_prob import _random
from dice_prob.config import _choice, _ConfigBase, _int, _pos, _require
from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError

__all__ = [
    "CREncoder",
    "CausalMMM",
    "CausalMMMConfig",
    "CausalMMMDecoder",
    "CausalMMMOutput",
    "MRDecoderS",
    "adjacency_to_edge_vector",
    "causalmmm_loss",
    "edge_index",
    "edge_scores_from_logits",
    "edge_vector_to_adjacency",
    "gumbel_softmax",
    "kl_uniform",
]

_GUMBEL_EPS = 1e-10
_KL_EPS = 1e-16
_FLOOR = 0.1


# ---------------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class CausalMMMConfig(_ConfigBase):
    """Settings of the CausalMMM port; defaults follow the official ``configs01.txt`` (reference §7).

    Parameters
    ----------
    encoder_hidden, decoder_hidden : int
        Hidden width H of the encoder and the decoder (256, 256).
    edge_types : int
        K, number of edge types (2: no edge / edge). Type 0 is "no edge" and sends no message.
    pred_steps : int
        M, the free-running tail: the decoder sees the truth for ``t <= T - M`` (10).
    tau : float
        Gumbel-softmax temperature (0.5).
    kl_weight : float
        lambda, the weight of the uniform-prior KL term (100, the original's). At 100 the KL is inert and the
        edge logits saturate before the decoder uses messages, so the port does not learn graphs from fresh
        series in short runs; about 1e6 keeps the logits soft long enough (see the module docstring).
    nll_var : float
        sigma^2 of the Gaussian NLL (5e-7).
    encoder_dropout, decoder_dropout : float
        Dropout rates (0, 0). As in the original, decoder dropout is active whenever a key is given
        (evaluation included); encoder dropout only in training mode.
    learning_rate : float
        Adam learning rate (5e-4; default betas and eps), encoder and decoder jointly.
    lr_decay_step, lr_decay_gamma : int, float
        StepLR: the learning rate is multiplied by ``lr_decay_gamma`` every ``lr_decay_step`` epochs (200, 0.5).
    batch_size : int
        Shops per mini-batch. The original needs 1 (its saturation head is hard-wired to one shop); this port is
        batched, and 16 is the default for speed. Set 1 for the original's optimisation trajectory.
    epochs : int
        Training epochs. The shipped config says 10, which looks like a demo value (StepLR at 200 epochs implies
        longer runs); benchmarks should set this explicitly.
    val_fraction : float
        Share of shops held out for validation (random split, 0.2). The checkpoint with the lowest mean
        validation loss is kept.
    validate : bool
        Keep the best-validation checkpoint (True); False keeps the last epoch and trains on every shop.
    leak_free : bool
        False: the encoder sees the whole series, forecast window included (faithful). True: only
        ``x[:, :T - M + 1]``.
    batchnorm : {"shop", "batch"}
        BatchNorm statistics per shop ("shop", what the original computes at batch size 1) or over the whole
        mini-batch ("batch", what a plain batched BatchNorm1d would do).
    bn_momentum, bn_eps : float
        PyTorch BatchNorm momentum (0.1) and eps (1e-5).
    standardize : bool
        Train on ``panel.scaled`` (per-node z-scores fitted on the panel's training window; True) or on raw
        values. The released CausalMMM data are zero-mean (roots s.d. about 0.1, target about 0.8), and dice_prob's
        MSE@7 is defined on standardised data. Standardising makes the NLL a few times larger than on the raw
        release, which shifts the NLL/KL balance further towards the NLL.
    shuffle : bool
        Shuffle the training shops every epoch (False: the original's loaders do not shuffle).
    progress_bar : bool
        Show a tqdm bar over epochs (never under CI).

    Examples
    --------
    >>> cfg = CausalMMMConfig(encoder_hidden=16, decoder_hidden=16)
    >>> CausalMMMConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    encoder_hidden: int = 256
    decoder_hidden: int = 256
    edge_types: int = 2
    pred_steps: int = 10
    tau: float = 0.5
    kl_weight: float = 100.0
    nll_var: float = 5e-7
    encoder_dropout: float = 0.0
    decoder_dropout: float = 0.0
    learning_rate: float = 5e-4
    lr_decay_step: int = 200
    lr_decay_gamma: float = 0.5
    batch_size: int = 16
    epochs: int = 10
    val_fraction: float = 0.2
    validate: bool = True
    leak_free: bool = False
    batchnorm: str = "shop"
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    standardize: bool = True
    shuffle: bool = False
    progress_bar: bool = True

    def __post_init__(self) -> None:
        c = "CausalMMMConfig"
        for f in ("encoder_hidden", "decoder_hidden", "pred_steps", "lr_decay_step", "batch_size"):
            _int(getattr(self, f), c, f, 1)
        _int(self.epochs, c, "epochs", 1)
        _int(self.edge_types, c, "edge_types", 2, 16)
        for f in ("tau", "nll_var", "learning_rate", "bn_eps"):
            _pos(getattr(self, f), c, f)
        _pos(self.kl_weight, c, "kl_weight", allow_zero=True)
        for f in ("encoder_dropout", "decoder_dropout"):
            v = getattr(self, f)
            _require(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v < 1.0,
                c,
                f,
                f"must be a number in [0, 1), got {v!r}",
            )
        _require(0.0 < self.lr_decay_gamma <= 1.0, c, "lr_decay_gamma", "must be in (0, 1]")
        _require(0.0 < self.bn_momentum <= 1.0, c, "bn_momentum", "must be in (0, 1]")
        _require(0.0 < self.val_fraction < 0.9, c, "val_fraction", "must be in (0, 0.9)")
        _choice(self.batchnorm, c, "batchnorm", ("shop", "batch"))
        for f in ("validate", "leak_free", "standardize", "shuffle", "progress_bar"):
            _require(
                isinstance(getattr(self, f), bool), c, f, f"must be True or False, got {getattr(self, f)!r}"
            )


# ---------------------------------------------------------------------------------------------- edge order
def edge_index(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Receivers and senders of CausalMMM's edge order.

    Edge k is the k-th off-diagonal entry, row-major, of the N x N matrix whose row is the receiver i and whose
    column is the sender j, i.e. the edge j -> i.

    Returns
    -------
    receivers, senders : ndarray of int, shape (N (N - 1),)

    Examples
    --------
    >>> r, s = edge_index(8)
    >>> (int(s[0]), int(r[0])), (int(s[6]), int(r[6])), (int(s[7]), int(r[7])), (int(s[55]), int(r[55]))
    ((1, 0), (7, 0), (0, 1), (6, 7))
    """
    n = int(n_nodes)
    if n < 2:
        raise DataValidationError(f"n_nodes: need at least 2 nodes, got {n}")
    rows, cols = np.nonzero(~np.eye(n, dtype=bool))  # row-major order
    return rows.astype(np.int32), cols.astype(np.int32)


def edge_vector_to_adjacency(edges, n_nodes: int | None = None) -> np.ndarray:
    """Convert CausalMMM edge vectors (..., N(N-1)) to dice_prob adjacency ``A[src, dst]`` (..., N, N).

    Examples
    --------
    >>> e = np.zeros(6); e[0] = 1.0          # edge k = 0 of N = 3 is 1 -> 0
    >>> float(edge_vector_to_adjacency(e)[1, 0])
    1.0
    """
    e = np.asarray(edges, dtype=np.float64)
    n_e = e.shape[-1]
    n = int(round((1 + math.sqrt(1 + 4 * n_e)) / 2)) if n_nodes is None else int(n_nodes)
    if n * (n - 1) != n_e:
        raise GraphValidationError(
            f"edges: last axis has {n_e} entries, which is not N(N-1) for N = {n}; pass N(N-1) edge values"
        )
    recv, send = edge_index(n)
    out = np.zeros(e.shape[:-1] + (n, n))
    out[..., send, recv] = e
    return out


def adjacency_to_edge_vector(graph) -> np.ndarray:
    """Convert dice_prob adjacency ``A[src, dst]`` (..., N, N) to CausalMMM edge vectors (..., N(N-1)).

    Examples
    --------
    >>> a = np.zeros((3, 3)); a[1, 0] = 1.0
    >>> adjacency_to_edge_vector(a).tolist()
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    a = np.asarray(graph, dtype=np.float64)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise GraphValidationError(f"graph: expected shape (..., N, N), got {a.shape}")
    recv, send = edge_index(a.shape[-1])
    return a[..., send, recv]


def _edges_to_adjacency_jax(values: jax.Array, n_nodes: int) -> jax.Array:
    recv, send = edge_index(n_nodes)
    out = jnp.zeros(values.shape[:-1] + (n_nodes, n_nodes), values.dtype)
    return out.at[..., send, recv].set(values)


def _adjacency_to_edges_jax(graph: jax.Array) -> jax.Array:
    recv, send = edge_index(graph.shape[-1])
    return graph[..., send, recv]


# --------------------------------------------------------------------------------------------- primitives
def gumbel_softmax(rng_key, logits: jax.Array, tau: float) -> jax.Array:
    """Soft Gumbel-softmax sample ``softmax((logits + g) / tau)``, g = -log(eps - log(U + eps)), eps = 1e-10.

    Examples
    --------
    >>> y = gumbel_softmax(jax.random.key(0), jnp.zeros((3, 2)), 0.5)
    >>> y.shape, bool(jnp.allclose(y.sum(-1), 1.0))
    ((3, 2), True)
    """
    u = jax.random.uniform(rng_key, logits.shape, dtype=logits.dtype)
    g = -jnp.log(_GUMBEL_EPS - jnp.log(u + _GUMBEL_EPS))
    return jax.nn.softmax((logits + g) / tau, axis=-1)


def kl_uniform(probs: jax.Array, n_nodes: int) -> jax.Array:
    """CausalMMM's KL term: ``sum(q * log(q + 1e-16)) / (N * B)`` for ``probs`` of shape (B, E, K).

    Examples
    --------
    >>> round(float(kl_uniform(jnp.full((1, 2, 2), 0.5), 2)), 4)  # 4 * 0.5 * log(0.5) / 2
    -0.6931
    """
    return jnp.sum(probs * jnp.log(probs + _KL_EPS)) / (n_nodes * probs.shape[0])


def causalmmm_loss(
    pred: jax.Array,
    target: jax.Array,
    probs: jax.Array,
    *,
    nll_var: float = 5e-7,
    kl_weight: float = 100.0,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """CausalMMM's loss (reference §6): NLL + lambda * KL.

    Parameters
    ----------
    pred, target : array, shape (B, T - 1, N)
        Predictions and the truth ``x[:, 1:]``.
    probs : array, shape (B, E, K)
        Edge-type posterior ``softmax(logits)``.

    Returns
    -------
    total, nll, kl : scalars; ``nll = sum((pred - target)^2 / (2 nll_var)) / (B N)``, ``kl`` as
    :func:`kl_uniform`.

    Examples
    --------
    >>> p = jnp.zeros((1, 2, 2)); y = jnp.full((1, 2, 2), 1e-3); q = jnp.full((1, 2, 2), 0.5)
    >>> [round(float(v), 3) for v in causalmmm_loss(p, y, q)]
    [-67.315, 2.0, -0.693]
    """
    b, _, n = pred.shape
    nll = jnp.sum((pred - target) ** 2 / (2.0 * nll_var)) / (b * n)
    kl = kl_uniform(probs, n)
    return nll + kl_weight * kl, nll, kl


def edge_scores_from_logits(logits: jax.Array, n_nodes: int) -> jax.Array:
    """Edge scores ``1 - softmax(logits)[..., 0]`` (1 - P(no edge)) as ``A[src, dst]`` with a zero diagonal.

    Parameters
    ----------
    logits : array, shape (..., N(N-1), K)

    Returns
    -------
    array, shape (..., N, N)

    Examples
    --------
    >>> s = edge_scores_from_logits(jnp.zeros((6, 2)), 3)
    >>> s.shape, float(s[0, 1]), float(s[0, 0])
    ((3, 3), 0.5, 0.0)
    """
    q0 = jax.nn.softmax(logits, axis=-1)[..., 0]
    return _edges_to_adjacency_jax(1.0 - q0, n_nodes)


def _dropout(key, x, p: float):
    if p <= 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
    return jnp.where(keep, x / (1.0 - p), 0.0)


def _xavier(key, fan_in: int, fan_out: int) -> jax.Array:
    return _random.normal(key, (fan_in, fan_out)) * math.sqrt(2.0 / (fan_in + fan_out))


def _torch_uniform(key, shape, fan_in: int) -> jax.Array:
    bound = 1.0 / math.sqrt(fan_in)
    return _random.uniform(key, shape, minval=-bound, maxval=bound)


def _split(key, n):
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


# ------------------------------------------------------------------------------------------------ encoder
class BatchNorm(eqx.Module):
    """PyTorch-equivalent ``BatchNorm1d`` over flattened rows, with optional per-group (per-shop) statistics.

    ``x`` has shape (G, rows, H): in training mode, statistics are taken over the rows of each group
    (``per_group=True``) or over all G * rows rows; in evaluation mode the running statistics are used. The
    running statistics are *not* trained: :func:`update_running_stats` applies the momentum update.
    """

    weight: jax.Array
    bias: jax.Array
    running_mean: jax.Array
    running_var: jax.Array
    eps: float = eqx.field(static=True)

    def __init__(self, size: int, eps: float = 1e-5):
        self.weight = jnp.ones(size)
        self.bias = jnp.zeros(size)
        self.running_mean = jnp.zeros(size)
        self.running_var = jnp.ones(size)
        self.eps = float(eps)

    def __call__(self, x: jax.Array, *, train: bool, per_group: bool):
        """Return (normalised x, (batch means (G', H), unbiased batch variances (G', H)) or None)."""
        if not train:
            rm = jax.lax.stop_gradient(self.running_mean)
            rv = jax.lax.stop_gradient(self.running_var)
            return (x - rm) / jnp.sqrt(rv + self.eps) * self.weight + self.bias, None
        axes = (1,) if per_group else (0, 1)
        n = x.shape[1] if per_group else x.shape[0] * x.shape[1]
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean((x - mean) ** 2, axis=axes, keepdims=True)
        out = (x - mean) / jnp.sqrt(var + self.eps) * self.weight + self.bias
        unbiased = var * (n / max(n - 1, 1))
        h = x.shape[-1]
        return out, (mean.reshape(-1, h), unbiased.reshape(-1, h))


class _MLPBlock(eqx.Module):
    """Linear -> ELU -> dropout -> Linear -> ELU -> BatchNorm; Xavier-normal weights, bias 0.1."""

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    bn: BatchNorm
    dropout: float = eqx.field(static=True)

    def __init__(self, in_size: int, hidden: int, out_size: int, dropout: float, bn_eps: float, *, key):
        k1, k2 = jax.random.split(key)
        self.w1 = _xavier(k1, in_size, hidden)
        self.b1 = jnp.full(hidden, 0.1, dtype=jnp.float32)
        self.w2 = _xavier(k2, hidden, out_size)
        self.b2 = jnp.full(out_size, 0.1, dtype=jnp.float32)
        self.bn = BatchNorm(out_size, bn_eps)
        self.dropout = float(dropout)

    def from_pre(self, pre: jax.Array, *, train: bool, per_group: bool, key):
        """Continue the block from the first Linear's output ``pre`` (B, rows, hidden)."""
        h = jax.nn.elu(pre)
        h = _dropout(key if train else None, h, self.dropout)
        h = jax.nn.elu(h @ self.w2 + self.b2)
        return self.bn(h, train=train, per_group=per_group)

    def __call__(self, x, *, train: bool, per_group: bool, key):
        return self.from_pre(x @ self.w1 + self.b1, train=train, per_group=per_group, key=key)


class CREncoder(eqx.Module):
    """Causal relational encoder: node series (B, N, T_in) -> edge-type logits (B, N(N-1), K).

    Examples
    --------
    >>> enc = CREncoder(4, 12, 8, 2, key=jax.random.key(0))
    >>> logits, stats = enc(jnp.ones((3, 4, 12)) * jnp.arange(4.0)[:, None], train=True, per_group=True)
    >>> logits.shape, len(stats)
    ((3, 12, 2), 4)
    """

    mlp1: _MLPBlock
    mlp2: _MLPBlock
    mlp3: _MLPBlock
    mlp4: _MLPBlock
    w_out: jax.Array
    b_out: jax.Array
    n_nodes: int = eqx.field(static=True)
    in_size: int = eqx.field(static=True)

    def __init__(
        self,
        n_nodes: int,
        in_size: int,
        hidden: int,
        edge_types: int = 2,
        *,
        dropout: float = 0.0,
        bn_eps: float = 1e-5,
        key,
    ):
        ks = jax.random.split(key, 5)
        self.mlp1 = _MLPBlock(in_size, hidden, hidden, dropout, bn_eps, key=ks[0])
        self.mlp2 = _MLPBlock(2 * hidden, hidden, hidden, dropout, bn_eps, key=ks[1])
        self.mlp3 = _MLPBlock(hidden, hidden, hidden, dropout, bn_eps, key=ks[2])
        self.mlp4 = _MLPBlock(3 * hidden, hidden, hidden, dropout, bn_eps, key=ks[3])
        self.w_out = _xavier(ks[4], hidden, edge_types)
        self.b_out = jnp.full(edge_types, 0.1, dtype=jnp.float32)
        self.n_nodes = int(n_nodes)
        self.in_size = int(in_size)

    def __call__(self, x: jax.Array, *, train: bool, per_group: bool = True, key=None):
        """Logits (B, E, K) and, in training mode, the four blocks' batch statistics (else None)."""
        n = self.n_nodes
        recv, send = edge_index(n)
        onehot_recv = jax.nn.one_hot(recv, n, dtype=x.dtype)  # (E, N)
        hd = self.w_out.shape[0]
        k1, k2, k3, k4 = _split(key, 4)
        h, s1 = self.mlp1(x, train=train, per_group=per_group, key=k1)  # (B, N, H)
        # node -> edge, [receiver, sender]; first Linear applied per node, then gathered.
        w = self.mlp2.w1
        pre = (h @ w[:hd])[:, recv] + (h @ w[hd:])[:, send] + self.mlp2.b1
        e1, s2 = self.mlp2.from_pre(pre, train=train, per_group=per_group, key=k2)  # (B, E, H)
        # edge -> node: sum over incoming edges, divided by N (not the in-degree).
        agg = jnp.einsum("beh,en->bnh", e1, onehot_recv) / n
        h2, s3 = self.mlp3(agg, train=train, per_group=per_group, key=k3)
        w = self.mlp4.w1
        pre = (h2 @ w[:hd])[:, recv] + (h2 @ w[hd : 2 * hd])[:, send] + e1 @ w[2 * hd :] + self.mlp4.b1
        e2, s4 = self.mlp4.from_pre(pre, train=train, per_group=per_group, key=k4)
        logits = e2 @ self.w_out + self.b_out
        stats = (s1, s2, s3, s4) if train else None
        return logits, stats


def _bn_paths(encoder_root):
    return [getattr(encoder_root, f"mlp{i}").bn for i in range(1, 5)]


def update_running_stats(encoder: CREncoder, stats, momentum: float = 0.1) -> CREncoder:
    """Apply PyTorch's running-statistics update for the batch statistics ``stats`` of one training pass.

    With per-shop statistics (G rows of stats) the update is applied once per shop, in order, exactly as
    G successive single-shop passes would: ``r <- (1 - m) r + m s_g``.
    """

    def upd(running, batch):
        def body(r, s):
            return (1.0 - momentum) * r + momentum * s, None

        r, _ = jax.lax.scan(body, running, batch)
        return r

    new_means, new_vars = [], []
    for bn, (m, v) in zip(_bn_paths(encoder), stats, strict=True):
        new_means.append(upd(bn.running_mean, jax.lax.stop_gradient(m)))
        new_vars.append(upd(bn.running_var, jax.lax.stop_gradient(v)))
    enc = eqx.tree_at(lambda e: [b.running_mean for b in _bn_paths(e)], encoder, new_means)
    return eqx.tree_at(lambda e: [b.running_var for b in _bn_paths(e)], enc, new_vars)


# ------------------------------------------------------------------------------------------------ decoder
class MRDecoderS(eqx.Module):
    """Marketing response decoder: graph-conditioned GRU-like recurrence with a Hill head on the last node.

    PyTorch-default initialisation (uniform(+-1/sqrt(fan_in)) for weights and biases). Only the message MLPs of
    edge types 1..K-1 exist (type 0, "no edge", sends nothing).

    Examples
    --------
    >>> dec = MRDecoderS(3, 8, context_size=2, key=jax.random.key(0))
    >>> x = jnp.ones((2, 10, 3)); w = jnp.ones((2, 6, 1)); c = jnp.zeros((2, 2))
    >>> dec.rollout(x, w, c, switch_step=7).shape
    (2, 9, 3)
    """

    msg_w1: jax.Array  # (K-1, 2H, H), rows: [sender H | receiver H]
    msg_b1: jax.Array
    msg_w2: jax.Array
    msg_b2: jax.Array
    in_r: jax.Array  # (H,) scalar input -> H, no bias
    in_u: jax.Array
    in_n: jax.Array
    hid_r: jax.Array  # (H, H), no bias
    hid_u: jax.Array
    hid_n: jax.Array
    out_w1: jax.Array
    out_b1: jax.Array
    out_w2: jax.Array
    out_b2: jax.Array
    out_w3: jax.Array
    out_b3: jax.Array
    alpha_w: jax.Array  # (c,)
    alpha_b: jax.Array  # ()
    gamma_w: jax.Array
    gamma_b: jax.Array
    n_nodes: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    context_size: int = eqx.field(static=True)
    dropout: float = eqx.field(static=True)

    def __init__(
        self,
        n_nodes: int,
        hidden: int,
        *,
        context_size: int = 2,
        edge_types: int = 2,
        dropout: float = 0.0,
        key,
    ):
        h = int(hidden)
        kt = int(edge_types) - 1
        c = max(int(context_size), 1)
        ks = iter(jax.random.split(key, 20))
        self.msg_w1 = _torch_uniform(next(ks), (kt, 2 * h, h), 2 * h)
        self.msg_b1 = _torch_uniform(next(ks), (kt, h), 2 * h)
        self.msg_w2 = _torch_uniform(next(ks), (kt, h, h), h)
        self.msg_b2 = _torch_uniform(next(ks), (kt, h), h)
        self.in_r = _torch_uniform(next(ks), (h,), 1)
        self.in_u = _torch_uniform(next(ks), (h,), 1)
        self.in_n = _torch_uniform(next(ks), (h,), 1)
        self.hid_r = _torch_uniform(next(ks), (h, h), h)
        self.hid_u = _torch_uniform(next(ks), (h, h), h)
        self.hid_n = _torch_uniform(next(ks), (h, h), h)
        self.out_w1 = _torch_uniform(next(ks), (h, h), h)
        self.out_b1 = _torch_uniform(next(ks), (h,), h)
        self.out_w2 = _torch_uniform(next(ks), (h, h), h)
        self.out_b2 = _torch_uniform(next(ks), (h,), h)
        self.out_w3 = _torch_uniform(next(ks), (h, 1), h)
        self.out_b3 = _torch_uniform(next(ks), (1,), h)
        self.alpha_w = _torch_uniform(next(ks), (c,), c)
        self.alpha_b = _torch_uniform(next(ks), (), c)
        self.gamma_w = _torch_uniform(next(ks), (c,), c)
        self.gamma_b = _torch_uniform(next(ks), (), c)
        self.n_nodes = int(n_nodes)
        self.hidden = h
        self.context_size = c
        self.dropout = float(dropout)

    def init_hidden(self, batch: int) -> jax.Array:
        return jnp.zeros((batch, self.n_nodes, self.hidden))

    def saturation(self, p: jax.Array, context: jax.Array) -> jax.Array:
        """Context-driven Hill factor on the raw target readout ``p`` (B,), context (B, c)."""
        f = jnp.maximum(p, _FLOOR)
        alpha = jnp.maximum(context @ self.alpha_w + self.alpha_b, _FLOOR)
        gamma = jnp.maximum(context @ self.gamma_w + self.gamma_b, _FLOOR)
        fa = f**alpha
        return p * fa / (fa + gamma**alpha)

    def step(self, h: jax.Array, x_t: jax.Array, edge_w: jax.Array, context: jax.Array, key=None):
        """One recurrence step.

        Parameters
        ----------
        h : (B, N, H) hidden state; x_t : (B, N) input; edge_w : (B, E, K-1) soft weights of the edge types
        1..K-1 in CausalMMM's edge order; context : (B, c).

        Returns
        -------
        (new hidden (B, N, H), prediction of x(t+1) (B, N), post-saturation on the last node).
        """
        n, hd = self.n_nodes, self.hidden
        recv, send = edge_index(n)
        onehot_recv = jax.nn.one_hot(recv, n, dtype=h.dtype)
        kt = self.msg_w1.shape[0]
        keys = _split(key, 2 * kt + 2)
        msgs = 0.0
        for k in range(kt):
            w1 = self.msg_w1[k]
            pre = (h @ w1[:hd])[:, send] + (h @ w1[hd:])[:, recv] + self.msg_b1[k]  # [sender, receiver]
            m = _dropout(keys[2 * k], jnp.tanh(pre), self.dropout)
            m = jnp.tanh(m @ self.msg_w2[k] + self.msg_b2[k])
            msgs = msgs + m * edge_w[..., k : k + 1]
        msgs = msgs / kt
        agg = jnp.einsum("beh,en->bnh", msgs, onehot_recv) / n  # divide by N, not the in-degree
        xi = x_t[..., None]
        r = jax.nn.sigmoid(xi * self.in_r + agg @ self.hid_r)
        u = jax.nn.sigmoid(xi * self.in_u + agg @ self.hid_u)
        cand = jax.nn.sigmoid(xi * self.in_n + r * (agg @ self.hid_n))
        h_new = (1.0 - u) * cand + u * h
        o = _dropout(keys[-2], jax.nn.relu(h_new @ self.out_w1 + self.out_b1), self.dropout)
        o = _dropout(keys[-1], jax.nn.relu(o @ self.out_w2 + self.out_b2), self.dropout)
        p = (o @ self.out_w3 + self.out_b3)[..., 0]  # (B, N)
        pred = p.at[:, -1].set(self.saturation(p[:, -1], context))
        return h_new, pred

    def rollout(self, x: jax.Array, edge_w: jax.Array, context: jax.Array, *, switch_step: int, key=None):
        """Teacher forcing for ``t <= switch_step``, then the model's own outputs (gradients flow through them).

        Parameters
        ----------
        x : (B, T, N) series (entries after ``switch_step`` are never read); edge_w : (B, E, K-1);
        context : (B, c); switch_step : last step whose truth is fed (``T - M`` in training).

        Returns
        -------
        (B, T - 1, N): row t is the prediction of x(t + 1).
        """
        b, t_len, n = x.shape
        xs = jnp.swapaxes(x[:, :-1], 0, 1)  # (T-1, B, N)
        ts = jnp.arange(t_len - 1)
        keys = jax.random.split(key, t_len - 1) if (key is not None and self.dropout > 0) else None

        def body(carry, inp):
            h, prev = carry
            if keys is None:
                t, x_t = inp
                k = None
            else:
                t, x_t, k = inp
            x_in = jnp.where(t <= switch_step, x_t, prev)
            h, pred = self.step(h, x_in, edge_w, context, k)
            return (h, pred), pred

        init = (self.init_hidden(b), jnp.zeros((b, n), x.dtype))
        seq = (ts, xs) if keys is None else (ts, xs, keys)
        _, preds = jax.lax.scan(body, init, seq)
        return jnp.swapaxes(preds, 0, 1)


# -------------------------------------------------------------------------------------------- full model
class CausalMMMOutput(eqx.Module):
    """One forward pass: predictions (B, T-1, N), logits (B, E, K), softmax probs, the soft sample, BN stats."""

    pred: jax.Array
    logits: jax.Array
    probs: jax.Array
    sample: jax.Array
    bn_stats: tuple | None


class CausalMMM(eqx.Module):
    """Encoder + decoder of CausalMMM for panels of ``n_steps`` steps and ``n_nodes`` nodes (target last).

    Parameters
    ----------
    n_nodes, n_steps : int
        N and T of the training series (T fixes the encoder's input width).
    context_size : int
        Context dimension c (>= 1; pass zeros when a panel has no context).
    config : CausalMMMConfig
    key : PRNG key for the initialisation.

    Examples
    --------
    >>> cfg = CausalMMMConfig(encoder_hidden=8, decoder_hidden=8, pred_steps=3)
    >>> m = CausalMMM(4, 12, context_size=2, config=cfg, key=jax.random.key(0))
    >>> out = m(jax.random.key(1), jnp.ones((2, 12, 4)) * jnp.arange(4.0), jnp.zeros((2, 2)), train=True)
    >>> out.pred.shape, m.edge_scores(jnp.ones((2, 12, 4)) * jnp.arange(4.0)).shape
    ((2, 11, 4), (2, 4, 4))
    """

    encoder: CREncoder
    decoder: MRDecoderS
    n_nodes: int = eqx.field(static=True)
    n_steps: int = eqx.field(static=True)
    pred_steps: int = eqx.field(static=True)
    tau: float = eqx.field(static=True)
    leak_free: bool = eqx.field(static=True)
    per_shop_bn: bool = eqx.field(static=True)
    bn_momentum: float = eqx.field(static=True)

    def __init__(self, n_nodes: int, n_steps: int, *, context_size: int = 2, config=None, key):
        cfg = CausalMMMConfig() if config is None else config
        if not isinstance(cfg, CausalMMMConfig):
            raise ConfigError(f"config: expected a CausalMMMConfig, got {type(cfg).__name__}")
        if n_steps < cfg.pred_steps + 2:
            raise DataValidationError(
                f"values: {n_steps} time steps, but pred_steps = {cfg.pred_steps} needs at least "
                f"{cfg.pred_steps + 2}; use longer series or a smaller pred_steps"
            )
        k_enc, k_dec = jax.random.split(key)
        self.n_nodes = int(n_nodes)
        self.n_steps = int(n_steps)
        self.pred_steps = int(cfg.pred_steps)
        self.tau = float(cfg.tau)
        self.leak_free = bool(cfg.leak_free)
        self.per_shop_bn = cfg.batchnorm == "shop"
        self.bn_momentum = float(cfg.bn_momentum)
        self.encoder = CREncoder(
            n_nodes,
            self.encoder_width,
            cfg.encoder_hidden,
            cfg.edge_types,
            dropout=cfg.encoder_dropout,
            bn_eps=cfg.bn_eps,
            key=k_enc,
        )
        self.decoder = MRDecoderS(
            n_nodes,
            cfg.decoder_hidden,
            context_size=context_size,
            edge_types=cfg.edge_types,
            dropout=cfg.decoder_dropout,
            key=k_dec,
        )

    @property
    def encoder_width(self) -> int:
        """Steps the encoder reads: T (faithful) or T - M + 1 (leak-free)."""
        return self.n_steps - self.pred_steps + 1 if self.leak_free else self.n_steps

    @property
    def switch_step(self) -> int:
        """Last step whose truth the decoder is fed in training: T - M."""
        return self.n_steps - self.pred_steps

    def _check_x(self, x):
        if x.ndim != 3 or x.shape[2] != self.n_nodes or x.shape[1] < self.encoder_width:
            raise DataValidationError(
                f"x: expected shape (B, T, {self.n_nodes}) with T >= {self.encoder_width} (the encoder's input "
                f"width), got {tuple(x.shape)}"
            )

    def encode(self, x: jax.Array, *, train: bool, key=None):
        """Edge-type logits (B, E, K) and BatchNorm batch statistics (None in evaluation) from x (B, T, N)."""
        self._check_x(x)
        feats = jnp.swapaxes(x[:, : self.encoder_width], 1, 2)  # (B, N, T_in)
        return self.encoder(feats, train=train, per_group=self.per_shop_bn, key=key)

    def edge_scores(self, x: jax.Array) -> jax.Array:
        """Evaluation-mode edge scores 1 - P(no edge), (B, N, N) in ``A[src, dst]``, zero diagonal."""
        logits, _ = self.encode(x, train=False)
        return edge_scores_from_logits(logits, self.n_nodes)

    def __call__(self, rng_key, x: jax.Array, context: jax.Array, *, train: bool, switch_step=None):
        """One forward pass: encode, draw one soft Gumbel sample, decode the whole series.

        ``switch_step`` defaults to T - M (training). The decoder's dropout is applied in evaluation too.
        """
        k_enc, k_gumbel, k_dec = jax.random.split(rng_key, 3)
        logits, stats = self.encode(x, train=train, key=k_enc)
        probs = jax.nn.softmax(logits, axis=-1)
        sample = gumbel_softmax(k_gumbel, logits, self.tau)
        sw = self.switch_step if switch_step is None else switch_step
        pred = self.decoder.rollout(x, sample[..., 1:], context, switch_step=sw, key=k_dec)
        return CausalMMMOutput(pred=pred, logits=logits, probs=probs, sample=sample, bn_stats=stats)

    def with_running_stats(self, stats) -> CausalMMM:
        """The model with its BatchNorm running statistics updated from one training pass's ``stats``."""
        return eqx.tree_at(
            lambda m: m.encoder, self, update_running_stats(self.encoder, stats, self.bn_momentum)
        )

    def forecast(self, rng_key, x: jax.Array, context: jax.Array, *, t0: int, horizon: int, edges="sample"):
        """Teacher-force through step ``t0``, then free-run: forecasts of x(t0+1 .. t0+horizon), (B, H, N).

        The encoder reads ``x`` as in training (the whole series when ``leak_free`` is False — the original's
        leak; ``x[:, :T-M+1]`` otherwise). ``edges="sample"`` draws one soft Gumbel sample (as the original);
        ``"probs"`` uses the posterior probabilities ``1 - q(no edge)`` instead.
        """
        t0, horizon = int(t0), int(horizon)
        if not 0 <= t0 < x.shape[1] or horizon < 1:
            raise DataValidationError(
                f"t0/horizon: need 0 <= t0 < T = {x.shape[1]} and horizon >= 1, got {t0} and {horizon}"
            )
        k_gumbel, k_dec = jax.random.split(rng_key)
        logits, _ = self.encode(x, train=False)
        if edges == "sample":
            w = gumbel_softmax(k_gumbel, logits, self.tau)[..., 1:]
        elif edges == "probs":
            w = jax.nn.softmax(logits, axis=-1)[..., 1:]
        else:
            raise ConfigError(f"edges: expected 'sample' or 'probs', got {edges!r}")
        xx = x[:, : t0 + 1]
        xx = jnp.concatenate([xx, jnp.zeros((x.shape[0], horizon, x.shape[2]), x.dtype)], axis=1)
        pred = self.decoder.rollout(xx, w, context, switch_step=t0, key=k_dec)
        return pred[:, t0 : t0 + horizon]


def trainable_filter(model: CausalMMM):
    """Pytree of bools: True on the trained arrays, False on BatchNorm running statistics."""
    spec = jax.tree_util.tree_map(eqx.is_inexact_array, model)
    return eqx.tree_at(
        lambda m: (
            [b.running_mean for b in _bn_paths(m.encoder)] + [b.running_var for b in _bn_paths(m.encoder)]
        ),
        spec,
        [False] * 8,
    )


# ------------------------------------------------------------------------------ graph-swap decoder wrapper
class CausalMMMDecoder(eqx.Module):
    """A trained CausalMMM decoder under dice_prob's decoder contract (one window, no batch dimension).

    The ``graph`` (d, d), ``A[src, dst]``, binary or edge probabilities, replaces the soft Gumbel sample: the
    message j -> i is weighted by ``graph[j, i]`` (the original weights it by the sample's "edge" component).
    The encoder is not used. Windows are in the units the model was trained on (standardised by default).
    Decoder dropout is not applied here (deterministic; the default rate is 0 anyway).

    Examples
    --------
    >>> cfg = CausalMMMConfig(encoder_hidden=8, decoder_hidden=8, pred_steps=3)
    >>> m = CausalMMM(3, 12, context_size=1, config=cfg, key=jax.random.key(0))
    >>> dec = CausalMMMDecoder(m)
    >>> dec.rollout(jnp.ones((10, 3)), 7, jnp.ones((3, 3)) - jnp.eye(3)).shape
    (7, 3)
    """

    decoder: MRDecoderS
    uses_graph: bool = eqx.field(static=True)

    def __init__(self, model: CausalMMM | MRDecoderS):
        self.decoder = model.decoder if isinstance(model, CausalMMM) else model
        if self.decoder.msg_w1.shape[0] != 1:
            raise ConfigError("CausalMMMDecoder: needs a model with edge_types = 2 (one message type)")
        self.uses_graph = True

    @property
    def n_nodes(self) -> int:
        return self.decoder.n_nodes

    def _prep(self, graph, context):
        g = jnp.asarray(graph, dtype=jnp.float32)
        d = self.decoder.n_nodes
        if g.shape != (d, d):
            raise GraphValidationError(f"graph: expected shape ({d}, {d}) indexed [src, dst], got {g.shape}")
        w = _adjacency_to_edges_jax(g)[None, :, None]  # (1, E, 1)
        c = self.decoder.context_size
        ctx = jnp.zeros((1, c)) if context is None else jnp.reshape(jnp.asarray(context, jnp.float32), (1, c))
        return w, ctx

    def init_state(self) -> jax.Array:
        """Zero hidden state (N, H)."""
        return jnp.zeros((self.decoder.n_nodes, self.decoder.hidden))

    def step(self, state, x_t, graph, context=None):
        """One step: (state (N, H), x_t (N,)) -> (state, prediction of x(t+1) (N,))."""
        w, ctx = self._prep(graph, context)
        h, pred = self.decoder.step(state[None], jnp.asarray(x_t)[None], w, ctx)
        return h[0], pred[0]

    def __call__(self, x, graph, context=None):
        """Teacher-forced one-step predictions (W, N): row t predicts x[t + 1]."""
        w, ctx = self._prep(graph, context)
        x = jnp.asarray(x, jnp.float32)
        xx = jnp.concatenate([x, jnp.zeros((1, x.shape[1]), x.dtype)])[None]
        return self.decoder.rollout(xx, w, ctx, switch_step=x.shape[0])[0]

    def rollout(self, x_history, horizon: int, graph, context=None):
        """Teacher-force through ``x_history`` (W, N), then free-run ``horizon`` steps: (horizon, N).

        Row 0 is the one-step prediction of the step after the last observed one.
        """
        w, ctx = self._prep(graph, context)
        x = jnp.asarray(x_history, jnp.float32)
        n_hist = x.shape[0]
        xx = jnp.concatenate([x, jnp.zeros((int(horizon), x.shape[1]), x.dtype)])[None]
        pred = self.decoder.rollout(xx, w, ctx, switch_step=n_hist - 1)[0]
        return pred[n_hist - 1 : n_hist - 1 + int(horizon)]
