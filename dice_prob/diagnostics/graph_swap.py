"""Frozen graph-swap: one trained decoder evaluated under many graph inputs.

The decoder is frozen; only its graph input changes. For every graph input (and every draw of it) we compute
MSE@H of the free-running forecast (target and all nodes, standardised units) and the AR-CIG nAUPRC/AUROC against
the true graph over the support mask. If a decoder's influence follows its graph input, the oracle input gives
high nAUPRC and the empty / node-permuted inputs give ~0; if it *bypasses* the graph, every input gives the same
(low) score while MSE hardly moves.

Default graph inputs (built when ``graphs`` does not name them; pass ``graphs={"full": None}`` to drop one):

- ``oracle``    the true graph;
- ``empty``     no edge;
- ``full``      every pair of the support mask;
- ``random``    density-matched random graphs: exactly as many edges as the truth, placed uniformly over the
  support (``n_null`` draws);
- ``permuted``  node-permuted oracle ``A[pi(i), pi(j)] = A[i, j]`` for a random permutation ``pi`` that changes the
  graph (``n_null`` draws).

A GraphPosterior passed as ``graphs={"posterior": post}`` gives two inputs: ``posterior`` (``n_samples`` graph
samples) and ``posterior_median`` (PIP > 0.5). Arrays (``(d, d)``, ``(n, d, d)``, ``(n, R, d, d)``) and
``"empty"``/``"full"`` are accepted for any other name; note that a 3-D array is read as ``n`` draws of one
shared graph — per-shop graphs must be passed as ``(n, R, d, d)`` (``A[None]`` for a single draw).

All graph inputs are stacked and evaluated in ONE jitted influence call (see
:func:`dice_prob.diagnostics.influence.influence`), on the same evaluation windows.

Per-shop truths ``(R, d, d)``: the AR-CIG of each draw is averaged over each shop's windows separately, scored
against that shop's true graph, and the per-shop scores are averaged (shops without a window, or whose truth has
no edge or no non-edge on the support, are left out; ``info["n_scored_shops"]`` records how many were used).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from dice_prob.diagnostics import metrics
from dice_prob.diagnostics.influence import as_graph_stack, influence
from dice_prob.errors import ConfigError, DataValidationError, InputTypeError
from dice_prob.graph import validate_adjacency

__all__ = ["METRICS", "GraphSwapResult", "density_matched_random", "graph_swap", "permuted_graphs"]

#: Metric names in ``GraphSwapResult.draws`` / ``.table``: MSE@H of the target and of all nodes (standardised),
#: and AR-CIG nAUPRC / AUROC against the truth over the support mask.
METRICS = ("nauprc", "auroc", "mse_target", "mse_all")
_DEFAULT_ORDER = ("oracle", "empty", "full", "random", "permuted")


@dataclasses.dataclass(frozen=True)
class GraphSwapResult:
    """Result of :func:`graph_swap`; every metric keeps its draws.

    Attributes
    ----------
    draws : dict
        ``draws[graph_input][metric]`` -> ndarray (n_draws,), metrics in :data:`METRICS`.
    influence : dict
        ``influence[graph_input]`` -> AR-CIG (n_draws, d, d) (mean over windows, ``[source, target]``).
    mse_by_horizon : dict
        ``mse_by_horizon[graph_input]`` -> target MSE per horizon (n_draws, H).
    nodes : tuple of str
    truth : ndarray (d, d) or (R, d, d)
    support_mask : ndarray (d, d) bool
    horizon : int
    hdi_prob : float
    info : dict
        Settings (method, delta, n_windows, n_samples, n_null, target_index, n_scored_shops).
    """

    draws: dict
    influence: dict
    mse_by_horizon: dict
    nodes: tuple
    truth: np.ndarray
    support_mask: np.ndarray
    horizon: int
    hdi_prob: float
    info: dict

    @property
    def graph_inputs(self) -> list[str]:
        return list(self.draws)

    @property
    def table(self) -> pd.DataFrame:
        """Tidy frame: graph_input, metric, mean, sd, hdi_low, hdi_high, n_draws (one row per input x metric).

        ``sd`` uses ``ddof=1`` (0 for a single draw); the HDI comes from ArviZ at ``hdi_prob`` (a single draw
        gives ``hdi_low == hdi_high``).
        """
        from dice_prob.diagnostics.uncertainty import hdi

        rows = []
        for gi, per_metric in self.draws.items():
            for metric, vals in per_metric.items():
                v = np.asarray(vals, dtype=np.float64)
                v = v[np.isfinite(v)]
                lo, hi = hdi(v, self.hdi_prob) if v.size else (np.nan, np.nan)
                rows.append(
                    {
                        "graph_input": gi,
                        "metric": metric,
                        "mean": float(v.mean()) if v.size else np.nan,
                        "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                        "hdi_low": float(lo),
                        "hdi_high": float(hi),
                        "n_draws": int(v.size),
                    }
                )
        return pd.DataFrame(
            rows, columns=["graph_input", "metric", "mean", "sd", "hdi_low", "hdi_high", "n_draws"]
        )

    def value(self, graph_input: str, metric: str = "nauprc") -> float:
        """Posterior mean of one metric for one graph input."""
        if graph_input not in self.draws:
            raise ConfigError(f"graph_input: {graph_input!r} not evaluated; have {self.graph_inputs}")
        if metric not in self.draws[graph_input]:
            raise ConfigError(f"metric: {metric!r} unknown; use one of {METRICS}")
        return float(np.nanmean(self.draws[graph_input][metric]))

    def to_arviz(self):
        """ArviZ data with dims (chain, draw, graph_input[, horizon | source, target])."""
        from dice_prob.diagnostics.uncertainty import graph_swap_to_arviz

        return graph_swap_to_arviz(self)

    def plot(self, **kwargs):
        """Forest plot of nAUPRC and MSE@H with HDI bars per graph input (see ``plots.plot_graph_swap``)."""
        from dice_prob.diagnostics.plots import plot_graph_swap

        return plot_graph_swap(self, **kwargs)


# ----------------------------------------------------------------------------------------------- null graphs


def density_matched_random(rng_key, truth, support, n: int) -> np.ndarray:
    """``n`` random graphs with exactly as many edges on ``support`` as ``truth`` (per shop for (R, d, d)).

    Examples
    --------
    >>> import jax
    >>> t = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]]); m = t.astype(bool)
    >>> g = density_matched_random(jax.random.key(0), np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]]), m, 4)
    >>> g.shape, g.sum(axis=(1, 2)).tolist()
    ((4, 3, 3), [1.0, 1.0, 1.0, 1.0])
    """
    t = np.asarray(truth, dtype=np.float64)
    sup = np.asarray(support, dtype=bool) & ~np.eye(t.shape[-1], dtype=bool)
    units = t.reshape((-1,) + t.shape[-2:])
    pairs = np.flatnonzero(sup)
    counts = (units.reshape(units.shape[0], -1)[:, pairs] != 0).sum(-1)
    keys = jax.random.split(rng_key, n * units.shape[0])
    u = np.asarray(jax.vmap(lambda k: jax.random.uniform(k, (pairs.size,)))(keys))
    u = u.reshape(n, units.shape[0], pairs.size)
    rank = np.argsort(np.argsort(u, axis=-1), axis=-1)  # random ranks 0..P-1
    on = rank < counts[None, :, None]
    out = np.zeros((n, units.shape[0], t.shape[-1] * t.shape[-1]))
    out[..., pairs] = on
    out = out.reshape((n,) + units.shape)
    return out[:, 0] if t.ndim == 2 else out


def permuted_graphs(rng_key, truth, n: int) -> np.ndarray:
    """``n`` node-permuted copies ``A'[pi(i), pi(j)] = A[i, j]`` of ``truth``, each different from it when possible.

    The same permutation is applied to every shop of a per-shop truth (R, d, d).

    Examples
    --------
    >>> import jax
    >>> t = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> g = permuted_graphs(jax.random.key(0), t, 3)
    >>> g.shape, bool((g.sum(axis=(1, 2)) == 2).all()), bool((g != t).any(axis=(1, 2)).all())
    ((3, 3, 3), True, True)
    """
    t = np.asarray(truth, dtype=np.float64)
    d = t.shape[-1]
    n_cand = 8 * n + 8
    keys = jax.random.split(rng_key, n_cand)
    perms = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, d))(keys))
    inv = np.argsort(perms, axis=-1)
    # A'[p, q] = A[inv[p], inv[q]]
    cand = t[..., inv[:, :, None], inv[:, None, :]] if t.ndim == 2 else t[:, inv[:, :, None], inv[:, None, :]]
    if t.ndim == 3:
        cand = np.moveaxis(cand, 1, 0)  # (n_cand, R, d, d)
    differs = (cand != t[None]).reshape(n_cand, -1).any(-1)
    order = np.concatenate([np.flatnonzero(differs), np.flatnonzero(~differs)])
    return cand[order[:n]]


# ----------------------------------------------------------------------------------------------- graph_swap


def graph_swap(
    rng_key,
    decoder,
    panel,
    *,
    truth,
    graphs: dict | None = None,
    horizon: int = 7,
    n_windows: int | None = 32,
    n_samples: int = 200,
    n_null: int = 20,
    method: str = "finite",
    delta: float = 1.0,
    support_mask=None,
    split: str = "test",
    history: int | None = None,
    hdi_prob: float = 0.94,
) -> GraphSwapResult:
    """Evaluate one frozen decoder under many graph inputs: MSE@H and AR-CIG nAUPRC per graph draw.

    Parameters
    ----------
    rng_key : jax random key
        Drives posterior graph samples, the null graphs and the window subset (same key -> same numbers).
    decoder : TrainedDecoder or decoder module
    panel : Panel
        Evaluation data; ``split`` windows of ``panel.scaled``.
    truth : array (d, d) or (R, d, d)
        True binary adjacency ``[src, dst]`` (one shared graph or one per shop).
    graphs : dict, optional
        ``name -> GraphPosterior | array | "empty" | "full" | None`` (None drops a default input).
    horizon : int
        ``H`` of MSE@H and AR-CIG.
    n_windows : int or None
        Evaluation windows (same for every input); None = every ``split`` window.
    n_samples : int
        Graph samples drawn from each posterior.
    n_null : int
        Draws of the density-matched random and node-permuted inputs.
    method, delta : AR-CIG settings (see :func:`dice_prob.diagnostics.influence.influence`).
    support_mask : (d, d) bool, optional
        Pairs that are scored and that ``full``/``random`` fill; default ``panel.support_mask()``.
    hdi_prob : float
        HDI mass of ``.table``.

    Returns
    -------
    GraphSwapResult

    Examples
    --------
    >>> import jax, numpy as np, dice_prob as dp
    >>> from dice_prob.models.decoder import GraphSafeDecoder
    >>> p = dp.Panel(np.random.default_rng(0).normal(size=(1, 40, 3)), roles=["channel", "channel", "target"])
    >>> A = np.array([[0, 0, 1], [0, 0, 0], [0, 0, 0]])
    >>> dec = GraphSafeDecoder(3, hidden_size=4, message_size=2, embed_size=2, key=jax.random.key(0))
    >>> import equinox as eqx   # untrained readouts start at 0 (no influence yet): perturb the weights
    >>> dec = jax.tree_util.tree_map(lambda a: a + 0.3 if eqx.is_inexact_array(a) else a, dec)
    >>> res = graph_swap(jax.random.key(1), dec, p, truth=A, n_windows=4, n_null=3, history=6)
    >>> res.value("oracle"), res.value("empty")   # influence follows the graph input
    (1.0, 0.0)
    """
    if not isinstance(graphs, (dict, type(None))):
        raise InputTypeError(f"graphs: expected a dict name -> graph input, got {type(graphs).__name__}")
    if int(n_null) < 1 or int(n_samples) < 1:
        raise ConfigError(f"n_null and n_samples must be >= 1, got {n_null} and {n_samples}")
    if not hasattr(panel, "scaled"):
        raise InputTypeError(f"panel: expected a dice_prob Panel, got {type(panel).__name__}")
    d = panel.n_nodes
    truth_arr = validate_adjacency(truth, d, name="truth", allow_batch=True, binary=True)
    if truth_arr.ndim == 3 and truth_arr.shape[0] != panel.n_shops:
        raise DataValidationError(
            f"truth: {truth_arr.shape[0]} per-shop graphs for a panel of {panel.n_shops} shops; pass one per shop "
            "or one shared (d, d) graph"
        )
    if truth_arr.ndim > 3:
        raise DataValidationError(f"truth: expected (d, d) or (R, d, d), got {truth_arr.shape}")
    support = (
        np.asarray(panel.support_mask(), dtype=bool)
        if support_mask is None
        else validate_adjacency(support_mask, d, name="support_mask", binary=True).astype(bool)
    )
    support = support & ~np.eye(d, dtype=bool)
    k_post, k_rand, k_perm, k_win = jax.random.split(rng_key, 4)

    # ---- graph inputs (ordered) -> stacks (n, G, d, d)
    user = dict(graphs or {})
    stacks: dict[str, np.ndarray] = {}
    n_shops = panel.n_shops

    def add(name, value, key):
        if value is None:
            return
        if hasattr(value, "sample_graphs"):
            stacks[name] = as_graph_stack(value, d, rng_key=key, n_samples=n_samples, n_shops=n_shops)
            med = np.asarray(value.median_graph(), dtype=np.float64)
            groups = getattr(value, "groups", None)
            if med.ndim == 3 and groups is not None and med.shape[0] != n_shops:
                med = med[np.asarray(groups, dtype=int)]
            stacks[f"{name}_median"] = as_graph_stack(med[None] if med.ndim == 3 else med, d, n_shops=n_shops)
        else:
            stacks[name] = as_graph_stack(value, d, n_shops=n_shops, support=support)

    post_keys = [k for k, v in user.items() if hasattr(v, "sample_graphs")]
    for k, name in zip(jax.random.split(k_post, max(1, len(post_keys))), post_keys, strict=False):
        add(name, user[name], k)
    defaults = {
        "oracle": truth_arr[None] if truth_arr.ndim == 3 else truth_arr,  # one draw of per-shop graphs
        "empty": "empty",
        "full": "full",
        "random": density_matched_random(k_rand, truth_arr, support, int(n_null)),
        "permuted": permuted_graphs(k_perm, truth_arr, int(n_null)),
    }
    for name in _DEFAULT_ORDER:
        add(name, user[name] if name in user else defaults[name], None)
    for name, value in user.items():
        if name not in stacks and name not in _DEFAULT_ORDER and name not in post_keys:
            add(name, value, None)
    if not stacks:
        raise ConfigError("graphs: every graph input was dropped; keep at least one")

    # ---- one influence call over every draw of every input
    g_dim = max(s.shape[1] for s in stacks.values())
    sizes = {name: s.shape[0] for name, s in stacks.items()}
    big = np.concatenate([np.broadcast_to(s, (s.shape[0], g_dim, d, d)) for s in stacks.values()], axis=0)
    res = influence(
        decoder,
        panel,
        big,
        horizon=horizon,
        delta=delta,
        method=method,
        n_windows=n_windows,
        rng_key=k_win,
        split=split,
        history=history,
    )
    win = res.windows
    target = int(panel.target_index)
    err = (res.forecast - win.future[None]) ** 2  # (n, N, H, d)
    mse_t = metrics.mse_at_h(res.forecast, win.future, node=target)
    mse_a = metrics.mse_at_h(res.forecast, win.future)
    mse_h = err[..., target].mean(axis=1)  # (n, H)

    if truth_arr.ndim == 2:
        nauprc = np.asarray(metrics.nauprc(res.scores, truth_arr, support), dtype=np.float64).reshape(-1)
        auroc = np.asarray(metrics.auroc(res.scores, truth_arr, support), dtype=np.float64).reshape(-1)
        n_scored = None
    else:
        nauprc, auroc, n_scored = _per_shop_scores(res, truth_arr, support)

    draws, infl, by_h = {}, {}, {}
    start = 0
    for name, n in sizes.items():
        sl = slice(start, start + n)
        start += n
        draws[name] = {
            "nauprc": nauprc[sl],
            "auroc": auroc[sl],
            "mse_target": np.atleast_1d(mse_t)[sl],
            "mse_all": np.atleast_1d(mse_a)[sl],
        }
        infl[name] = res.scores[sl]
        by_h[name] = mse_h[sl]
    info = {
        "method": method,
        "delta": float(delta),
        "n_windows": len(win),
        "n_samples": int(n_samples),
        "n_null": int(n_null),
        "target_index": target,
        "split": split,
        "n_scored_shops": n_scored,
        "uses_graph": bool(getattr(getattr(decoder, "model", decoder), "uses_graph", True)),
    }
    return GraphSwapResult(
        draws=draws,
        influence=infl,
        mse_by_horizon=by_h,
        nodes=tuple(panel.nodes),
        truth=truth_arr,
        support_mask=support,
        horizon=int(horizon),
        hdi_prob=float(hdi_prob),
        info=info,
    )


def _per_shop_scores(res, truth, support):
    """Per-shop AR-CIG (mean over that shop's windows) scored against that shop's truth, averaged over shops."""
    shop = res.windows.shop
    r_ = truth.shape[0]
    onehot = (shop[None, :] == np.arange(r_)[:, None]).astype(np.float64)  # (R, N)
    counts = onehot.sum(1)
    per_shop = np.einsum("rw,nwij->nrij", onehot, res.by_window) / np.maximum(counts, 1)[None, :, None, None]
    pos = (truth[:, support] != 0).sum(-1)
    ok = (counts > 0) & (pos > 0) & (pos < support.sum())
    if not ok.any():
        raise DataValidationError(
            "truth: no shop with evaluation windows has both edges and non-edges on the support; nAUPRC is "
            "undefined — use more windows (n_windows) or check the truth and support mask"
        )
    s = per_shop[:, ok]
    t = jnp.broadcast_to(truth[ok], s.shape)
    na = np.asarray(metrics.nauprc(s, np.asarray(t), support)).reshape(s.shape[:2]).mean(-1)
    au = np.asarray(metrics.auroc(s, np.asarray(t), support)).reshape(s.shape[:2]).mean(-1)
    return na, au, int(ok.sum())
