"""Self-contained HTML report of a pipeline result.

``report(result_or_dir, path)`` renders one HTML file from the jinja2 template shipped in
``dice_prob/templates/report.html``: figures are embedded as base64 PNG and the page loads nothing from the
network, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from dice_prob._io_atomic import atomic_write_text
from dice_prob.errors import InputTypeError
from dice_prob.inference.stage1 import describe_convergence_split
from dice_prob.models.forecast_baselines import reference_label

__all__ = ["SECTIONS", "render_figures", "render_html", "report"]

#: Section headings every report contains (tests and users rely on them).
SECTIONS = (
    "What was run",
    "Posterior graph",
    "Forecast",
    "Influence: CIG and AR-CIG",
    "Graph swap",
    "Attribution check",
)

_ROLE_COLOURS = {"channel": "#4C72B0", "intermediate": "#DD8452", "target": "#55A868", "control": "#8172B3"}


# ====================================================================================== figures
def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _mpl()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _mean_pip(res) -> np.ndarray:
    p = np.asarray(res.pip, dtype=np.float64)
    return p if p.ndim == 2 else p.mean(axis=0)


def _truth_share(res) -> np.ndarray | None:
    if res.truth is None:
        return None
    t = np.asarray(res.truth, dtype=np.float64)
    return t if t.ndim == 2 else t.mean(axis=0)


def _heatmap(ax, mat, nodes, title, *, vmin=0.0, vmax=None, cmap="viridis", outline=None, annotate=True):
    plt = _mpl()
    d = len(nodes)
    im = ax.imshow(mat, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(d), nodes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(d), nodes, fontsize=8)
    ax.set_xlabel("target (effect)")
    ax.set_ylabel("source (cause)")
    ax.set_title(title, fontsize=10)
    if outline is not None:
        for i, j in zip(*np.nonzero(outline > 0), strict=True):
            ax.add_patch(
                plt.Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=0.8 + 1.7 * float(outline[i, j])
                )
            )
    if annotate and d <= 14:
        hi = np.nanmax(mat) if vmax is None else vmax
        for i in range(d):
            for j in range(d):
                if i != j and np.isfinite(mat[i, j]) and abs(mat[i, j]) > 1e-6 * max(abs(hi or 1.0), 1e-30):
                    ax.text(
                        j,
                        i,
                        f"{mat[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if mat[i, j] < 0.6 * (hi or 1) else "black",
                    )
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _fig_pip(res) -> bytes:
    plt = _mpl()
    nodes = list(res.nodes)
    pip = _mean_pip(res)
    mat = np.where(res.support_mask, pip, np.nan)
    np.fill_diagonal(mat, np.nan)
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    per = "" if np.ndim(res.pip) == 2 else f" (mean over {np.shape(res.pip)[0]} shops/groups)"
    title = f"Posterior inclusion probability{per}"
    if res.truth is not None:
        title += "\nred outline = true edge (width: share of shops)"
    _heatmap(ax, mat, nodes, title, vmin=0.0, vmax=1.0, outline=_truth_share(res))
    return _png(fig)


def _layered_positions(nodes, roles):
    order = {"channel": 0, "control": 0, "intermediate": 1, "target": 2}
    cols: dict[int, list[int]] = {}
    for k, r in enumerate(roles):
        cols.setdefault(order.get(r, 1), []).append(k)
    pos = {}
    for c, members in cols.items():
        n = len(members)
        for m, k in enumerate(members):
            pos[nodes[k]] = (float(c), (n - 1) / 2.0 - m)
    return pos


def _fig_network(res) -> bytes:
    import networkx as nx

    plt = _mpl()
    nodes = list(res.nodes)
    roles = list(res.panel.roles)
    pip = _mean_pip(res)
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for i, j in zip(*np.nonzero((pip > 0.1) & res.support_mask), strict=True):
        if i != j:
            g.add_edge(nodes[i], nodes[j], pip=float(pip[i, j]))
    pos = _layered_positions(nodes, roles)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = [_ROLE_COLOURS.get(r, "#999999") for r in roles]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=900, alpha=0.9)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7, font_color="white")
    edges = list(g.edges(data=True))
    if edges:
        widths = [0.5 + 4.5 * e[2]["pip"] for e in edges]
        alphas = [0.25 + 0.75 * e[2]["pip"] for e in edges]
        for (u, v, _), w, a in zip(edges, widths, alphas, strict=True):
            nx.draw_networkx_edges(
                g,
                pos,
                edgelist=[(u, v)],
                ax=ax,
                width=w,
                alpha=a,
                arrows=True,
                arrowsize=12,
                node_size=900,
                connectionstyle="arc3,rad=0.08",
            )
    handles = [
        plt.Line2D([], [], marker="o", ls="", color=c, label=r)
        for r, c in _ROLE_COLOURS.items()
        if r in roles
    ]
    ax.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.5, -0.12),
    )
    ax.set_title("Posterior graph: edge width and opacity = PIP (edges with PIP > 0.1)", fontsize=10)
    ax.axis("off")
    return _png(fig)


def _fig_forecast(res) -> bytes:
    plt = _mpl()
    f = res.forecast
    draws = np.asarray(f["draws"], dtype=np.float64)
    obs = np.asarray(f["observed"], dtype=np.float64)
    o, start = int(f["origin"]), int(f["start"])
    h = draws.shape[1]
    t_obs = np.arange(start, min(len(obs), o + h + 1))
    t_fc = np.arange(o + 1, o + 1 + h)
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    ax.plot(t_obs, obs[t_obs], color="black", lw=1.2, label="observed")
    for q, a in ((0.03, 0.18), (0.25, 0.35)):
        lo, hi = np.quantile(draws, q, axis=0), np.quantile(draws, 1 - q, axis=0)
        ax.fill_between(
            t_fc,
            lo,
            hi,
            color="#4C72B0",
            alpha=a,
            lw=0,
            label=f"{int(round(100 * (1 - 2 * q)))}% band over graph samples",
        )
    ax.plot(t_fc, draws.mean(axis=0), color="#4C72B0", lw=1.6, label="forecast (mean)")
    ax.axvline(o + 0.5, color="grey", ls=":", lw=1)
    m = res.headline.get("mse7", {})
    ax.set_title(
        f"{f['node']} in shop {f['shop_id']}: {h}-step forecast from step {o} "
        f"(target MSE@{h} over test windows = {_fmt(m.get('mean'))}, standardised)",
        fontsize=9,
    )
    times = f.get("time") or []
    if times and len(t_obs):
        ticks = t_obs[:: max(1, len(t_obs) // 6)]
        ax.set_xticks(ticks, [str(times[t])[:10] for t in ticks], fontsize=7)
    ax.set_xlabel("time")
    ax.set_ylabel(f"{f['node']} (raw units)")
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def _hdi_width(arr, prob):
    from dice_prob.pipeline import _hdi

    lo, hi = _hdi(arr, prob)
    return hi - lo


def _fig_influence(res) -> bytes:
    plt = _mpl()
    nodes = list(res.nodes)
    prob = res.config.diagnostics.hdi_prob
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 9))
    for row, (name, arr) in enumerate((("CIG (one step)", res.cig), ("AR-CIG (rollout)", res.ar_cig))):
        a = np.asarray(arr, dtype=np.float64)
        mean = a.mean(axis=0)
        width = _hdi_width(a, prob)
        for m in (mean, width):
            np.fill_diagonal(m, np.nan)
        outline = _truth_share(res)
        _heatmap(
            axes[row, 0], mean, nodes, f"{name}: posterior mean", vmin=0.0, cmap="magma", outline=outline
        )
        _heatmap(
            axes[row, 1],
            width,
            nodes,
            f"{name}: {int(round(100 * prob))}% HDI width",
            vmin=0.0,
            cmap="cividis",
            annotate=True,
        )
    fig.tight_layout()
    return _png(fig)


def _swap_frame(res) -> pd.DataFrame | None:
    t = res.tables.get("graph_swap")
    if t is None or not isinstance(t, pd.DataFrame) or t.empty:
        return None
    need = {"graph_input", "metric", "mean"}
    return t if need <= set(t.columns) else None


def _fig_swap(res) -> bytes | None:
    t = _swap_frame(res)
    if t is None:
        return None
    plt = _mpl()
    metrics = [m for m in ("nauprc", "mse_target") if m in set(t["metric"])] or list(
        dict.fromkeys(t["metric"])
    )
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), 0.45 * t["graph_input"].nunique() + 1.6), squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = t[t["metric"] == metric].reset_index(drop=True)
        y = np.arange(len(sub))[::-1]
        lo = sub["hdi_low"].to_numpy(float) if "hdi_low" in sub else sub["mean"].to_numpy(float)
        hi = sub["hdi_high"].to_numpy(float) if "hdi_high" in sub else sub["mean"].to_numpy(float)
        mean = sub["mean"].to_numpy(float)
        ax.hlines(y, lo, hi, color="#4C72B0", lw=2)
        ax.plot(mean, y, "o", color="#4C72B0")
        ax.set_yticks(y, sub["graph_input"].astype(str), fontsize=8)
        ax.set_title(str(metric), fontsize=10)
        if "nauprc" in str(metric).lower():
            ax.axvline(0, color="grey", ls=":", lw=1)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Frozen graph swap: one decoder under different graph inputs (mean and HDI)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def render_figures(res) -> dict[str, bytes]:
    """PNG bytes of every report figure of a :class:`~dice_prob.pipeline.PipelineResult`.

    Returns
    -------
    dict
        ``pip_heatmap``, ``network``, ``forecast``, ``influence`` and (with a graph-swap table) ``graph_swap``.

    Examples
    --------
    >>> sorted(render_figures(load_result("demo-out")))  # doctest: +SKIP
    ['forecast', 'graph_swap', 'influence', 'network', 'pip_heatmap']
    """
    out = {
        "pip_heatmap": _fig_pip(res),
        "network": _fig_network(res),
        "forecast": _fig_forecast(res),
        "influence": _fig_influence(res),
    }
    swap = _fig_swap(res)
    if swap is not None:
        out["graph_swap"] = swap
    return out


# ====================================================================================== HTML
def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not math.isfinite(float(x)):
            return "–"
        return f"{float(x):.{digits}g}" if abs(float(x)) >= 1e-3 or x == 0 else f"{float(x):.2e}"
    return str(x)


def _table_html(df: pd.DataFrame | None, *, max_rows: int = 60) -> str:
    if df is None or not isinstance(df, pd.DataFrame) or df.empty:
        return "<p class='muted'>(no rows)</p>"
    d = df.head(max_rows).copy()
    for c in d.columns:
        if pd.api.types.is_float_dtype(d[c]):
            d[c] = d[c].map(_fmt)
    out = d.to_html(index=False, border=0, classes="tbl", escape=True, na_rep="–")
    if len(df) > max_rows:
        out += f"<p class='muted'>showing {max_rows} of {len(df)} rows (all rows in the CSV file)</p>"
    return out


def _summ_str(s: dict | None, prob: float) -> str:
    if not s:
        return "–"
    pct = int(round(100 * prob))
    return f"{_fmt(s.get('mean'))} ({pct}% HDI {_fmt(s.get('hdi_low'))} to {_fmt(s.get('hdi_high'))})"


def _edge_rows(res) -> pd.DataFrame | None:
    e = res.tables.get("edges_summary")
    if e is None:
        e = res.tables.get("edges")
    return e


def _context(res) -> dict:
    s = res.summary
    prob = res.config.diagnostics.hdi_prob
    h = s.get("headline", {})
    figs = res.render_figures()
    img = {k: "data:image/png;base64," + base64.b64encode(v).decode("ascii") for k, v in figs.items()}
    data = s.get("data", {})
    shape = data.get("shape", list(res.panel.shape))
    conv = s.get("convergence", {}) or {}
    timings = s.get("timings_s", {}) or {}
    cpu = s.get("cpu_s", {}) or {}
    versions = s.get("versions", {}) or {}
    seeds = s.get("seeds", {}) or {}
    attribution = h.get("attribution", {}) or {}
    truth = bool(data.get("has_truth", res.truth is not None))
    pip_scores = h.get("pip_scores") or {}
    comparison = res.tables.get("comparison")
    truth_lines = []
    if truth:
        truth_lines.append(f"PIP AUROC against the true graph: {_fmt(pip_scores.get('auroc'))}")
        truth_lines.append(f"PIP nAUPRC against the true graph: {_fmt(pip_scores.get('nauprc'))}")
        if "ar_cig_nauprc" in h:
            truth_lines.append(
                f"AR-CIG nAUPRC of the posterior-trained decoder against the true graph: "
                f"{_summ_str(h['ar_cig_nauprc'], prob)}"
            )
    conv_ok = conv.get("ok")
    return {
        "title": "dice_prob report",
        "created": s.get("created_at") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sections": SECTIONS,
        "img": img,
        "shape": {"shops": shape[0], "steps": shape[1], "nodes": shape[2]},
        "nodes": [
            {"name": n, "role": r}
            for n, r in zip(data.get("nodes", res.nodes), data.get("roles", res.panel.roles), strict=False)
        ],
        "target": data.get("target", res.panel.target),
        "n_context": data.get("n_context", 0),
        "has_truth": truth,
        "truth_lines": truth_lines,
        "config_rows": _flat(s.get("config", res.config.to_dict())),
        "version_rows": sorted(versions.items()),
        "seed_rows": [
            (k, " ".join(str(x) for x in v) if isinstance(v, list) else str(v)) for k, v in seeds.items()
        ],
        "timing_rows": [
            (
                k,
                f"{float(v):.1f} s"
                + (f" (CPU {float(cpu[k]):.1f} s)" if isinstance(cpu.get(k), (int, float)) else ""),
            )
            for k, v in timings.items()
            if isinstance(v, (int, float))
        ],
        "conv_rows": [(k, _fmt(v)) for k, v in conv.items() if not isinstance(v, (dict, list))],
        "conv_ok": conv_ok,
        "conv_split": describe_convergence_split(conv),
        "mse7": _summ_str(h.get("mse7"), prob),
        "mse7_all": _summ_str(h.get("mse7_all_nodes"), prob),
        "mse7_persistence": _fmt(h.get("mse7_persistence")),
        "mse7_flat_mean": _fmt(h.get("mse7_flat_mean")) if "mse7_flat_mean" in h else None,
        "mse7_ls_ar": _fmt(h["mse7_ls_ar"]) if h.get("mse7_ls_ar") is not None else None,
        "ls_ar_lags": h.get("ls_ar_lags"),
        "missed_references": [
            reference_label(k, h.get("ls_ar_lags"))
            for k, ok in (h.get("beats_reference_forecasts") or {}).items()
            if not ok
        ],
        "horizon": res.config.diagnostics.horizon,
        "n_draws": int(np.shape(res.ar_cig)[0]),
        "n_edges": h.get("n_edges_pip_gt_05"),
        "n_edges_per_unit": h.get("n_edges_pip_gt_05_per_unit"),
        "edge_table": _table_html(_edge_rows(res)),
        "forecast_table": _table_html(res.tables.get("forecast")),
        "comparison_table": _table_html(comparison),
        "influence_table": _table_html(_top_influence(res), max_rows=30),
        "swap_table": _table_html(_swap_frame(res)),
        "has_swap": "graph_swap" in img,
        "attribution_sentence": attribution.get("sentence", "The attribution check was not computed."),
        "attribution_verdict": attribution.get("verdict", "undetermined"),
        "attribution_rows": [
            ("Spearman rank correlation AR-CIG vs PIP", _summ_str(attribution.get("spearman"), prob)),
            (
                "AR-CIG mass on edges with PIP > 0.5",
                _summ_str(attribution.get("mass_on_posterior_edges"), prob),
            ),
            ("share of candidate pairs with PIP > 0.5", _fmt(attribution.get("share_edges"))),
        ],
        "notes": list(s.get("notes", [])),
        "hdi_pct": int(round(100 * prob)),
    }


def _top_influence(res) -> pd.DataFrame | None:
    t = res.tables.get("influence")
    if t is None or t.empty:
        return None
    if "kind" in t.columns:
        t = t[t["kind"] == "ar_cig"].drop(columns="kind")
    return t.sort_values("mean", ascending=False, kind="stable").head(20)


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            rows.extend(_flat(v, name + "."))
        else:
            rows.append((name, str(v)))
    return rows


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dice_prob", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("report.html")


def render_html(result) -> str:
    """The report of a :class:`~dice_prob.pipeline.PipelineResult` as one HTML string.

    Examples
    --------
    >>> html = render_html(load_result("demo-out"))  # doctest: +SKIP
    """
    return _template().render(**_context(result))


def report(result_or_dir, path: str | os.PathLike) -> Path:
    """Write the self-contained HTML report of a result (object or saved folder) to ``path``.

    Parameters
    ----------
    result_or_dir : PipelineResult, str or path
        A fresh result, or a folder written by :meth:`~dice_prob.pipeline.PipelineResult.save`.
    path : str or path
        The HTML file to write (atomically).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import dice_prob as dp
    >>> dp.report("demo-out", "demo-out/report.html")  # doctest: +SKIP
    """
    from dice_prob.pipeline import PipelineResult, load_result

    if isinstance(result_or_dir, (str, os.PathLike)):
        res = load_result(result_or_dir)
    elif isinstance(result_or_dir, PipelineResult):
        res = result_or_dir
    else:
        raise InputTypeError(
            f"result_or_dir: expected a PipelineResult or a result folder, got {type(result_or_dir).__name__}"
        )
    return atomic_write_text(Path(path), render_html(res))
