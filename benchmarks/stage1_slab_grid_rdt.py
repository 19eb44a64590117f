"""Stage 1 with a fixed scale-mixture slab on ``recovery_rdt``'s cells, beside the learned slab (the default).

The learned slab (``Stage1Config.learn_slab=True``) can leave its chains in two degenerate states (README, "other
graph densities"); a fixed slab that is a scale mixture (``learn_slab=False, slab_grid=(0.1, 0.3, 1.0)``) removes
them on ``benchmarks/graph_density.py``'s data but loses AUROC at its densest setting. This script asks the same
question on ``recovery_rdt``'s cells (the package's funnel simulator): each cell's one data set, the Stage 1 key of
each seed, and only the slab changed. Both slabs are fitted here, with the code of this commit: the learned-slab
rows of ``recovery_rdt.json`` were fitted by earlier code and need not match a refit draw for draw.

Reported per cell: PIP AUROC / nAUPRC over the support mask (per shop, averaged) and the worst split r_hat, per
seed and as mean ± sd. Stage 1 only (no CausalMMM): a diagnostic for the choice of default, no target, not part of
``bench all``.

Usage: ``python benchmarks/stage1_slab_grid_rdt.py [--fast] [--seeds N] [--cells NAME ...] [--out DIR]``.
Default cells: default, R=1, d=12, T=60, T=200, mmm (d = 20 takes about 16 min per fit; name it to run it).
The files are rewritten after every cell; cells not reached are listed as not run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recovery_rdt as rr  # noqa: E402
from _common import mean_sd, seeded_args, write_results  # noqa: E402
from _suite import key, run_stage1, scores_metrics, stage1_config  # noqa: E402

NAME = "stage1_slab_grid_rdt"
FIXED_SLAB_GRID = {"learn_slab": False, "slab_grid": (0.1, 0.3, 1.0)}
DEFAULT_CELLS = ("default", "R=1", "d=12", "T=60", "T=200", "mmm")
FAST_CELLS = ("R=1",)


def fit_row(name: str, cfg, seed: int, panel, truth, mask) -> dict:
    idx = list(rr.CELLS).index(name)
    post, wall, _ = run_stage1(key(seed, idx, 1), panel, cfg)
    pip = rr._pip3(post, panel.n_shops, panel.n_nodes)
    m = scores_metrics(pip, truth, mask, pip > 0.5)
    return {
        "auroc": m["auroc"],
        "nauprc": m["nauprc"],
        "max_r_hat": post.convergence.get("max_r_hat"),
        "chain_split": post.convergence.get("chain_split") is not None,
        "edge_split_edges": (post.convergence.get("edge_split") or {}).get("n_edges", 0),
        "seconds": wall,
    }


def run_cell(name: str, seeds, fast: bool) -> dict:
    c = rr.cell_setting(name, fast)
    sim = rr.simulate_cell(list(rr.CELLS).index(name), c)
    panel, truth = sim.panel, sim.graphs
    mask = np.asarray(sim.support_mask, dtype=bool) & ~np.eye(panel.n_nodes, dtype=bool)
    learned_cfg = stage1_config(c["mode"], fast)
    out = {"setting": c, "learned": [], "fixed": []}
    for s in seeds:
        out["learned"].append(fit_row(name, learned_cfg, s, panel, truth, mask))
        out["fixed"].append(fit_row(name, learned_cfg.replace(**FIXED_SLAB_GRID), s, panel, truth, mask))
        print(
            f"[{name}] seed {s}: AUROC learned {out['learned'][-1]['auroc']:.3f} "
            f"fixed {out['fixed'][-1]['auroc']:.3f}",
            flush=True,
        )
    return out


def _fmt_rhat(v) -> str:
    return "n/a" if v is None else (f"{v:.2e}" if v > 1e3 else f"{v:.2f}")


def markdown(cells: dict, seeds, fast: bool) -> str:
    lines = [
        f"Seeds {seeds}{' (--fast: short NUTS, at most 4 shops)' if fast else ''}; each cell's one data set of "
        "`recovery_rdt`, the Stage 1 key of each seed; only the slab differs. Learned: the default "
        "`Stage1Config`. Fixed: "
        f"`{FIXED_SLAB_GRID}`. AUROC / nAUPRC over the support mask, per shop, averaged; r_hat: the worst split "
        "r_hat of each fit (huge = a stuck chain).",
        "",
        "| cell | slab | PIP AUROC (mean ± sd) | per seed | nAUPRC (mean ± sd) | max r_hat per seed |",
        "|---|---|---|---|---|---|",
    ]
    for name, cell in cells.items():
        for label in ("learned", "fixed"):
            rows = cell[label]
            au = mean_sd([r["auroc"] for r in rows])
            na = mean_sd([r["nauprc"] for r in rows])
            lines.append(
                f"| {name} | {label} | {au[0]:.3f} ± {au[1]:.3f} | "
                + ", ".join(f"{r['auroc']:.3f}" for r in rows)
                + f" | {na[0]:.3f} ± {na[1]:.3f} | "
                + ", ".join(_fmt_rhat(r["max_r_hat"]) for r in rows)
                + " |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    args, seeds, out = seeded_args(
        __doc__,
        argv,
        default_seeds=2,
        fast_help="the R=1 cell, one seed, short NUTS",
        options={"--cells": {"nargs": "+", "choices": list(rr.CELLS), "help": "cells to run, in this order"}},
    )
    names = args.cells or (FAST_CELLS if args.fast else DEFAULT_CELLS)
    t0 = time.perf_counter()
    cells = {}
    for i, name in enumerate(names):
        cells[name] = run_cell(name, seeds, args.fast)
        # written after every cell: a stopped run leaves the cells it finished and names the rest as not run
        not_run = list(names[i + 1 :])
        write_results(
            NAME + ("_fast" if args.fast else ""),
            {
                "fast": args.fast,
                "seeds": seeds,
                "fixed_slab_grid": FIXED_SLAB_GRID,
                "cells": cells,
                "cells_not_run": not_run,
            },
            markdown(cells, seeds, args.fast)
            + (
                f"\n\n**Cells not run (the run stopped before them):** {', '.join(not_run)}."
                if not_run
                else ""
            ),
            wall_s=time.perf_counter() - t0,
            out=out,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
