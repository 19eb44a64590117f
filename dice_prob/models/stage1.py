"""The Stage-1 NumPyro model: a restricted graph-mediated likelihood with group spike-and-slab edge priors.

For every *modelled* node ``j`` (a node with at least one candidate parent under the support mask) and shop
``r``::

    x_j(t) = b_rj + phi_rj * x_j(t-1) + sum_{e = (i -> j)} sum_{l=1..L} W[e, l] * g_i(x_i(t-l)) + eps,
    eps ~ Normal(0, sigma_rj)

Only candidate edges (``mask[i, j]``) get parameters: the model gathers the ``E`` candidate pairs once, so no
parameter is spent on an impossible edge. Nodes without candidate parents (for example spends) carry no
information about the graph and are not modelled.

Priors (data are z-scored per shop and node on the training window, so every scale is in standard deviations)

- ``W[e, :] ~ pi * N(0, s_slab^2 I_L) + (1 - pi) * N(0, s_spike^2 I_L)`` — a *group* spike-and-slab over the
  lags of one edge; the indicator ``z_e`` is marginalised by ``MixtureSameFamily``, so NUTS sees a smooth
  density. Defaults ``s_slab = 0.5`` per lag (a total lag-summed effect sd of ``0.5 sqrt(L)`` ≈ 1.3 sd for L = 7:
  weakly informative on standardised data) and ``s_spike = 0.01`` per lag (an effect below ~0.03 sd summed over
  lags is practically zero).
- ``pi ~ Beta(a, b)``, default ``Beta(1, 1)``: uniform on the density, which gives the Beta-Binomial
  multiplicity correction of Scott & Berger (2010) — more candidate edges do not mean more false positives.
- ``b ~ N(0, 1)``, ``phi ~ N(0, 0.5^2)`` (95 % mass in (-1, 1), the stationary range, without a hard bound),
  ``sigma ~ HalfNormal(noise_scale)`` with ``noise_scale = 1`` (residual sd at most the data sd, a priori).
- ``mmm`` mode: ``W[e, l] = beta_e * kappa(l; retention_e, delay_e)`` with a normalised delayed-geometric kernel
  (``models.transforms.carryover_kernel``) and the spike-and-slab on ``beta_e`` with scales multiplied by
  ``sqrt(L)`` (so the lag-summed effect has the same prior scale as in ``linear`` mode);
  ``retention ~ Beta(2, 2)``, ``delay ~ HalfNormal(1)``, per edge, or per source node with
  ``carryover_sharing="source"``. Channel sources enter through a Hill curve on
  ``x / max`` (per shop, training window) with ``half ~ LogNormal(log 0.5, 0.75)`` and
  ``slope ~ LogNormal(0, 0.5)``, z-scored per shop over the fitted steps
  (``models.transforms.hill_zscore``), so ``beta`` is an effect per sd of the saturated spend, in the same
  units as an intermediate source's; other sources enter as their standardised values.

PIP: ``P(z_e = 1 | W_e, pi) = pi N(W_e; 0, s_slab) / (pi N(W_e; 0, s_slab) + (1 - pi) N(W_e; 0, s_spike))``
evaluated per posterior draw (Rao-Blackwellised) and averaged.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from dice_prob.errors import ConfigError, DataValidationError, GraphValidationError
from dice_prob.models import linalg, sites
from dice_prob.models.stage1_moves import collapsed_shop_terms, collapsed_stats, joint_flip_moves
from dice_prob.models.transforms import carryover_kernel, hill_zscore, lag_stack

__all__ = [
    "Stage1Data",
    "edge_contribution",
    "edge_features",
    "gibbs_edges",
    "gibbs_edges_collapsed",
    "gibbs_intercept_ar",
    "gram_eigen",
    "lag_prior_factors",
    "ar_residual_sd",
    "linear_predictor",
    "log1p_channels",
    "Stage1Structure",
    "edge_inclusion_prob",
    "edge_kernel_params",
    "edge_matrix",
    "model",
    "prepare_data",
    "scale_factor",
    "slab_spike_scales",
    "source_inputs",
]


#: Prior sd of the per-shop, per-node intercept ``b`` and own-lag coefficient ``phi`` (standardised data).
INTERCEPT_SD = 1.0
AR_SD = 0.5


@dataclasses.dataclass(frozen=True)
class Stage1Structure:
    """Static (hashable) description of the candidate edges; travels as pytree aux data of ``Stage1Data``."""

    n_nodes: int
    n_lags: int
    mode: str
    edge_src: tuple[int, ...]  # (E,) source node index of each candidate edge
    edge_dst: tuple[int, ...]  # (E,) destination node index
    recv_nodes: tuple[int, ...]  # (J,) modelled nodes
    src_nodes: tuple[int, ...]  # (S,) nodes that are a source of some candidate edge
    src_is_channel: tuple[bool, ...]  # (S,) channel sources get a Hill curve in mmm mode
    group_of_shop: tuple[int, ...]  # (R,) graph index of each shop in the lane
    n_groups: int

    @property
    def n_edges(self) -> int:
        return len(self.edge_src)

    @property
    def edge_src_slot(self) -> np.ndarray:
        pos = {n: k for k, n in enumerate(self.src_nodes)}
        return np.array([pos[i] for i in self.edge_src], dtype=np.int32)

    @property
    def edge_dst_slot(self) -> np.ndarray:
        pos = {n: k for k, n in enumerate(self.recv_nodes)}
        return np.array([pos[j] for j in self.edge_dst], dtype=np.int32)

    def with_shops(self, group_of_shop) -> Stage1Structure:
        g = tuple(int(v) for v in group_of_shop)
        return dataclasses.replace(self, group_of_shop=g, n_groups=max(g) + 1)


@jax.tree_util.register_pytree_node_class
class Stage1Data:
    """Arrays the model reads (a pytree: vmappable over a leading shop-batch axis).

    Attributes
    ----------
    y : (R, T', J) standardised responses of the modelled nodes, T' = steps - L.
    ylag : (R, T', J) their lag-1 values.
    xlag : (R, T', S, L) lags 1..L of every source node (``x / max`` for channels in mmm mode, the Hill curve's
        input, else z-scores).
    structure : Stage1Structure (static).
    """

    node_sd = None  # (G, d) node scales of ``node_scale="ar_residual"``; plain attribute, not a leaf

    def __init__(self, y, ylag, xlag, structure: Stage1Structure):
        self.y = y
        self.ylag = ylag
        self.xlag = xlag
        self.structure = structure

    def tree_flatten(self):
        return (self.y, self.ylag, self.xlag), self.structure

    @classmethod
    def tree_unflatten(cls, structure, children):
        return cls(*children, structure)


def _zscore(x: np.ndarray) -> np.ndarray:
    """Per-shop, per-node z-score over axis 1 (time); a constant series becomes zeros."""
    m = x.mean(axis=1, keepdims=True)
    s = x.std(axis=1, keepdims=True)
    s = np.where(s > 1e-12 * np.maximum(1.0, np.abs(m)), s, 1.0)
    return (x - m) / s


def log1p_channels(values: np.ndarray, roles) -> np.ndarray:
    """Channel columns of ``values`` (R, T, d) mapped to ``log(1 + x / m)``, ``m`` the shop's median positive value
    of the channel (1 where it never spends); other columns unchanged. Channels must be non-negative.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.array([[[0.0, 5.0], [2.0, 6.0], [4.0, 7.0]]])  # 1 shop, 3 steps; median positive spend 3
    >>> np.round(log1p_channels(v, ["channel", "target"])[0], 4).tolist()
    [[0.0, 5.0], [0.5108, 6.0], [0.8473, 7.0]]
    """
    v = np.array(values, dtype=np.float64, copy=True)
    for i, role in enumerate(roles):
        if role != "channel":
            continue
        x = v[:, :, i]
        if np.any(x < 0):
            raise DataValidationError(
                f"values: channel column {i} has negative spends; channel_transform='log1p' needs spends >= 0"
            )
        m = np.array([np.median(row[row > 0]) if np.any(row > 0) else 1.0 for row in x])  # per shop
        v[:, :, i] = np.log1p(x / m[:, None])
    return v


def lag_prior_factors(n_lags: int, lag_decay: float) -> np.ndarray:
    """Per-lag prior sd factors ``l**-lag_decay``, l = 1..n_lags (the Minnesota decay; all ones at 0).

    Examples
    --------
    >>> lag_prior_factors(4, 1.0).tolist()
    [1.0, 0.5, 0.3333333333333333, 0.25]
    """
    return np.arange(1, n_lags + 1, dtype=np.float64) ** -float(lag_decay)


def ar_residual_sd(z: np.ndarray, n_lags: int, group_of_shop=None, floor: float = 1e-2) -> np.ndarray:
    """Residual sd of every node's univariate AR(``n_lags``) least-squares fit (with intercept), (G, d).

    ``z`` (R, T, d) are the standardised series. Shops of one group (``group_of_shop``; default all in group 0)
    are pooled as a root mean square, so every shop that shares a graph's coefficients gets the same scale.
    Values below ``floor`` (a node its own lags predict almost exactly) are raised to it.

    Examples
    --------
    >>> import numpy as np
    >>> e = np.random.default_rng(0).normal(size=(1, 2000, 1))
    >>> x = e.copy()
    >>> for t in range(1, 2000):
    ...     x[0, t] = 0.9 * x[0, t - 1] + e[0, t]
    >>> z = (x - x.mean()) / x.std()
    >>> round(float(ar_residual_sd(z, 1)[0, 0]), 2)  # sqrt(1 - 0.9**2) = 0.44
    0.44
    """
    z = np.asarray(z, dtype=np.float64)
    r_, t_, d_ = z.shape
    gos = np.zeros(r_, dtype=int) if group_of_shop is None else np.asarray(group_of_shop, dtype=int)
    var = np.empty((r_, d_))
    for r in range(r_):
        lags = np.stack([z[r, n_lags - l : t_ - l] for l in range(1, n_lags + 1)], axis=1)  # (T', L, d)
        y = z[r, n_lags:]
        for k in range(d_):
            design = np.concatenate([np.ones((t_ - n_lags, 1)), lags[:, :, k]], axis=1)
            coef, *_ = np.linalg.lstsq(design, y[:, k], rcond=None)
            var[r, k] = np.mean((y[:, k] - design @ coef) ** 2)
    g_ = int(gos.max()) + 1
    pooled = np.stack([var[gos == g].mean(axis=0) for g in range(g_)])
    return np.maximum(np.sqrt(pooled), floor)


def prepare_data(
    values: np.ndarray,
    roles,
    support_mask: np.ndarray,
    *,
    n_lags: int,
    mode: str = "linear",
    group_of_shop=None,
    channel_transform: str = "none",
    lag_decay: float = 0.0,
    node_scale: str = "zscore",
    scale_group_of_shop=None,
) -> Stage1Data:
    """Turn raw (R, T, d) values into the model's arrays.

    Every node is z-scored per shop over the given time steps. In ``mmm`` mode channel *sources* are instead
    scaled to ``x / max`` (per shop; non-negative, 1 at the largest spend) so a Hill curve applies. With
    ``channel_transform="log1p"`` (linear mode) channel columns are first mapped to ``log(1 + x / m)``, ``m`` the
    shop's median positive value of that channel (:func:`log1p_channels`). With ``lag_decay > 0`` (linear mode)
    lag ``l`` of every source is multiplied by :func:`lag_prior_factors` ``l**-lag_decay``: an iid prior on the
    weights of these scaled lags is the Minnesota prior (sd ``~ l**-lag_decay``) on the original lags' weights.
    With ``node_scale="ar_residual"`` every z-scored node is further divided by its :func:`ar_residual_sd`
    (pooled over the shops of ``scale_group_of_shop``, default ``group_of_shop``), so one unit is one innovation
    sd of the node: an iid prior on the weights in these units is the Minnesota cross-variable scaling
    ``sd(k -> j) ~ s_j / s_k`` on the z-scored weights (in mmm mode channel sources keep their ``x / max``
    scale, the Hill input, and the model z-scores the Hill output, so their ``beta`` prior scales with ``s_j``
    only). The scales are kept as
    ``data.node_sd`` (G, d) (not a pytree leaf) to map the weights back.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.random.default_rng(0).normal(size=(2, 20, 3))
    >>> mask = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
    >>> d = prepare_data(v, ["channel", "intermediate", "target"], mask, n_lags=2)
    >>> d.y.shape, d.xlag.shape, d.structure.n_edges
    ((2, 18, 2), (2, 18, 2, 2), 3)
    """
    v = np.asarray(values, dtype=np.float64)
    r_, t_, d_ = v.shape
    mask = np.asarray(support_mask, dtype=bool).copy()
    np.fill_diagonal(mask, False)
    if t_ <= n_lags + 1:
        raise DataValidationError(f"values: {t_} time steps, but n_lags={n_lags} needs at least {n_lags + 2}")
    src, dst = np.nonzero(mask)
    if src.size == 0:
        raise GraphValidationError(
            "support_mask: no candidate edge; check the node roles or the support mask"
        )
    order = np.lexsort((src, dst))  # group edges by destination
    src, dst = src[order], dst[order]
    recv = tuple(int(j) for j in np.unique(dst))
    srcs = tuple(int(i) for i in np.unique(src))
    roles = list(roles)
    src_is_channel = tuple(mode == "mmm" and roles[i] == "channel" for i in srcs)
    if channel_transform == "log1p":
        if mode != "linear":
            raise ConfigError("channel_transform: 'log1p' applies to mode='linear' only")
        v = log1p_channels(v, roles)
    elif channel_transform != "none":
        raise ConfigError(f"channel_transform: must be 'none' or 'log1p', got {channel_transform!r}")
    z = _zscore(v)
    gos = tuple([0] * r_) if group_of_shop is None else tuple(int(g) for g in group_of_shop)
    if len(gos) != r_:
        raise DataValidationError(f"groups: {len(gos)} group labels for {r_} shops; give one per shop")
    node_sd = None
    if node_scale == "ar_residual":
        sg = np.asarray(gos if scale_group_of_shop is None else scale_group_of_shop, dtype=int)
        if len(sg) != r_:
            raise DataValidationError(
                f"groups: {len(sg)} scale group labels for {r_} shops; give one per shop"
            )
        node_sd = ar_residual_sd(z, n_lags, sg)
        z = z / node_sd[sg][:, None, :]
    elif node_scale != "zscore":
        raise ConfigError(f"node_scale: must be 'zscore' or 'ar_residual', got {node_scale!r}")
    xs = z[:, :, list(srcs)].copy()
    for k, i in enumerate(srcs):
        if src_is_channel[k]:
            mx = v[:, :, i].max(axis=1, keepdims=True)
            xs[:, :, k] = v[:, :, i] / np.where(mx > 0, mx, 1.0)
    structure = Stage1Structure(
        n_nodes=d_,
        n_lags=int(n_lags),
        mode=mode,
        edge_src=tuple(int(i) for i in src),
        edge_dst=tuple(int(j) for j in dst),
        recv_nodes=recv,
        src_nodes=srcs,
        src_is_channel=src_is_channel,
        group_of_shop=gos,
        n_groups=max(gos) + 1,
    )
    zr = z[:, :, list(recv)]
    y = zr[:, n_lags:, :]
    ylag = zr[:, n_lags - 1 : -1, :]
    xlag = np.stack([np.asarray(lag_stack(xs[r], n_lags)) for r in range(r_)])
    if mode == "linear" and lag_decay:
        xlag = xlag * lag_prior_factors(n_lags, lag_decay)
    f32 = np.float32
    data = Stage1Data(jnp.asarray(y, f32), jnp.asarray(ylag, f32), jnp.asarray(xlag, f32), structure)
    data.node_sd = node_sd
    return data


def scale_factor(structure: Stage1Structure) -> float:
    """Multiplier of the per-lag prior scales for the spike-and-slab variable: ``sqrt(L)`` on ``beta`` (mmm,
    so the lag-summed effect has the linear mode's prior scale), else 1."""
    return math.sqrt(structure.n_lags) if structure.mode == "mmm" else 1.0


def slab_spike_scales(config, structure: Stage1Structure, slab=None):
    """(slab, spike) sd of the spike-and-slab variable: per lag (linear) or on ``beta`` (mmm, x sqrt(L)).

    ``slab``: the learned slab site (any shape, e.g. (G,)) when ``config.learn_slab``. The slab sd is then that
    value and the spike keeps the configured ratio ``spike_scale / slab_scale`` to it (George & McCulloch's
    ``(tau, c tau)`` parameterisation with ``tau`` learned), so "practically zero" scales with the effects in the
    data; else the fixed ``config.slab_scale`` and ``config.spike_scale``.
    """
    f = scale_factor(structure)
    if slab is None:
        return float(config.slab_scale) * f, float(config.spike_scale) * f
    ratio = float(config.spike_scale) / float(config.slab_scale)
    return slab * f, slab * (ratio * f)


def _expand_scale(scale, pi, extra: int):
    """A per-graph scale (shape of ``pi``) with ``extra`` trailing unit axes; a float stays a float."""
    if isinstance(scale, float):
        return scale
    scale = jnp.asarray(scale)
    return scale.reshape(scale.shape + (1,) * extra)


def edge_inclusion_prob(coef, pi, slab: float, spike: float, grid=(1.0,)):
    """Rao-Blackwellised ``P(z_e = 1 | coef_e, pi)``.

    Parameters
    ----------
    coef : (..., G, E, L) lag weights (linear) or (..., G, E) effects (mmm).
    pi : (..., G)
    slab, spike : float or (..., G) arrays (learned scales per graph)
    grid : tuple of float
        The slab is an equal-weight scale mixture of ``N(0, (slab * m)^2)`` over ``m`` in ``grid``
        (``Stage1Config.slab_grid``); ``(1.0,)`` is the plain slab.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = edge_inclusion_prob(jnp.array([[[0.0, 0.0], [0.5, 0.4]]]), jnp.array([0.5]), 0.5, 0.01)
    >>> [round(float(v), 3) for v in p[0]]
    [0.0, 1.0]
    """
    coef = jnp.asarray(coef)
    pi = jnp.asarray(pi)
    extra = coef.ndim - pi.ndim
    slab_e = _expand_scale(slab, pi, extra)
    lps = jnp.stack([dist.Normal(0.0, slab_e * float(m)).log_prob(coef) for m in grid])
    lp_spike = dist.Normal(0.0, _expand_scale(spike, pi, extra)).log_prob(coef)
    if coef.ndim == pi.ndim + 2:  # linear: sum over lags
        lps, lp_spike = lps.sum(-1), lp_spike.sum(-1)
    lp_slab = jax.scipy.special.logsumexp(lps, axis=0) - math.log(len(grid))
    logit = jnp.log(pi)[..., None] - jnp.log1p(-pi)[..., None] + lp_slab - lp_spike
    return jax.nn.sigmoid(logit)


def edge_matrix(edge_values, structure: Stage1Structure):
    """Scatter per-edge values (..., E) into (..., d, d) matrices ``A[src, dst]`` (zero off the support)."""
    ev = jnp.asarray(edge_values)
    d = structure.n_nodes
    out = jnp.zeros(ev.shape[:-1] + (d, d), ev.dtype)
    return out.at[..., np.array(structure.edge_src), np.array(structure.edge_dst)].set(ev)


def _mixture(pi, shape_be, slab, spike: float, n_event: int | None, grid=(1.0,)):
    """Spike-and-slab as MixtureSameFamily with batch ``shape_be`` = (G, E) and optional event (L,).

    ``slab``, ``spike``: floats or (G,) arrays of per-graph sds. Components: the spike (weight ``1 - pi``) and
    one slab ``N(0, (slab * m)^2)`` per multiplier ``m`` in ``grid`` (weight ``pi / len(grid)`` each)."""
    n_c = len(grid)
    probs = jnp.stack([1.0 - pi] + [pi / n_c] * n_c, axis=-1)[:, None, :]  # (G, 1, 1 + M)
    probs = jnp.broadcast_to(probs, shape_be + (1 + n_c,))
    slab = jnp.broadcast_to(jnp.reshape(jnp.asarray(slab, jnp.float32), (-1, 1)), shape_be)  # (G, E)
    spike = jnp.broadcast_to(jnp.reshape(jnp.asarray(spike, jnp.float32), (-1, 1)), shape_be)
    scales = jnp.stack([spike] + [slab * float(m) for m in grid], axis=-1)  # (G, E, 1 + M)
    if n_event is None:
        comp = dist.Normal(jnp.zeros(shape_be + (1 + n_c,)), scales)
    else:
        full = shape_be + (1 + n_c, n_event)
        comp = dist.Normal(jnp.zeros(full), jnp.broadcast_to(scales[..., None], full)).to_event(1)
    return dist.MixtureSameFamily(dist.Categorical(probs=probs), comp)


def _saturate_channels(xlag, structure: Stage1Structure, hill_half=None, hill_slope=None):
    """Source lags (R, T', S, L) with a Hill curve on the channel sources when Hill parameters are given."""
    if hill_half is None:
        return xlag
    st = structure
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    is_ch = np.array(st.src_is_channel)
    # z-scored per shop and source over time and lags. Why: a Hill output of bursty spends scaled to x / max
    # varies by a few hundredths on [0, 1] while intermediate sources are z-scored, so with one (learned) slab
    # sd for every edge, channel edges needed a beta an order of magnitude larger than intermediates' edges and
    # the slab that fit one group charged the other a large Occam penalty. Unscaled, beta * hill also has a
    # ridge (for K >> x it only depends on beta / K^n) and a mean that moves with K and n, which the per-shop
    # intercept must follow: both made NUTS mix badly (funnel mmm r_hat up to 1.44, ESS 3).
    sat = hill_zscore(
        xlag, hill_half[gidx][:, None, :, None], hill_slope[gidx][:, None, :, None], axis=(1, 3)
    )
    return jnp.where(is_ch[None, None, :, None], sat, xlag)


def source_inputs(data: Stage1Data, hill_half=None, hill_slope=None):
    """Source lags as they enter the likelihood, (R, T', S, L): a Hill curve on channel sources when given."""
    return _saturate_channels(data.xlag, data.structure, hill_half, hill_slope)


def edge_features(
    xlag, structure: Stage1Structure, hill_half=None, hill_slope=None, retention=None, delay=None
):
    """Per-edge regressors (R, T', E, Lf): the coefficient block of edge e multiplies ``feats[..., e, :]``.

    Linear mode: the source's lags 1..L (Lf = L). mmm mode: ``sum_l kappa(l; retention_e, delay_e) *
    g_i(x_i(t - l))`` with g a Hill curve on channel sources (Lf = 1, multiplied by ``beta_e``).
    """
    st = structure
    src_slot = st.edge_src_slot
    if st.mode != "mmm":
        return xlag[:, :, src_slot, :]
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    x = _saturate_channels(xlag, st, hill_half, hill_slope)
    kern = carryover_kernel(st.n_lags, retention, delay)  # (G, E, L)
    return jnp.einsum("rtel,rel->rte", x[:, :, src_slot, :], kern[gidx])[..., None]


def _recv_slices(structure: Stage1Structure) -> list[slice]:
    """Per modelled node, the contiguous slice of its candidate edges (``prepare_data`` sorts edges by target)."""
    dst = structure.edge_dst_slot
    out = []
    for j in range(len(structure.recv_nodes)):
        es = np.flatnonzero(dst == j)
        if es.size == 0 or not np.array_equal(es, np.arange(es[0], es[-1] + 1)):
            raise GraphValidationError(
                "structure: candidate edges must be grouped by target (use prepare_data)"
            )
        out.append(slice(int(es[0]), int(es[-1]) + 1))
    return out


def edge_contribution(x, w, structure: Stage1Structure):
    """Graph-mediated part of the mean, (R, T', J): ``sum_{e -> j} sum_l w[e, l] x[src_e, t - l]``.

    Parameters
    ----------
    x : (R, T', S, L) source lags (after the Hill curve in mmm mode).
    w : (G, E, L) lag weights per candidate edge (mmm: ``beta_e * kappa(l; theta_e)``).

    One matrix-vector product per modelled node over its own edges' lags, not a per-edge dot product over L:
    under ``jax.vmap`` over shops x chains the latter becomes a batch of (1 x L) . (L x 1) products, which XLA
    on CPU runs several times slower (this is the hot path of every NUTS leapfrog step).

    Examples
    --------
    >>> import numpy as np, jax.numpy as jnp
    >>> v = np.random.default_rng(0).normal(size=(1, 20, 3))
    >>> mask = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
    >>> d = prepare_data(v, ["channel", "intermediate", "target"], mask, n_lags=2)
    >>> w = jnp.ones((1, 3, 2))
    >>> ref = linear_predictor(edge_features(d.xlag, d.structure), w, jnp.zeros((1, 2)), jnp.zeros((1, 2)),
    ...                        d.ylag, d.structure)
    >>> bool(jnp.allclose(edge_contribution(d.xlag, w, d.structure), ref, atol=1e-5))
    True
    """
    st = structure
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    src_slot = st.edge_src_slot
    r_, tp = x.shape[:2]
    g_ = w.shape[0]
    cols = []
    for sl in _recv_slices(st):
        xj = x[:, :, src_slot[sl], :].reshape(r_, tp, -1)  # (R, T', n_j L)
        wj = w[:, sl, :].reshape(g_, -1)[gidx]  # (R, n_j L)
        cols.append(jnp.einsum("rtk,rk->rt", xj, wj))
    return jnp.stack(cols, axis=-1)


def linear_predictor(feats, coef, b, phi, ylag, structure: Stage1Structure):
    """Mean (R, T', J) from per-edge features (R, T', E, Lf) and coefficients (G, E, Lf)."""
    st = structure
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    j_ = len(st.recv_nodes)
    dst_onehot = np.eye(j_, dtype=np.float32)[st.edge_dst_slot]  # (E, J)
    contrib = jnp.einsum("rtel,rel->rte", feats, coef[gidx])
    return b[:, None, :] + phi[:, None, :] * ylag + contrib @ dst_onehot


def gram_eigen(feats):
    """Eigendecomposition of every edge's feature Gram matrix ``F_e' F_e``: (lam (R, E, Lf), Q (R, E, Lf, Lf)).

    In linear mode the features are data, so this is computed once per fit and reused by every Gibbs sweep.
    """
    gram = jnp.einsum("rtek,rtel->rekl", feats, feats)
    lam, q = jnp.linalg.eigh(gram)
    return jnp.clip(lam, 0.0, None), q


def gibbs_edges(
    rng_key,
    feats,
    coef,
    resid_base,
    sigma,
    pi,
    structure: Stage1Structure,
    slab: float,
    spike: float,
    gram_eig=None,
):
    """One exact Gibbs sweep over the edge coefficient blocks (z marginalised, never stored).

    Given everything else, edge e's block ``c_e`` enters its target's Gaussian likelihood linearly, so its full
    conditional under the spike-and-slab prior is a two-component Gaussian mixture: component z with weight
    ``pi_z * N(r; 0, sigma^2 I + s_z^2 F F')`` and a conjugate Gaussian posterior. Sampling it moves an edge
    between spike and slab in one step, which NUTS on the mixture density alone cannot do reliably.

    Parameters
    ----------
    feats : (R, T', E, Lf); coef : (G, E, Lf); resid_base : (R, T', J) = y - mean (with the current coef);
    sigma : (R, J); pi : (G,).
    gram_eig : optional ``gram_eigen(feats)``, used when every graph has exactly one shop (per-shop fits).

    Returns
    -------
    coef : (G, E, Lf) new coefficients.

    Notes
    -----
    With one shop per graph the posterior precision of component z is ``w F'F + I / s_z^2`` (``w = 1 /
    sigma^2``), diagonal in the eigenbasis ``Q`` of ``F'F``: mean, log-determinant and draw need no Cholesky
    factorisation. Batched over many lanes, the 2 E small Cholesky factorisations per sweep dominated the cost.
    """
    st = structure
    r_, _, e_, lf = feats.shape
    g_ = coef.shape[0]
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    onehot = jnp.asarray(np.eye(g_, dtype=np.float32)[gidx])  # (R, G)
    dst = jnp.asarray(st.edge_dst_slot)
    eye = jnp.eye(lf)
    slab_g = jnp.broadcast_to(jnp.asarray(slab, feats.dtype), (g_,))
    spike_g = jnp.broadcast_to(jnp.asarray(spike, feats.dtype), (g_,))
    logs = jnp.log(jnp.stack([spike_g, slab_g]) ** 2)  # (2, G): component 0 = spike, 1 = slab
    ridge = eye * jnp.exp(-logs)[:, :, None, None]  # (2, G, Lf, Lf) prior precisions
    logpi = jnp.stack([jnp.log1p(-pi), jnp.log(pi)], axis=-1)  # (G, 2)
    keys = jax.random.split(rng_key, e_)
    if r_ == g_ and np.array_equal(gidx, np.arange(r_)):
        return _gibbs_edges_eigen(keys, feats, coef, resid_base, sigma, logpi, logs, dst, gram_eig)
    # per-edge Gram matrices F_e' F_e in one batched product, outside the sequential sweep
    gram = jnp.einsum("rtek,rtel->rekl", feats, feats)  # (R, E, Lf, Lf)

    def body(e, carry):
        coef, resid = carry
        j = dst[e]
        f = feats[:, :, e, :]  # (R, T', Lf)
        w = 1.0 / sigma[:, j] ** 2  # (R,)
        old = coef[:, e, :]  # (G, Lf)
        r = resid[:, :, j] + jnp.einsum("rtl,rl->rt", f, old[gidx])  # residual without edge e
        xtx = jnp.einsum("rg,rkl->gkl", onehot * w[:, None], gram[:, e])
        xtr = jnp.einsum("rg,rk->gk", onehot * w[:, None], jnp.einsum("rtk,rt->rk", f, r))
        # both mixture components at once (leading axis 2): conjugate Gaussian posterior and log evidence
        chol = jnp.linalg.cholesky(xtx[None] + ridge)  # (2, G, Lf, Lf)
        m = linalg.cho_solve_lower(chol, jnp.broadcast_to(xtr, (2,) + xtr.shape)[..., None])[..., 0]
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # (2, G)
        lw = -0.5 * lf * logs - 0.5 * logdet + 0.5 * jnp.sum(m * xtr[None], -1)
        k1, k2 = jax.random.split(keys[e])
        p1 = jax.nn.sigmoid(logpi[:, 1] + lw[1] - logpi[:, 0] - lw[0])
        z = jax.random.bernoulli(k1, p1)  # (G,)
        m = jnp.where(z[:, None], m[1], m[0])
        chol = jnp.where(z[:, None, None], chol[1], chol[0])
        eps = jax.random.normal(k2, m.shape)
        # x = m + L^{-T} eps has covariance (L L^T)^{-1} = prec^{-1}
        new = m + linalg.solve_lower(chol, eps[..., None], transpose=True)[..., 0]
        delta = jnp.einsum("rtl,rl->rt", f, (new - old)[gidx])
        resid = resid.at[:, :, j].add(-delta)
        coef = coef.at[:, e, :].set(new)
        return coef, resid

    coef, _ = jax.lax.fori_loop(0, e_, body, (coef, resid_base))
    return coef


def _node_slots(structure: Stage1Structure) -> tuple[np.ndarray, np.ndarray]:
    """Per modelled node, its candidate edges padded to a common length: (idx (J, n_max), valid (J, n_max)).

    ``idx`` holds edge indices, ``E`` (one past the last edge) on padding slots.
    """
    st = structure
    per = [np.arange(sl.start, sl.stop) for sl in _recv_slices(st)]
    j_, n_max = len(per), max(len(p) for p in per)
    idx = np.full((j_, n_max), st.n_edges, dtype=np.int32)
    valid = np.zeros((j_, n_max), dtype=bool)
    for j, p in enumerate(per):
        idx[j, : len(p)] = p
        valid[j, : len(p)] = True
    return idx, valid


def gibbs_edges_collapsed(
    rng_key,
    feats,
    coef,
    y,
    ylag,
    sigma,
    pi,
    structure: Stage1Structure,
    slab,
    spike,
    slab_prior=None,
    n_slab_steps: int = 4,
    grid=(1.0,),
    flip_moves: int = 0,
    noise_prior_sd: float | None = None,
):
    """Collapsed Gibbs over the edge indicators, then one joint draw of every coefficient block.

    The single-edge sweep (:func:`gibbs_edges`) redraws edge ``e`` given the *other* edges' coefficients. With
    co-moving sources (two channels that rise and fall together) or a strong own lag that a parent's lags can
    stand in for, that chain sticks: once one of two interchangeable edges holds the signal, the other has no
    residual to explain and neither moves. Here each indicator ``z_e`` is drawn given the other indicators with
    *every* coefficient of its target node integrated out -- the edge blocks and the node's per-shop intercept
    and own lag (their Gaussian priors are conjugate) -- so a move from "B explains it" to "A explains it"
    costs no barrier. Then all edge blocks of a node are drawn jointly from their Gaussian conditional given the
    new indicators (the intercepts and own lags follow from :func:`gibbs_intercept_ar`). The indicators are
    auxiliary: they start from a draw of ``z | coef`` and are discarded, so the chain targets the model's
    marginal posterior as before.

    Parameters
    ----------
    feats : (R, T', E, Lf) per-edge regressors (:func:`edge_features`).
    coef : (G, E, Lf) current coefficients (only used to draw the starting indicators).
    y, ylag : (R, T', J) standardised responses and their lag 1.
    sigma : (R, J) residual sd; pi : (G,) prior inclusion probability.
    slab, spike : prior sd of a coefficient in the slab / spike.

    slab_prior : optional ``(mu, sd, ratio)``: the slab sd is learned, ``log slab ~ N(mu, sd^2)`` and the spike
        sd is ``ratio * slab``. ``slab`` (G,) is then its current value and is first updated by ``n_slab_steps``
        random-walk Metropolis steps on ``log slab`` against the *collapsed* likelihood (coefficients integrated
        out, indicators held): given the coefficients the spike blocks pin the slab to within a few percent, so
        a move conditional on them barely mixes.

    flip_moves : number of joint Metropolis proposals per graph and node, made before the sweep, that flip one
        or two indicators together with the node's residual sds (:mod:`dice_prob.models.stage1_moves`); 0 (the
        default) makes none. Needs the plain slab (``grid == (1.0,)``).
    noise_prior_sd : HalfNormal scale of ``sigma`` for those moves; ``None`` keeps ``sigma`` fixed.

    Returns
    -------
    coef, slab, sigma : (G, E, Lf) new coefficients, the slab sd (updated with ``slab_prior``, else as given)
        and the residual sds (moved by ``flip_moves`` with ``noise_prior_sd``, else as given).
    flip_accept : (G, J_c) fraction of the ``flip_moves`` proposals accepted, per graph and node with at least
        one candidate edge; ``None`` without flip moves.

    Notes
    -----
    Per node the edge coefficients ``c`` (K = n_max * Lf of them, padding slots fixed in the spike with zero
    regressors) have, after integrating out each shop's ``(b, phi)``, a Gaussian likelihood with precision
    ``G`` and information ``h`` (Schur complements of the per-shop 2 x 2 intercept/own-lag block). With prior
    precision ``P_z`` the log evidence is ``-0.5 log|G + P_z| + 0.5 log|P_z| + 0.5 h'(G + P_z)^{-1} h``. For one
    block ``k`` given the others it only depends on the Schur complement ``C`` of the other blocks in ``G``
    and the matching information ``r``: ``0.5 Lf log p - 0.5 log|C + p I| + 0.5 r'(C + p I)^{-1} r`` with ``p``
    the block's prior precision in the spike or the slab. ``C + p_now I`` and ``r`` come from the current
    ``(G + P_z)^{-1}``: its ``k`` block is ``(C + p_now I)^{-1}`` and its mean's ``k`` block ``(C + p_now I)^{-1}
    r``. One Cholesky factorisation of the prior-whitened ``I + S G S`` per block and node.
    """
    st = structure
    r_, tp, e_, lf = feats.shape
    g_ = coef.shape[0]
    gidx = np.array(st.group_of_shop, dtype=np.int32)
    onehot = jnp.asarray(np.eye(g_, dtype=feats.dtype)[gidx])  # (R, G)
    idx, valid = _node_slots(st)
    j_, n_max = idx.shape
    k_ = n_max * lf
    # per-node design: its edges' regressors side by side, zero columns on padding slots
    fpad = jnp.concatenate([feats, jnp.zeros((r_, tp, 1, lf), feats.dtype)], axis=2)
    f = fpad[:, :, idx, :].reshape(r_, tp, j_, k_)  # (R, T', J, K)
    zb = jnp.stack([jnp.ones_like(ylag), ylag], axis=-1)  # (R, T', J, 2)
    n_c = len(grid)
    mult = jnp.asarray([float(m) for m in grid], feats.dtype)
    # state of an edge: 0 = spike, c = slab component c (sd slab * grid[c - 1]); prior log weights (G, 1 + M)
    log_w = jnp.concatenate(
        [jnp.log1p(-pi)[:, None], jnp.broadcast_to((jnp.log(pi) - math.log(n_c))[:, None], (g_, n_c))], -1
    )
    k_start, k_slab, k_sweep, k_draw = jax.random.split(rng_key, 4)
    # starting states: a draw of the state given coef (exact auxiliary step)
    cpad = jnp.concatenate([coef, jnp.zeros((g_, 1, lf), coef.dtype)], axis=1)[:, idx, :]  # (G, J, n, Lf)

    def sd_table(slab_g, spike_g):
        """(G, 1 + M) prior sds of the states from per-graph slab and spike sds."""
        sl = jnp.broadcast_to(jnp.asarray(slab_g, feats.dtype), (g_,))
        sp = jnp.broadcast_to(jnp.asarray(spike_g, feats.dtype), (g_,))
        return jnp.concatenate([sp[:, None], sl[:, None] * mult[None, :]], -1)

    sd0 = sd_table(slab, spike)
    lp0 = jnp.sum(
        dist.Normal(0.0, sd0[:, None, None, None, :]).log_prob(cpad[..., None]), axis=-2
    )  # (G, J, n, 1 + M): lags summed
    valid_j = jnp.asarray(valid)
    z = jax.random.categorical(k_start, lp0 + log_w[:, None, None, :])
    z = jnp.where(valid_j[None], z, 0)
    # per shop: the edge Gram and information with each shop's (intercept, own lag) integrated out
    bp_prec = jnp.array([1.0 / INTERCEPT_SD**2, 1.0 / AR_SD**2], feats.dtype)
    stats = collapsed_stats(f, zb, y)
    flip_accept = None
    if flip_moves:
        if n_c != 1:
            raise ValueError("flip_moves needs the plain slab (grid == (1.0,))")
        z, sigma, n_acc = joint_flip_moves(
            jax.random.fold_in(rng_key, 7),
            stats,
            z,
            valid,
            sigma,
            sd_table(slab, spike) ** -2,
            log_w,
            gidx,
            bp_prec,
            lf,
            int(flip_moves),
            noise_prior_sd,
        )
        # nodes without candidate edges make no real proposal: their (trivial) acceptances are left out
        flip_accept = n_acc[:, np.asarray(valid).any(-1)].astype(feats.dtype) / int(flip_moves)
    gram, info, _, _ = collapsed_shop_terms(stats, sigma, bp_prec)
    gram = jnp.einsum("rg,rjkl->gjkl", onehot, gram)  # (G, J, K, K): shops of one graph pool
    info = jnp.einsum("rg,rjk->gjk", onehot, info)
    gram = 0.5 * (gram + jnp.swapaxes(gram, -1, -2))

    eye_l = jnp.eye(lf, dtype=feats.dtype)
    eye_k = jnp.eye(k_, dtype=feats.dtype)
    garange = jnp.arange(g_)[:, None, None]

    def factor_with(z, ptab):
        """Cholesky factor of the prior-whitened precision ``A = I + S G S`` (S = prior sds of the states
        ``z``, from the precision table ``ptab`` (G, 1 + M)), the posterior mean ``S A^{-1} S h`` and S.
        Whitening keeps every eigenvalue >= 1, so float32 rounding in a nearly singular Gram (more lags than
        rows, a tiny residual sd) cannot make the factorisation fail."""
        sd = jnp.repeat(ptab[garange, z], lf, axis=-1) ** -0.5  # (G, J, K)
        chol = jnp.linalg.cholesky(eye_k + sd[..., :, None] * gram * sd[..., None, :])
        mean = sd * linalg.cho_solve_lower(chol, (sd * info)[..., None])[..., 0]
        return chol, mean, sd

    if slab_prior is not None:
        mu, sd, ratio = (float(v) for v in slab_prior)

        def log_target(u):
            """log p(y | z, slab = e^u) + log N(u; mu, sd), per graph (G,); coefficients integrated out."""
            chol, mean, _ = factor_with(z, sd_table(jnp.exp(u), ratio * jnp.exp(u)) ** -2)
            # log|P| - log|G + P| = -log|I + S G S|
            logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)  # (G, J)
            ev = -0.5 * logdet + 0.5 * jnp.sum(info * mean, -1)
            lp = jnp.sum(ev, -1) - 0.5 * ((u - mu) / sd) ** 2
            return jnp.where(jnp.isfinite(lp), lp, -jnp.inf)

        def mh(i, carry):
            u, lp = carry
            k1, k2 = jax.random.split(jax.random.fold_in(k_slab, i))
            prop = u + 0.3 * jax.random.normal(k1, u.shape, feats.dtype)
            lp_prop = log_target(prop)
            acc = jnp.log(jax.random.uniform(k2, u.shape, feats.dtype)) < lp_prop - lp
            return jnp.where(acc, prop, u), jnp.where(acc, lp_prop, lp)

        u0 = jnp.log(jnp.broadcast_to(jnp.asarray(slab, feats.dtype), (g_,)))
        u, _ = jax.lax.fori_loop(0, n_slab_steps, mh, (u0, log_target(u0)))
        slab, spike = jnp.exp(u), ratio * jnp.exp(u)
    ptab = sd_table(slab, spike) ** -2  # (G, 1 + M) prior precisions of the states

    def factor(z):
        return factor_with(z, ptab)

    def body(k, carry):
        z, key = carry
        key, sub = jax.random.split(key)
        chol, mean, sd = factor(z)
        u = jnp.zeros((k_, lf), feats.dtype).at[k * lf + jnp.arange(lf), jnp.arange(lf)].set(1.0)
        # rows above block k of the unit columns are zero: substitution starts at the block
        x = linalg.solve_lower(chol, jnp.broadcast_to(u, chol.shape[:-2] + (k_, lf)), start=k * lf)
        a_kk = jnp.einsum("gjkl,gjkm->gjlm", x, x)  # (G, J, Lf, Lf): block k of A^{-1} (whitened)
        s_k = jax.lax.dynamic_slice_in_dim(sd, k * lf, lf, axis=-1)  # (G, J, Lf)
        # (C + p_now I) = S_k^{-1} [(A^{-1})_kk]^{-1} S_k^{-1}
        s_now = linalg.cho_solve_lower(jnp.linalg.cholesky(a_kk), jnp.broadcast_to(eye_l, a_kk.shape)) / (
            s_k[..., :, None] * s_k[..., None, :]
        )
        m_k = jax.lax.dynamic_slice_in_dim(mean, k * lf, lf, axis=-1)  # (G, J, Lf)
        r = jnp.einsum("gjlm,gjm->gjl", s_now, m_k)
        p_now = ptab[garange[..., 0], z[:, :, k]]  # (G, J)
        c = s_now - p_now[..., None, None] * eye_l
        ev, q = jnp.linalg.eigh(0.5 * (c + jnp.swapaxes(c, -1, -2)))
        ev = jnp.clip(ev, 0.0, None)
        qr2 = jnp.einsum("gjlm,gjl->gjm", q, r) ** 2

        def evidence(p):
            pl = p[..., None]  # (G, 1, 1) against the Lf eigenvalues
            return (
                0.5 * lf * jnp.log(p)
                - 0.5 * jnp.sum(jnp.log(ev + pl), -1)
                + 0.5 * jnp.sum(qr2 / (ev + pl), -1)
            )

        logits = jnp.stack([evidence(ptab[:, c][:, None]) for c in range(1 + n_c)], -1) + log_w[:, None, :]
        zk = jax.random.categorical(sub, logits)  # (G, J)
        zk = jnp.where(valid_j[None, :, k], zk, 0)
        ok = jnp.all(jnp.isfinite(logits), -1)
        zk = jnp.where(ok, zk, z[:, :, k])  # a failed factorisation keeps the state
        return z.at[:, :, k].set(zk), key

    z, _ = jax.lax.fori_loop(0, n_max, body, (z, k_sweep))
    chol, mean, sd = factor(z)
    eps = jax.random.normal(k_draw, mean.shape, feats.dtype)
    # c = mean + S L^{-T} eps has covariance S (L L')^{-1} S = (G + P)^{-1}
    draw = mean + sd * linalg.solve_lower(chol, eps[..., None], transpose=True)[..., 0]
    draw = draw.reshape(g_, j_, n_max, lf)
    # a node whose factorisation failed (non-finite draw) keeps its current coefficients
    ok = jnp.all(jnp.isfinite(draw), axis=(-2, -1), keepdims=True)
    draw = jnp.where(ok, draw, cpad)
    out = jnp.zeros((g_, e_ + 1, lf), coef.dtype).at[:, idx, :].set(draw)
    return out[:, :e_, :], slab, sigma, flip_accept


def gibbs_intercept_ar(rng_key, target, ylag, sigma):
    """Exact joint draw of every (intercept, own-lag) pair from its Gaussian full conditional.

    Given the edge coefficients and sigma, ``target = y - edge contribution`` is a Gaussian linear regression on
    ``[1, ylag]`` with the model's priors ``b ~ N(0, INTERCEPT_SD^2)``, ``phi ~ N(0, AR_SD^2)`` (conjugate).

    Parameters
    ----------
    target, ylag : (R, T', J); sigma : (R, J).

    Returns
    -------
    b, phi : (R, J) each.
    """
    w = 1.0 / sigma**2
    n = target.shape[-2]
    # posterior precision [[a, c], [c, d]] and X' target / sigma^2 per (shop, node): 2 x 2, in closed form
    a = n * w + 1.0 / INTERCEPT_SD**2
    c = jnp.sum(ylag, -2) * w
    d = jnp.sum(ylag**2, -2) * w + 1.0 / AR_SD**2
    u = jnp.sum(target, -2) * w
    v = jnp.sum(ylag * target, -2) * w
    det = a * d - c * c
    mb, mp = (d * u - c * v) / det, (a * v - c * u) / det
    l11 = jnp.sqrt(a)
    l21 = c / l11
    l22 = jnp.sqrt(d - l21**2)
    eps = jax.random.normal(rng_key, (2,) + a.shape)
    # x = m + L^{-T} eps (covariance (L L')^{-1} = precision^{-1})
    x2 = eps[1] / l22
    x1 = (eps[0] - l21 * x2) / l11
    return mb + x1, mp + x2


def _gibbs_edges_eigen(keys, feats, coef, resid_base, sigma, logpi, logs, dst, gram_eig):
    """``gibbs_edges`` for one shop per graph (shop r uses graph r), in the eigenbasis of each ``F_e' F_e``."""
    lf = feats.shape[-1]
    if gram_eig is None:
        gram_eig = gram_eigen(feats)
    lam, q = gram_eig
    inv_s2 = jnp.exp(-logs)[:, :, None]  # (2, R, 1) (one graph per shop)

    def body(e, carry):
        coef, resid = carry
        j = dst[e]
        f = feats[:, :, e, :]  # (R, T', Lf)
        w = 1.0 / sigma[:, j] ** 2  # (R,)
        old = coef[:, e, :]  # (R, Lf)
        r = resid[:, :, j] + jnp.einsum("rtl,rl->rt", f, old)  # residual without edge e
        qe = q[:, e]  # (R, Lf, Lf), columns = eigenvectors
        xq = jnp.einsum("rkl,rk->rl", qe, w[:, None] * jnp.einsum("rtk,rt->rk", f, r))  # Q' F' r w
        prec = w[None, :, None] * lam[None, :, e] + inv_s2  # (2, R, Lf) posterior precisions, diagonal
        m = xq[None] / prec
        lw = -0.5 * lf * logs - 0.5 * jnp.sum(jnp.log(prec), -1) + 0.5 * jnp.sum(m * xq[None], -1)
        k1, k2 = jax.random.split(keys[e])
        p1 = jax.nn.sigmoid(logpi[:, 1] + lw[1] - logpi[:, 0] - lw[0])
        z = jax.random.bernoulli(k1, p1)  # (R,)
        m = jnp.where(z[:, None], m[1], m[0])
        prec = jnp.where(z[:, None], prec[1], prec[0])
        eps = jax.random.normal(k2, m.shape)
        new = jnp.einsum("rkl,rl->rk", qe, m + eps / jnp.sqrt(prec))  # covariance Q diag(1/prec) Q'
        delta = jnp.einsum("rtl,rl->rt", f, new - old)
        resid = resid.at[:, :, j].add(-delta)
        coef = coef.at[:, e, :].set(new)
        return coef, resid

    coef, _ = jax.lax.fori_loop(0, feats.shape[2], body, (coef, resid_base))
    return coef


def model(data: Stage1Data, *, config, obs=None, pi_prior=None):
    """Restricted graph-mediated likelihood with marginalised group spike-and-slab edges.

    Parameters
    ----------
    data : Stage1Data
        From :func:`prepare_data` (R shops, possibly several graphs via ``structure.group_of_shop``).
    config : Stage1Config
        Prior scales and mode.
    obs : (R, T', J) array or None
        Observed responses (``data.y`` when fitting); ``None`` samples from the prior predictive.
    pi_prior : callable or None
        Optional ``(n_groups) -> pi`` override (used for a hierarchical pi); default ``Beta(a, b)`` per graph.

    Examples
    --------
    >>> import numpy as np, jax
    >>> from numpyro.infer.util import log_density
    >>> from dice_prob.config import Stage1Config
    >>> v = np.random.default_rng(0).normal(size=(1, 30, 3))
    >>> mask = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)
    >>> d = prepare_data(v, ["channel", "intermediate", "target"], mask, n_lags=2)
    >>> tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace(d, config=Stage1Config(n_lags=2))
    >>> tr["W"]["value"].shape
    (1, 3, 2)
    """
    st = data.structure
    r_, tp, j_ = data.y.shape
    g_, e_, l_ = st.n_groups, st.n_edges, st.n_lags
    s_ = len(st.src_nodes)

    if pi_prior is None:
        with numpyro.plate(sites.PLATE_GRAPH, g_, dim=-1):
            pi = numpyro.sample(sites.PI, dist.Beta(config.pi_alpha, config.pi_beta))
    else:
        pi = pi_prior(g_)
    learned = None
    if getattr(config, "learn_slab", False):
        with numpyro.plate(sites.PLATE_GRAPH, g_, dim=-1):
            learned = numpyro.sample(
                sites.SLAB, dist.LogNormal(math.log(config.slab_scale), config.slab_scale_sd)
            )
    slab, spike = slab_spike_scales(config, st, learned)
    grid = tuple(getattr(config, "slab_grid", (1.0,)))
    with numpyro.plate(sites.PLATE_GRAPH, g_, dim=-2), numpyro.plate(sites.PLATE_EDGE, e_, dim=-1):
        if st.mode == "mmm":
            coef = numpyro.sample(sites.BETA, _mixture(pi, (g_, e_), slab, spike, None, grid))
        else:
            coef = numpyro.sample(sites.WEIGHTS, _mixture(pi, (g_, e_), slab, spike, l_, grid))
            w = coef
    if st.mode == "mmm":
        # carryover kernels per edge, or per source node (then gathered onto the edges)
        kernel_plate = (sites.PLATE_SOURCE, s_) if _kernel_per_source(config) else (sites.PLATE_EDGE, e_)
        with numpyro.plate(sites.PLATE_GRAPH, g_, dim=-2), numpyro.plate(*kernel_plate, dim=-1):
            ret = numpyro.sample(sites.RETENTION, dist.Beta(2.0, 2.0))
            delay = numpyro.sample(sites.DELAY, dist.HalfNormal(1.0))
        ret, delay = edge_kernel_params(ret, delay, st, config)
        w = coef[..., None] * carryover_kernel(l_, ret, delay)  # (G, E, L)
    numpyro.deterministic(sites.EDGE_PROB, edge_inclusion_prob(coef, pi, slab, spike, grid))

    hill_half = hill_slope = None
    if st.mode == "mmm" and config.hill and any(st.src_is_channel):
        with numpyro.plate(sites.PLATE_GRAPH, g_, dim=-2), numpyro.plate(sites.PLATE_SOURCE, s_, dim=-1):
            hill_half = numpyro.sample(sites.HILL_HALF, dist.LogNormal(math.log(0.5), 0.75))
            hill_slope = numpyro.sample(sites.HILL_SLOPE, dist.LogNormal(0.0, 0.5))

    with numpyro.plate(sites.PLATE_SHOP, r_, dim=-2), numpyro.plate(sites.PLATE_TARGET, j_, dim=-1):
        b = numpyro.sample(sites.INTERCEPT, dist.Normal(0.0, INTERCEPT_SD))
        phi = numpyro.sample(sites.AR, dist.Normal(0.0, AR_SD))
        if getattr(config, "noise_sd", None) is None:
            sigma = numpyro.sample(sites.NOISE, dist.HalfNormal(config.noise_scale))
        else:  # fixed residual sd (tests against the exact reference sampler)
            sigma = jnp.full((r_, j_), float(config.noise_sd))

    mean = (
        b[:, None, :]
        + phi[:, None, :] * data.ylag
        + edge_contribution(source_inputs(data, hill_half, hill_slope), w, st)
    )
    with (
        numpyro.plate(sites.PLATE_SHOP, r_, dim=-3),
        numpyro.plate(sites.PLATE_TIME, tp, dim=-2),
        numpyro.plate(sites.PLATE_TARGET, j_, dim=-1),
    ):
        numpyro.sample(sites.OBS, dist.Normal(mean, sigma[:, None, :]), obs=obs)


def _kernel_per_source(config) -> bool:
    return getattr(config, "carryover_sharing", "edge") == "source"


def per_source_sites(config) -> frozenset[str]:
    """Sample sites that ``model`` draws under the ``source`` plate (one value per source node) for this config.

    The Hill curve always lives there; the carryover kernel only with ``carryover_sharing="source"``. The ArviZ
    converter reads this to label those sites by node name, so the two cannot drift apart.
    """
    out = {sites.HILL_HALF, sites.HILL_SLOPE}
    if _kernel_per_source(config):
        out |= {sites.RETENTION, sites.DELAY}
    return frozenset(out)


def edge_kernel_params(retention, delay, structure: Stage1Structure, config):
    """Carryover parameters per candidate edge, (..., G, E): gathered from (..., G, S) per-source values when
    ``config.carryover_sharing == "source"``, else returned as they are."""
    if not _kernel_per_source(config):
        return retention, delay
    src = np.asarray(structure.edge_src_slot)
    return retention[..., src], delay[..., src]


def init_values(y, ylag, xlag, structure: Stage1Structure, config) -> dict:
    """Unconstrained starting values for one lane: a ridge (slab-prior MAP with every candidate edge in) fit.

    Spike-and-slab posteriors are multimodal in the edge coefficients; NUTS started at zero stays trapped in the
    spike for edges the data clearly support. Starting at the slab-only posterior mode lets clearly supported
    edges stay in the slab while unsupported ones slide into the spike (there is no barrier in that direction).
    Arrays are NumPy: ``y``/``ylag`` (R, T', J), ``xlag`` (R, T', S, L).
    """
    y, ylag, xlag = (np.asarray(a, dtype=np.float64) for a in (y, ylag, xlag))
    st = structure
    r_, tp, j_ = y.shape
    g_, e_, l_ = st.n_groups, st.n_edges, st.n_lags
    slab, _ = slab_spike_scales(config, st)
    mmm = st.mode == "mmm"
    gos = np.array(st.group_of_shop)
    src_slot, dst_slot = st.edge_src_slot, st.edge_dst_slot
    feats = xlag.copy()
    if mmm:
        is_ch = np.array(st.src_is_channel)
        if config.hill and is_ch.any():
            sat = np.asarray(hill_zscore(feats, 0.5, 1.0, axis=(1, 3)))
            feats = np.where(is_ch[None, None, :, None], sat, feats)
        kern = np.asarray(carryover_kernel(l_, 0.5, 0.3))
        feats = (feats * kern).sum(-1, keepdims=True)  # (R, T', S, 1)
    nl = feats.shape[-1]
    coef = np.zeros((g_, e_, nl))
    b = np.zeros((r_, j_))
    phi = np.zeros((r_, j_))
    sig = np.ones((r_, j_))
    for g in range(g_):
        shops = np.flatnonzero(gos == g)
        for j in range(j_):
            es = np.flatnonzero(dst_slot == j)
            rows, cols_x = [], []
            for k, r in enumerate(shops):
                base = np.zeros((tp, 2 * len(shops)))
                base[:, 2 * k] = 1.0
                base[:, 2 * k + 1] = ylag[r, :, j]
                rows.append(base)
                cols_x.append(feats[r][:, src_slot[es], :].reshape(tp, -1))
            x_ = np.concatenate([np.concatenate(rows), np.concatenate(cols_x)], axis=1)
            yy = np.concatenate([y[r, :, j] for r in shops])
            prior_var = np.concatenate([np.tile([1.0, 0.25], len(shops)), np.full(len(es) * nl, slab**2)])
            s2 = 1.0
            for _ in range(2):
                a = x_.T @ x_ / s2 + np.diag(1.0 / prior_var)
                beta = np.linalg.solve(a, x_.T @ yy / s2)
                s2 = max(float(np.mean((yy - x_ @ beta) ** 2)), 1e-4)
            for k, r in enumerate(shops):
                b[r, j], phi[r, j] = beta[2 * k], beta[2 * k + 1]
                sig[r, j] = math.sqrt(s2)
            coef[g, es] = beta[2 * len(shops) :].reshape(len(es), nl)
    out = {sites.INTERCEPT: b, sites.AR: phi, sites.PI: np.zeros(g_)}
    if getattr(config, "learn_slab", False):
        out[sites.SLAB] = np.full(g_, math.log(config.slab_scale))  # unconstrained: the prior median
    if getattr(config, "noise_sd", None) is None:
        out[sites.NOISE] = np.log(sig)
    if mmm:
        out[sites.BETA] = coef[..., 0]
        nk = len(st.src_nodes) if _kernel_per_source(config) else e_
        out[sites.RETENTION] = np.zeros((g_, nk))
        out[sites.DELAY] = np.full((g_, nk), math.log(0.3))
        if config.hill and any(st.src_is_channel):
            s_ = len(st.src_nodes)
            out[sites.HILL_HALF] = np.full((g_, s_), math.log(0.5))
            out[sites.HILL_SLOPE] = np.zeros((g_, s_))
    else:
        out[sites.WEIGHTS] = coef
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
