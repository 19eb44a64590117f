"""Cost and payoff of Stage 1's joint flip moves, measured in one run on one recovery_rdt cell.

python benchmarks/stage1_flip_cost.py [--cell default] [--seed 0] [--chains 4] [--flips 0 4 8] [--shops N]
    [--no-warmup-fit]

The same data and key are fitted once per ``Stage1Config.flip_moves`` value, after one untimed warm-up fit per value
(so compilation is excluded and every setting meets the same machine state). For each it reports the sampling
seconds, max split r_hat, min bulk ESS, min ESS per sampling second (the payoff per unit cost), the mean
per-shop PIP AUROC over the support mask, and the largest chain-to-chain span of any edge's inclusion
probability, and the flip moves' acceptance (overall and the least mobile node). ``--shops N`` fits only the
cell's first N shops (a d = 20 fit of all ten takes ~9 min per setting); ``--no-warmup-fit`` skips the warm-up
fit (the sampling time still excludes compilation, which is timed apart). Results go to ``stage1_flip_cost``
for the default cell with every shop, else to ``stage1_flip_cost_<cell>[_<N>shops]``. Diagnostic only: no
target, not part of ``bench all``. The README's Limits quote it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recovery_rdt  # noqa: E402
from _common import write_results  # noqa: E402
from _suite import key, run_stage1, scores_metrics, stage1_config, support_of  # noqa: E402

from dice_prob.data.panel import Panel  # noqa: E402

NAME = "stage1_flip_cost"


def _acc(row: dict) -> str:
    if row.get("flip_accept_rate") is None:
        return "—"
    return f"{row['flip_accept_rate']:.3f} ({row['flip_accept_min_node']:.3f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="default", choices=list(recovery_rdt.CELLS))
    ap.add_argument("--seed", type=int, default=0, help="recovery_rdt seed whose Stage 1 key is reused")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--flips", type=int, nargs="+", default=[0, 4, 8], help="flip_moves values to compare")
    ap.add_argument("--shops", type=int, default=None, help="fit only the cell's first N shops")
    ap.add_argument("--no-warmup-fit", action="store_true", help="time the first fit (compilation excluded)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    idx = list(recovery_rdt.CELLS).index(args.cell)
    setting = recovery_rdt.cell_setting(args.cell, False)
    sim = recovery_rdt.simulate_cell(idx, setting)
    panel = sim.panel
    truth = np.asarray(sim.graphs, dtype=float)
    if args.shops is not None:
        if not 1 <= args.shops <= panel.n_shops:
            ap.error(f"--shops must be in [1, {panel.n_shops}] for cell {args.cell}")
        panel = Panel(
            panel.values[: args.shops], nodes=panel.nodes, roles=panel.roles, train_steps=panel.train_steps
        )
        truth = truth[: args.shops]
    mask = support_of(panel)
    name = NAME
    if args.cell != "default" or args.shops is not None:
        name += "_" + args.cell.replace("=", "") + (f"_{args.shops}shops" if args.shops is not None else "")
    base = stage1_config(setting["mode"], False).replace(num_chains=args.chains)
    rows = []
    for n in args.flips:
        cfg = base.replace(flip_moves=n)
        if not args.no_warmup_fit:
            run_stage1(key(args.seed, idx, 1), panel, cfg)  # warm-up: compiles this setting's sampler
        post, wall, warns = run_stage1(key(args.seed, idx, 1), panel, cfg)
        incl = np.asarray(post.samples["inclusion_prob"], dtype=float).mean(axis=1)  # (chain, shop, src, dst)
        span = float(((incl.max(0) - incl.min(0)) * mask[None]).max())
        pip = np.asarray(post.pip, dtype=float)
        sc = scores_metrics(pip, truth, mask, pip > 0.5)
        conv = post.convergence
        sample_s = float(post.timing["sample_s"])
        rows.append(
            {
                "flip_moves": n,
                "sample_s": sample_s,
                "wall_s": wall,
                "max_r_hat": float(conv["max_r_hat"]),
                "min_ess": float(conv["min_ess"]),
                "min_ess_per_s": float(conv["min_ess"]) / sample_s,
                "auroc": sc["auroc"],
                "nauprc": sc["nauprc"],
                "max_chain_span": span,
                "flip_accept_rate": conv.get("flip_accept_rate"),
                "flip_accept_min_node": conv.get("flip_accept_min_node"),
                "compile_s": float(post.timing.get("compile_s", float("nan"))),
                "convergence_warnings": warns,
            }
        )
        print(rows[-1], flush=True)
    ref = rows[0]
    payload = {
        "cell": args.cell,
        "setting": setting,
        "seed": args.seed,
        "chains": args.chains,
        "shops": panel.n_shops,
        "warmup_fit": not args.no_warmup_fit,
        "stage1_config": base.to_dict(),
        "rows": rows,
    }
    lines = [
        f"Stage 1 on recovery_rdt cell `{args.cell}` ({setting}"
        + (f", first {panel.n_shops} shops" if args.shops is not None else "")
        + f"), the key of seed {args.seed}, {args.chains} chains x {base.num_warmup} + {base.num_samples}; "
        + (
            "every setting fitted twice in this run, the second fit timed"
            if not args.no_warmup_fit
            else "every setting fitted once in this run"
        )
        + " (compilation excluded). Cost ratios are against the first row.",
        "",
        "| flip_moves | sampling s | cost ratio | max r_hat | min ESS | min ESS / s | ESS/s ratio | AUROC | nAUPRC | "
        "max chain span | flips accepted (lowest node) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['flip_moves']} | {r['sample_s']:.1f} | {r['sample_s'] / ref['sample_s']:.2f} | "
            f"{r['max_r_hat']:.3g} | {r['min_ess']:.1f} | {r['min_ess_per_s']:.3f} | "
            f"{r['min_ess_per_s'] / ref['min_ess_per_s']:.1f} | {r['auroc']:.3f} | {r['nauprc']:.3f} | "
            f"{r['max_chain_span']:.2f} | {_acc(r)} |"
        )
    lines += [
        "",
        "max chain span: the largest difference, over chains, of an edge's mean per-draw inclusion probability "
        "(1 = some chain never includes an edge that another always includes).",
    ]
    write_results(name, payload, "\n".join(lines), wall_s=time.perf_counter() - t0)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
