"""Matplotlib figures for the diagnostics (safe under the Agg backend; nothing is shown or saved here).

Convention: every ``plot_*`` function returns a :class:`matplotlib.figure.Figure`; with ``return_data=True`` it
returns ``(figure, data_frame)``, the tidy data drawn. Each also has a ``*_data`` twin that computes that frame
without drawing. Pass ``ax=`` (one Axes, or a sequence for multi-panel plots) to draw into existing axes. Close
figures you no longer need (``matplotlib.pyplot.close(fig)``).

- :func:`plot_pip` — PIP heatmap, true edges outlined;
- :func:`plot_posterior_graph` — networkx drawing of the posterior graph, edge width = PIP;
- :func:`plot_influence` — CIG / AR-CIG posterior-mean heatmap plus HDI-width panel;
- :func:`plot_graph_swap` — forest plot of nAUPRC and MSE@H with HDI bars per graph input;
- :func:`plot_forecast_fan` — target history and HDI band of rollouts under posterior graph samples.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from dice_prob.errors import ConfigError, DataValidationError

__all__ = [
    "forecast_fan_data",
    "graph_swap_data",
    "influence_data",
    "pip_data",
    "plot_forecast_fan",
    "plot_graph_swap",
    "plot_influence",
    "plot_pip",
    "plot_posterior_graph",
    "posterior_graph_data",
]


def _finish(fig, df, return_data: bool):
    return (fig, df) if return_data else fig


def _axes(ax, n: int, figsize):
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=figsize, squeeze=False)
        return fig, list(axes[0])
    axes = list(np.atleast_1d(ax))
    if len(axes) != n:
        raise ConfigError(f"ax: this plot needs {n} axes, got {len(axes)}")
    return axes[0].figure, axes


def _pip_matrix(post_or_pip, shop):
    """(pip (d, d), nodes or None, support or None) from a GraphPosterior-like object or an array."""
    if hasattr(post_or_pip, "pip"):
        post = post_or_pip
        if shop is not None and hasattr(post, "pip_of_shop"):
            pip = np.asarray(post.pip_of_shop(shop), dtype=np.float64)
        else:
            pip = np.asarray(post.pip, dtype=np.float64)
            if pip.ndim == 3:
                pip = pip.mean(axis=0)  # average over shops / groups
        return pip, list(post.nodes), np.asarray(getattr(post, "support_mask", None))
    pip = np.asarray(post_or_pip, dtype=np.float64)
    if pip.ndim == 3:
        pip = pip[shop] if shop is not None else pip.mean(axis=0)
    if pip.ndim != 2 or pip.shape[0] != pip.shape[1]:
        raise DataValidationError(f"pip: expected a (d, d) matrix, got shape {pip.shape}")
    return pip, None, None


def _names(nodes, d):
    return list(nodes) if nodes is not None else [f"x{k}" for k in range(d)]


def _truth2d(truth, shop):
    if truth is None:
        return None
    t = np.asarray(truth)
    if t.ndim == 3:
        t = t[shop] if shop is not None else (t.mean(axis=0) > 0.5)
    return t != 0


# ----------------------------------------------------------------------------------------------- PIP heatmap


def pip_data(post_or_pip, *, truth=None, nodes=None, shop=None) -> pd.DataFrame:
    """Tidy PIPs: source, target, pip, true_edge (when ``truth`` is given), in_support.

    Examples
    --------
    >>> pip_data(np.array([[0, 0.9], [0.1, 0]]), nodes=["a", "b"]).pip.tolist()
    [0.9, 0.1]
    """
    pip, pnodes, support = _pip_matrix(post_or_pip, shop)
    d = pip.shape[0]
    names = _names(nodes if nodes is not None else pnodes, d)
    src, dst = np.nonzero(~np.eye(d, dtype=bool))
    df = pd.DataFrame(
        {"source": [names[i] for i in src], "target": [names[j] for j in dst], "pip": pip[src, dst]}
    )
    t = _truth2d(truth, shop)
    if t is not None:
        df["true_edge"] = t[src, dst]
    if support is not None and support.shape == (d, d):
        df["in_support"] = support.astype(bool)[src, dst]
    return df


def plot_pip(
    post_or_pip,
    *,
    truth=None,
    nodes=None,
    shop=None,
    ax=None,
    title="Posterior inclusion probability",
    return_data: bool = False,
):
    """PIP heatmap (rows = source, columns = target) with the true edges outlined in black.

    Parameters
    ----------
    post_or_pip : GraphPosterior or array (d, d) / (R, d, d)
        Per-shop PIPs are averaged over shops unless ``shop`` is given.
    truth : array (d, d) or (R, d, d), optional

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from dice_prob.diagnostics.plots import plot_pip
    >>> pip = np.array([[0.0, 0.9, 0.2], [0.05, 0.0, 0.7], [0.01, 0.3, 0.0]])
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> fig, df = plot_pip(pip, truth=truth, nodes=["tv", "search", "sales"], return_data=True)
    >>> len(fig.axes), df.shape, list(df.columns)  # heatmap + colour bar; one row per off-diagonal pair
    (2, (6, 4), ['source', 'target', 'pip', 'true_edge'])
    >>> plt.close(fig)
    """
    pip, pnodes, _ = _pip_matrix(post_or_pip, shop)
    d = pip.shape[0]
    names = _names(nodes if nodes is not None else pnodes, d)
    fig, (a,) = _axes(ax, 1, (1.0 + 0.55 * d, 0.6 + 0.5 * d))
    im = a.imshow(pip, vmin=0.0, vmax=1.0, cmap="viridis")
    fig.colorbar(im, ax=a, fraction=0.046, pad=0.04, label="PIP")
    a.set_xticks(range(d), names, rotation=90)
    a.set_yticks(range(d), names)
    a.set_xlabel("target")
    a.set_ylabel("source")
    a.set_title(title)
    t = _truth2d(truth, shop)
    if t is not None:
        for i, j in zip(*np.nonzero(t), strict=True):
            a.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.0))
    return _finish(fig, pip_data(post_or_pip, truth=truth, nodes=nodes, shop=shop), return_data)


# ----------------------------------------------------------------------------------------------- network


def posterior_graph_data(post_or_pip, *, nodes=None, shop=None, threshold: float = 0.05) -> pd.DataFrame:
    """Edges with PIP above ``threshold``: source, target, pip (sorted by PIP, descending).

    Examples
    --------
    >>> import numpy as np
    >>> from dice_prob.diagnostics.plots import posterior_graph_data
    >>> pip = np.array([[0.0, 0.9, 0.2], [0.05, 0.0, 0.7], [0.01, 0.3, 0.0]])
    >>> posterior_graph_data(pip, nodes=["tv", "search", "sales"], threshold=0.25)
       source  target  pip
    0      tv  search  0.9
    1  search   sales  0.7
    2   sales  search  0.3
    """
    df = pip_data(post_or_pip, nodes=nodes, shop=shop)
    df = df[df.pip > threshold][["source", "target", "pip"]]
    return df.sort_values("pip", ascending=False, kind="stable").reset_index(drop=True)


def plot_posterior_graph(
    post_or_pip,
    *,
    nodes=None,
    shop=None,
    threshold: float = 0.05,
    truth=None,
    ax=None,
    layout: str = "circular",
    max_width: float = 6.0,
    return_data: bool = False,
):
    """networkx drawing of the posterior graph: one arrow per edge with PIP > ``threshold``, width = PIP.

    True edges (when ``truth`` is given) are drawn in black, others in grey.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from dice_prob.diagnostics.plots import plot_posterior_graph
    >>> pip = np.array([[0.0, 0.9, 0.2], [0.05, 0.0, 0.7], [0.01, 0.3, 0.0]])
    >>> truth = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    >>> fig, df = plot_posterior_graph(
    ...     pip, nodes=["tv", "search", "sales"], truth=truth, threshold=0.25, return_data=True
    ... )
    >>> df.source.tolist(), df.target.tolist()  # the three arrows drawn
    (['tv', 'search', 'sales'], ['search', 'sales', 'search'])
    >>> plt.close(fig)
    """
    df = posterior_graph_data(post_or_pip, nodes=nodes, shop=shop, threshold=threshold)
    pip, pnodes, _ = _pip_matrix(post_or_pip, shop)
    names = _names(nodes if nodes is not None else pnodes, pip.shape[0])
    g = nx.DiGraph()
    g.add_nodes_from(names)
    for row in df.itertuples(index=False):
        g.add_edge(row.source, row.target, weight=float(row.pip))
    layouts = {"circular": nx.circular_layout, "spring": nx.spring_layout, "shell": nx.shell_layout}
    if layout not in layouts:
        raise ConfigError(f"layout: expected one of {sorted(layouts)}, got {layout!r}")
    pos = layouts[layout](g, seed=0) if layout == "spring" else layouts[layout](g)
    fig, (a,) = _axes(ax, 1, (5.5, 5.0))
    t = _truth2d(truth, shop)
    idx = {n: k for k, n in enumerate(names)}
    edges = list(g.edges(data="weight"))
    colors = ["black" if (t is not None and t[idx[u], idx[v]]) else "tab:gray" for u, v, _ in edges]
    nx.draw_networkx_nodes(g, pos, ax=a, node_color="white", edgecolors="black", node_size=900)
    nx.draw_networkx_labels(g, pos, ax=a, font_size=8)
    nx.draw_networkx_edges(
        g,
        pos,
        ax=a,
        edgelist=[(u, v) for u, v, _ in edges],
        width=[max_width * w for _, _, w in edges],
        edge_color=colors,
        arrows=True,
        arrowsize=12,
        node_size=900,
        connectionstyle="arc3,rad=0.08",
    )
    a.set_title("Posterior graph (edge width = PIP)")
    a.set_axis_off()
    return _finish(fig, df, return_data)


# ----------------------------------------------------------------------------------------------- influence


def influence_data(stack, *, nodes=None, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Per pair: source, target, mean, hdi_low, hdi_high, hdi_width of an influence stack (n, d, d).

    Examples
    --------
    >>> influence_data(np.ones((3, 2, 2)), nodes=["a", "y"]).hdi_width.tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    from dice_prob.diagnostics.uncertainty import hdi

    s = np.asarray(getattr(stack, "scores", stack), dtype=np.float64)
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3 or s.shape[1] != s.shape[2]:
        raise DataValidationError(f"stack: expected an influence stack (n, d, d), got shape {s.shape}")
    d = s.shape[-1]
    names = _names(nodes, d)
    bounds = hdi(s, hdi_prob, axis=0)  # (d, d, 2)
    src, dst = np.meshgrid(np.arange(d), np.arange(d), indexing="ij")
    src, dst = src.ravel(), dst.ravel()
    return pd.DataFrame(
        {
            "source": [names[i] for i in src],
            "target": [names[j] for j in dst],
            "mean": s.mean(axis=0)[src, dst],
            "hdi_low": bounds[src, dst, 0],
            "hdi_high": bounds[src, dst, 1],
            "hdi_width": bounds[src, dst, 1] - bounds[src, dst, 0],
        }
    )


def plot_influence(
    stack,
    *,
    nodes=None,
    truth=None,
    title: str = "AR-CIG",
    hdi_prob: float = 0.94,
    ax=None,
    return_data: bool = False,
):
    """Two heatmaps of an influence stack (n, d, d): the posterior mean and the HDI width per pair.

    The diagonal (own influence) is shown hatched-out (NaN) so it does not dominate the colour scale; true
    edges are outlined when ``truth`` is given.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from dice_prob.diagnostics.plots import plot_influence
    >>> stack = np.random.default_rng(0).normal(size=(50, 3, 3))  # e.g. AR-CIG draws (n, d, d)
    >>> fig, df = plot_influence(stack, nodes=["tv", "search", "sales"], return_data=True)
    >>> len(fig.axes), df.shape  # mean and HDI-width panels, each with a colour bar; one row per pair
    (4, (9, 6))
    >>> list(df.columns)
    ['source', 'target', 'mean', 'hdi_low', 'hdi_high', 'hdi_width']
    >>> plt.close(fig)
    """
    df = influence_data(stack, nodes=nodes, hdi_prob=hdi_prob)
    d = int(round(np.sqrt(len(df))))
    names = _names(nodes, d)
    mean = df["mean"].to_numpy().reshape(d, d).copy()
    width = df["hdi_width"].to_numpy().reshape(d, d).copy()
    np.fill_diagonal(mean, np.nan)
    np.fill_diagonal(width, np.nan)
    fig, axes = _axes(ax, 2, (2.0 + 1.1 * d, 0.8 + 0.5 * d))
    t = _truth2d(truth, None)
    for a, m, lab in (
        (axes[0], mean, f"{title}: posterior mean"),
        (axes[1], width, f"{int(hdi_prob * 100)}% HDI width"),
    ):
        im = a.imshow(m, cmap="magma")
        fig.colorbar(im, ax=a, fraction=0.046, pad=0.04)
        a.set_xticks(range(d), names, rotation=90)
        a.set_yticks(range(d), names)
        a.set_xlabel("target")
        a.set_ylabel("source")
        a.set_title(lab)
        if t is not None:
            for i, j in zip(*np.nonzero(t), strict=True):
                a.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="cyan", linewidth=2.0))
    return _finish(fig, df, return_data)


# ----------------------------------------------------------------------------------------------- graph swap


def graph_swap_data(result, metrics=("nauprc", "mse_target")) -> pd.DataFrame:
    """The rows of ``result.table`` for ``metrics``, graph inputs in evaluation order.

    Examples
    --------
    A hand-built :class:`~dice_prob.diagnostics.graph_swap.GraphSwapResult` with three draws per metric
    (normally made by :func:`dice_prob.graph_swap`):

    >>> import numpy as np
    >>> from dice_prob.diagnostics.graph_swap import GraphSwapResult
    >>> from dice_prob.diagnostics.plots import graph_swap_data
    >>> draws = {
    ...     "oracle": {"nauprc": np.array([0.8, 0.9, 1.0]), "mse_target": np.array([0.10, 0.12, 0.11])},
    ...     "empty": {"nauprc": np.array([0.0, 0.1, 0.2]), "mse_target": np.array([0.30, 0.28, 0.32])},
    ... }
    >>> res = GraphSwapResult(
    ...     draws=draws, influence={}, mse_by_horizon={}, nodes=("a", "b"), truth=np.eye(2),
    ...     support_mask=np.ones((2, 2), dtype=bool), horizon=7, hdi_prob=0.94, info={},
    ... )
    >>> graph_swap_data(res, metrics=("nauprc",))[["graph_input", "metric", "mean", "n_draws"]].round(2)
      graph_input  metric  mean  n_draws
    0      oracle  nauprc   0.9        3
    1       empty  nauprc   0.1        3
    """
    tab = result.table
    unknown = [m for m in metrics if m not in set(tab.metric)]
    if unknown:
        raise ConfigError(f"metrics: {unknown} not in the graph-swap table ({sorted(set(tab.metric))})")
    return tab[tab.metric.isin(list(metrics))].reset_index(drop=True)


def plot_graph_swap(result, *, metrics=("nauprc", "mse_target"), ax=None, return_data: bool = False):
    """Forest plot: one panel per metric, one row per graph input, point = mean, bar = HDI."""
    df = graph_swap_data(result, metrics)
    inputs = list(dict.fromkeys(df.graph_input))
    fig, axes = _axes(ax, len(metrics), (4.2 * len(metrics), 0.9 + 0.42 * len(inputs)))
    labels = {
        "nauprc": "AR-CIG nAUPRC",
        "auroc": "AR-CIG AUROC",
        "mse_target": f"MSE@{result.horizon} (target)",
        "mse_all": f"MSE@{result.horizon} (all nodes)",
    }
    y = np.arange(len(inputs))[::-1]
    for a, metric in zip(axes, metrics, strict=True):
        sub = df[df.metric == metric].set_index("graph_input").loc[inputs]
        lo = (sub["mean"] - sub["hdi_low"]).clip(lower=0)
        hi = (sub["hdi_high"] - sub["mean"]).clip(lower=0)
        a.errorbar(sub["mean"], y, xerr=[lo, hi], fmt="o", color="black", ecolor="tab:blue", capsize=3)
        a.set_yticks(y, inputs)
        a.set_xlabel(labels.get(metric, metric))
        if metric == "nauprc":
            a.axvline(0.0, color="grey", linestyle=":", linewidth=1)
        a.grid(axis="x", alpha=0.3)
    axes[0].set_title(f"Frozen graph-swap ({int(result.hdi_prob * 100)}% HDI)")
    return _finish(fig, df, return_data)


# ----------------------------------------------------------------------------------------------- fan chart


def forecast_fan_data(
    decoder,
    panel,
    graphs,
    *,
    rng_key=None,
    shop: int = 0,
    origin: int | None = None,
    horizon: int = 7,
    history: int | None = None,
    n_samples: int = 200,
    hdi_prob: float = 0.94,
    node=None,
    show_history: int | None = None,
) -> pd.DataFrame:
    """Target history and rollouts under every graph input for one window, in raw units.

    Columns: ``step`` (time index), ``kind`` (``history`` | ``forecast``), ``observed`` (raw value, NaN past the
    panel's end), ``median``, ``hdi_low``, ``hdi_high`` (forecast rows only) and ``n_graphs``. ``origin`` is the
    last observed step (default: the last one that leaves ``horizon`` observed steps).
    """
    from dice_prob.data.windows import Windows
    from dice_prob.diagnostics.influence import as_graph_stack, forecast_draws, resolve_decoder
    from dice_prob.diagnostics.uncertainty import hdi

    res = resolve_decoder(decoder)
    w = int(history) if history is not None else (res.history or 21)
    x = panel.scaled
    r_, t_, d = x.shape
    if not 0 <= int(shop) < r_:
        raise DataValidationError(f"shop: index {shop} out of range for {r_} shops")
    t0 = t_ - horizon - 1 if origin is None else int(origin)
    if not w - 1 <= t0 <= t_ - 1:
        raise DataValidationError(f"origin: must be in [{w - 1}, {t_ - 1}] for history {w}, got {t0}")
    node_k = (
        panel.target_index
        if node is None
        else (panel.node_index(node) if isinstance(node, str) else int(node))
    )
    g = as_graph_stack(
        graphs, d, rng_key=rng_key, n_samples=n_samples, n_shops=r_, support=panel.support_mask()
    )
    g = g[:, [int(shop)]] if g.shape[1] > 1 else g
    n_fut = min(horizon, t_ - 1 - t0)
    fut = np.full((1, horizon, d), np.nan)
    fut[0, :n_fut] = x[shop, t0 + 1 : t0 + 1 + n_fut]
    ctx = None if panel.context is None else np.asarray(panel.context)[[int(shop)]]
    win = Windows(x[shop, t0 - w + 1 : t0 + 1][None], fut, np.zeros(1, dtype=int), np.array([t0]), ctx)
    fc, _ = forecast_draws(decoder, win, g, horizon=horizon, n_windows=None)
    draws = panel.inverse_transform(fc[:, 0, :, node_k], node=node_k, shop=int(shop))  # (n, H)
    bounds = hdi(draws, hdi_prob, axis=0)  # (H, 2)
    n_hist = w if show_history is None else min(int(show_history), w)
    hist_steps = np.arange(t0 - n_hist + 1, t0 + 1)
    raw = panel.values[shop, :, node_k]
    fut_steps = np.arange(t0 + 1, t0 + 1 + horizon)
    observed = np.array([raw[s] if s < t_ else np.nan for s in fut_steps])
    hist_df = pd.DataFrame({"step": hist_steps, "kind": "history", "observed": raw[hist_steps]})
    fc_df = pd.DataFrame(
        {
            "step": fut_steps,
            "kind": "forecast",
            "observed": observed,
            "median": np.median(draws, axis=0),
            "hdi_low": bounds[:, 0],
            "hdi_high": bounds[:, 1],
            "n_graphs": draws.shape[0],
        }
    )
    return pd.concat([hist_df, fc_df], ignore_index=True)


def plot_forecast_fan(
    decoder,
    panel,
    graphs,
    *,
    rng_key=None,
    shop: int = 0,
    origin: int | None = None,
    horizon: int = 7,
    history: int | None = None,
    n_samples: int = 200,
    hdi_prob: float = 0.94,
    node=None,
    show_history: int | None = None,
    ax=None,
    return_data: bool = False,
):
    """Fan chart of the target: observed history, observed future and the HDI band + median of the rollouts
    under every graph input (e.g. posterior graph samples; a posterior needs ``rng_key``)."""
    df = forecast_fan_data(
        decoder,
        panel,
        graphs,
        rng_key=rng_key,
        shop=shop,
        origin=origin,
        horizon=horizon,
        history=history,
        n_samples=n_samples,
        hdi_prob=hdi_prob,
        node=node,
        show_history=show_history,
    )
    fig, (a,) = _axes(ax, 1, (7.0, 3.5))
    h = df[df.kind == "history"]
    f = df[df.kind == "forecast"]
    a.plot(h.step, h.observed, color="black", label="observed")
    a.plot(f.step, f.observed, color="black", linestyle="--", label="observed (future)")
    a.fill_between(
        f.step,
        f.hdi_low,
        f.hdi_high,
        color="tab:blue",
        alpha=0.3,
        label=f"{int(hdi_prob * 100)}% HDI over {int(f.n_graphs.iloc[0])} graph draws",
    )
    a.plot(f.step, f["median"], color="tab:blue", label="median forecast")
    a.axvline(h.step.iloc[-1], color="grey", linestyle=":", linewidth=1)
    name = panel.nodes[
        panel.target_index
        if node is None
        else (panel.node_index(node) if isinstance(node, str) else int(node))
    ]
    a.set_title(f"Forecast fan chart: {name} (shop {shop})")
    a.set_xlabel("time step")
    a.set_ylabel(name)
    a.legend(fontsize=7, loc="best")
    return _finish(fig, df, return_data)
