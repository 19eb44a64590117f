"""Reference sampler with explicit Bernoulli edges: exact enumeration of every support pattern.

For the ``linear`` Stage-1 model with a *fixed* residual sd (``Stage1Config.noise_sd``) every quantity except
the edge indicators is conditionally Gaussian: given a pattern ``z`` (which edges use the slab), the intercepts,
own-lag coefficients and lag weights integrate out analytically, so

    p(z | data) ∝ B(a + |z|, b + E - |z|) / B(a, b) * prod_j N(y_j; 0, sigma^2 I + X_j D_z X_j')

with ``pi ~ Beta(a, b)`` integrated out too. With a learned residual sd and one shop each node's
``N(y_j; ...)`` is further integrated over ``sigma_j ~ HalfNormal(noise_scale)`` on a fine grid of ``log sigma``
(the nodes' sds are independent, so the integral factorises over nodes). Summing over all ``2^E`` patterns gives exact PIPs — the ground truth
the marginalised NUTS sampler of :func:`dice_prob.inference.stage1.fit_graph` is tested against. Only for small
problems (``E <= 10`` candidate edges).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import betaln, logsumexp

from dice_prob.config import Stage1Config
from dice_prob.data.panel import Panel
from dice_prob.errors import ConfigError, DataValidationError, InputTypeError
from dice_prob.graph import offdiag_mask
from dice_prob.models.stage1 import prepare_data

__all__ = ["exact_pips", "MAX_EDGES"]

MAX_EDGES = 10


def _log_ml(y: np.ndarray, x: np.ndarray, prior_var: np.ndarray, s2):
    """log N(y; 0, s2 I + X diag(prior_var) X') via the p-dimensional (Woodbury) form.

    ``s2``: a residual variance (returns a float) or an array of them (returns an array of the same shape)."""
    s2_arr = np.asarray(s2, dtype=float)
    v = s2_arr.reshape(-1)
    n = y.size
    xtx, xty = x.T @ x, x.T @ y
    prec = xtx[None] / v[:, None, None] + np.diag(1.0 / prior_var)[None]
    chol = np.linalg.cholesky(prec)
    b = xty[None, :] / v[:, None]
    m = np.linalg.solve(prec, b[..., None])[..., 0]
    logdet_p = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    out = (
        -0.5 * n * np.log(2 * np.pi * v)
        - 0.5 * np.log(prior_var).sum()
        - 0.5 * logdet_p
        - 0.5 * (y @ y / v - np.einsum("gk,gk->g", m, b))
    )
    return float(out[0]) if s2_arr.ndim == 0 else out.reshape(s2_arr.shape)


#: Gauss-Hermite nodes for the learned slab sd (log scale).
_SLAB_NODES = 32

#: Grid on log sigma for a learned residual sd: from 1e-3 to 3 standardised units (the data are z-scored, so
#: sigma <= ~1), 0.01 apart -- about 1/8 of the posterior sd of log sigma with 100 rows, so the rectangle rule is
#: exact to far below the tolerance of any PIP comparison.
_LOG_SIGMA = np.arange(np.log(1e-3), np.log(3.0), 0.01)


def _log_ml_sigma(y: np.ndarray, x: np.ndarray, prior_var: np.ndarray, noise_scale: float) -> float:
    """log of the integral of N(y; 0, s^2 I + X diag(prior_var) X') over s ~ HalfNormal(noise_scale)."""
    s2 = np.exp(2.0 * _LOG_SIGMA)
    log_ml = _log_ml(y, x, prior_var, s2)
    # HalfNormal density of s, times ds = s du on the log grid
    sig = np.sqrt(s2)
    log_prior = 0.5 * np.log(2.0 / np.pi) - np.log(noise_scale) - 0.5 * (sig / noise_scale) ** 2 + _LOG_SIGMA
    du = _LOG_SIGMA[1] - _LOG_SIGMA[0]
    return float(logsumexp(log_ml + log_prior) + np.log(du))


def exact_pips(panel: Panel, *, config: Stage1Config) -> np.ndarray:
    """Exact posterior inclusion probabilities of one shared graph by enumerating all ``2^E`` edge patterns.

    Uses the same data preparation and priors as :func:`dice_prob.models.stage1.model` (``b ~ N(0, 1)``,
    ``phi ~ N(0, 0.5^2)``, slab/spike ``N(0, s^2 I_L)``, ``pi ~ Beta(a, b)`` integrated out, and a learned
    slab sd integrated by Gauss-Hermite quadrature on its log scale), all shops
    pooled into one graph with per-shop intercepts and own-lag terms.

    Parameters
    ----------
    panel : Panel
    config : Stage1Config
        ``mode="linear"`` is required. With a fixed ``noise_sd`` any number of shops (pooled into one graph);
        with a learned residual sd (``noise_sd=None``) one shop, each node's ``sigma ~ HalfNormal(noise_scale)``
        integrated on a fine grid of ``log sigma``.

    Returns
    -------
    (d, d) float array, zero off the support.

    Raises
    ------
    ConfigError
        ``mode != "linear"``, or ``noise_sd`` unset with more than one shop.
    DataValidationError
        More than ``MAX_EDGES`` candidate edges.

    Examples
    --------
    >>> import numpy as np, dice_prob as dp
    >>> x = np.random.default_rng(0).normal(size=(1, 80, 3))
    >>> x[0, 1:, 2] += 0.8 * x[0, :-1, 0]
    >>> p = dp.Panel(x, roles=["channel", "channel", "target"])
    >>> pip = exact_pips(p, config=dp.Stage1Config(n_lags=1, noise_sd=0.7))
    >>> bool(pip[0, 2] > 0.99), bool(pip[1, 2] < 0.5)
    (True, True)
    """
    if not isinstance(panel, Panel):
        raise InputTypeError(f"panel: expected a dice_prob.Panel, got {type(panel).__name__}")
    if not isinstance(config, Stage1Config):
        raise InputTypeError(f"config: expected a Stage1Config, got {type(config).__name__}")
    if config.mode != "linear":
        raise ConfigError("Stage1Config.mode: the exact reference supports mode='linear' only")
    if config.noise_sd is None and panel.n_shops != 1:
        raise ConfigError(
            "Stage1Config.noise_sd: with several shops the exact reference needs a fixed residual sd (each "
            "shop's sd would be one more integral); set noise_sd or pass a one-shop panel"
        )
    mask = panel.support_mask() if config.support == "roles" else offdiag_mask(panel.n_nodes)
    data = prepare_data(
        panel.values[:, : panel.train_steps if config.time_window == "train" else panel.n_steps],
        panel.roles,
        mask,
        n_lags=config.n_lags,
        mode="linear",
        channel_transform=config.channel_transform,
        lag_decay=config.lag_decay,
        node_scale=config.node_scale,
    )
    st = data.structure
    e_ = st.n_edges
    if e_ > MAX_EDGES:
        raise DataValidationError(
            f"support_mask: {e_} candidate edges; exact enumeration handles at most {MAX_EDGES} "
            "(use fit_graph for larger problems)"
        )
    y = np.asarray(data.y, dtype=np.float64)  # (R, T', J)
    ylag = np.asarray(data.ylag, dtype=np.float64)
    xlag = np.asarray(data.xlag, dtype=np.float64)  # (R, T', S, L)
    r_, tp, j_ = y.shape
    l_ = st.n_lags
    if config.noise_sd is None:

        def log_ml(yy, x, prior_var):
            return _log_ml_sigma(yy, x, prior_var, float(config.noise_scale))

    else:
        s2 = float(config.noise_sd) ** 2

        def log_ml(yy, x, prior_var):
            return _log_ml(yy, x, prior_var, s2)

    if config.learn_slab:
        # slab sd s ~ LogNormal(log slab_scale, slab_scale_sd), spike = s * spike_scale / slab_scale:
        # Gauss-Hermite nodes on log s
        gh_x, gh_w = np.polynomial.hermite_e.hermegauss(_SLAB_NODES)
        slabs = np.exp(np.log(config.slab_scale) + config.slab_scale_sd * gh_x)
        log_wq = np.log(gh_w / gh_w.sum())
    else:
        slabs, log_wq = np.array([float(config.slab_scale)]), np.zeros(1)
    ratio2 = (float(config.spike_scale) / float(config.slab_scale)) ** 2
    grid = tuple(float(m) for m in config.slab_grid)
    lag_var = np.ones(l_)  # the lag decay is already in the (scaled) features
    src_slot, dst_slot = st.edge_src_slot, st.edge_dst_slot

    n_in = np.bincount(np.asarray(st.edge_dst_slot), minlength=1).max()
    if (1 + len(grid)) ** int(n_in) * len(slabs) > 200_000:
        raise DataValidationError(
            f"slab_grid: {len(grid)} slab components and {int(n_in)} candidate parents of one node need "
            f"{(1 + len(grid)) ** int(n_in) * len(slabs)} marginal likelihoods; use a smaller problem or "
            "slab_grid=(1.0,)"
        )
    # per target and slab node: log ML for every sub-pattern of its incoming edges
    per_target = []
    for j in range(j_):
        es = np.flatnonzero(dst_slot == j)
        base = np.zeros((r_ * tp, 2 * r_))
        for r in range(r_):
            base[r * tp : (r + 1) * tp, 2 * r] = 1.0
            base[r * tp : (r + 1) * tp, 2 * r + 1] = ylag[r, :, j]
        feats = [np.concatenate([xlag[r, :, src_slot[e], :] for r in range(r_)]) for e in es]
        x = np.concatenate([base] + feats, axis=1)
        yy = y[:, :, j].reshape(-1)
        table = {}
        for bits in itertools.product((0, 1), repeat=len(es)):
            # an included edge's slab is an equal-weight scale mixture over the grid: sum over the component
            # of every included edge (each Gaussian given the components)
            rows = []
            for comps in itertools.product(range(len(grid)), repeat=int(sum(bits))):
                it = iter(comps)
                mult = [grid[next(it)] if b else 0.0 for b in bits]
                rows.append(
                    [
                        log_ml(
                            yy,
                            x,
                            np.concatenate(
                                [np.tile([1.0, 0.25], r_)]
                                + [
                                    lag_var * (sl**2 * m**2 if b else sl**2 * ratio2)
                                    for b, m in zip(bits, mult, strict=True)
                                ]
                            ),
                        )
                        - sum(bits) * np.log(len(grid))
                        for sl in slabs
                    ]
                )
            table[bits] = logsumexp(np.array(rows), axis=0)
        per_target.append((es, table))

    logp, pats = [], []
    for pattern in itertools.product((0, 1), repeat=e_):
        z = np.array(pattern)
        k = int(z.sum())
        lp = betaln(config.pi_alpha + k, config.pi_beta + e_ - k) - betaln(config.pi_alpha, config.pi_beta)
        lq = log_wq.copy()
        for es, table in per_target:
            lq = lq + table[tuple(int(v) for v in z[es])]
        logp.append(lp + logsumexp(lq))
        pats.append(z)
    logp = np.array(logp)
    w = np.exp(logp - logsumexp(logp))
    pip_e = w @ np.array(pats, dtype=float)
    out = np.zeros((st.n_nodes, st.n_nodes))
    out[np.array(st.edge_src), np.array(st.edge_dst)] = pip_e
    return out
