"""Stage 1 graph recovery at three graph densities, on the independent generator's spends and media shapes.

The spends and media effects are those of ``benchmarks/independent_generator.py`` (co-moving channels through a
common AR(1) factor, 10% dark weeks, Weibull-CDF carryover, logistic saturation), written apart from
``dice_prob.simulate``. What changes is the graph: of the 21 forward funnel pairs (6 channels -> visits,
signups, sales; visits -> signups, sales; signups -> sales) each is an edge with probability ``density``,
drawn once per (density, seed). A channel edge adds ``1.2 x`` its media effect at lag 1, a node edge ``0.35 x``
the parent at lag 1; visits, signups and sales keep their own AR(1) (0.5, 0.4, 0.6), so the system is
triangular and stable at every density.

Per (density, seed), Stage 1 runs with the package defaults (``Stage1Config()``) and with the spend setting
that ``dice-prob run`` picks for spend data (``cli.SPEND_STAGE1``: log1p channels, ``lag_decay=1``), on the same
panel (6 shops x 120 weeks, one graph per shop, centred per shop). Reported: PIP AUROC / nAUPRC against the
true graph (support-masked, per shop, averaged, as the pipeline scores it) and the worst split r_hat.

``--fixed-slab-grid`` runs both settings with a fixed slab that is a scale mixture instead of a learned slab
(``learn_slab=False``, ``slab_grid=(0.1, 0.3, 1.0)``) and writes ``graph_density_fixed_slab_grid``: a measured
alternative to the learned slab, whose two chains can settle in its two degenerate states (see README).

Usage: ``python benchmarks/graph_density.py [--fast] [--seeds N] [--fixed-slab-grid]``.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import seeded_args, write_results  # noqa: E402
from independent_generator import CHANNELS, NODES, co_moving_spends, media_effect  # noqa: E402

FUNNEL = ("visits", "signups", "sales")
CANDIDATES = (*((c, f) for c in CHANNELS for f in FUNNEL), ("visits", "signups"), ("visits", "sales"))
CANDIDATES = (*CANDIDATES, ("signups", "sales"))
DENSITIES = (0.25, 0.5, 0.75)
_OWN_AR = {"visits": 0.5, "signups": 0.4, "sales": 0.6}


def draw_edges(density: float, seed: int) -> list[tuple[str, str]]:
    """Each candidate pair is an edge with probability ``density``; at least one edge enters sales."""
    g = np.random.default_rng([seed, int(round(1000 * density))])
    edges = [e for e in CANDIDATES if g.random() < density]
    if not any(b == "sales" for _, b in edges):
        edges.append(("visits", "sales"))
    return edges


def generate(seed: int, edges, n_shops: int = 6, n_steps: int = 120):
    """Values (R, T, 9) and the true graph (9, 9) in the ``A[src, dst]`` convention."""
    g = np.random.default_rng(seed)
    out = np.zeros((n_shops, n_steps, len(NODES)))
    for s in range(n_shops):
        spend = co_moving_spends(g, n_steps)
        effect = [media_effect(g, spend[:, i]) for i in range(len(CHANNELS))]
        x = np.zeros((n_steps, len(FUNNEL)))
        for t in range(1, n_steps):
            for k, node in enumerate(FUNNEL):
                v = _OWN_AR[node] * x[t - 1, k] + g.normal(0, 0.3)
                for a, b in edges:
                    if b == node:
                        v += (
                            1.2 * effect[CHANNELS.index(a)][t - 1]
                            if a in CHANNELS
                            else 0.35 * x[t - 1, FUNNEL.index(a)]
                        )
                x[t, k] = v
        out[s] = np.column_stack([spend, x])
    truth = np.zeros((len(NODES), len(NODES)))
    for a, b in edges:
        truth[NODES.index(a), NODES.index(b)] = 1.0
    return out, truth


FIXED_SLAB_GRID = {"learn_slab": False, "slab_grid": (0.1, 0.3, 1.0)}


def settings(fast: bool, fixed_slab_grid: bool = False) -> dict:
    from dice_prob.cli import SPEND_STAGE1, fast_config
    from dice_prob.config import PipelineConfig

    base = fast_config().stage1 if fast else PipelineConfig().stage1
    base = base.replace(progress_bar=False)
    out = {"defaults": base, "spend (log1p, lag_decay=1)": base.replace(**SPEND_STAGE1)}
    if fixed_slab_grid:
        out = {f"{k}, fixed slab grid": v.replace(**FIXED_SLAB_GRID) for k, v in out.items()}
    return out


def run_one(density: float, seed: int, fast: bool, fixed_slab_grid: bool = False) -> dict:
    import jax

    import dice_prob as dp
    from dice_prob.pipeline import _pip_scores

    edges = draw_edges(density, seed)
    values, truth = generate(seed, edges, n_shops=3 if fast else 6, n_steps=80 if fast else 120)
    roles = ["channel"] * len(CHANNELS) + ["intermediate", "intermediate", "target"]
    panel = dp.Panel(values, list(NODES), roles, centre="shop")
    res = {"density": density, "seed": seed, "n_edges": len(edges)}
    for name, s1 in settings(fast, fixed_slab_grid).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings are what the r_hat column reports
            post = dp.fit_graph(jax.random.key(seed), panel, config=s1)
        pip = np.asarray(post.pip)
        scores = _pip_scores(pip, np.broadcast_to(truth, pip.shape), np.asarray(post.support_mask, bool))
        res[name] = {
            "pip_auroc": scores["auroc"],
            "pip_nauprc": scores["nauprc"],
            "max_rhat": float(post.convergence["max_r_hat"]),
            "seconds": time.perf_counter() - t0,
        }
    return res


def markdown(runs: list[dict], seeds: list[int], fast: bool) -> str:
    names = [k for k in runs[0] if isinstance(runs[0][k], dict)]
    lines = [
        f"Seeds {seeds}{' (--fast sizes: 3 shops x 80 weeks, short NUTS)' if fast else ' (6 shops x 120 weeks)'}; "
        "mean over seeds (per seed in brackets). Edges: true edges among the 21 candidate pairs, per seed. PIP "
        "scores are support-masked, per shop, averaged. r_hat: the worst split r_hat of the fit (a stuck chain "
        "shows as a huge value).",
        "",
        "| density | edges | Stage 1 setting | PIP AUROC | PIP nAUPRC | max r_hat |",
        "|---|---|---|---|---|---|",
    ]
    for density in sorted({r["density"] for r in runs}):
        rows = [r for r in runs if r["density"] == density]
        edges = ", ".join(str(r["n_edges"]) for r in rows)
        for name in names:

            def col(k, digits=3, name=name, rows=rows):
                vals = [r[name][k] for r in rows]
                fmt = f"{{:.{digits}{'e' if max(vals) > 1e3 else 'f'}}}"
                return fmt.format(np.mean(vals)) + " (" + ", ".join(fmt.format(v) for v in vals) + ")"

            lines.append(
                f"| {density} | {edges} | {name} | {col('pip_auroc')} | {col('pip_nauprc')} | {col('max_rhat', 2)} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    args, seeds, out = seeded_args(
        __doc__,
        argv,
        default_seeds=3,
        fast_help="small sizes, one seed, density 0.5",
        flags={"--fixed-slab-grid": "a fixed scale-mixture slab instead of the learned slab"},
    )
    fixed = args.fixed_slab_grid
    t0 = time.perf_counter()
    runs = []
    for density in (0.5,) if args.fast else DENSITIES:
        for s in seeds:
            runs.append(run_one(density, s, args.fast, fixed))
            print(density, s, {k: v for k, v in runs[-1].items()}, flush=True)
    write_results(
        "graph_density" + ("_fixed_slab_grid" if fixed else "") + ("_fast" if args.fast else ""),
        {
            "fast": args.fast,
            "seeds": seeds,
            "candidates": [list(e) for e in CANDIDATES],
            "fixed_slab_grid": FIXED_SLAB_GRID if fixed else None,
            "runs": runs,
        },
        markdown(runs, seeds, args.fast),
        wall_s=time.perf_counter() - t0,
        out=out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
