"""Where Stage 1's chains disagree: per-chain inclusion probabilities on one recovery_rdt cell.

python benchmarks/stage1_chain_modes.py [--cell default] [--seed 0] [--chains 4]

The README's "Limits" quotes this run. It refits Stage 1 on the data set of one ``recovery_rdt`` cell with the same
config and key as that benchmark's seed, but with more chains. It then lists every (shop, edge) whose per-chain
inclusion probability (the mean over draws of the per-draw probability) spans more than 0.3 across chains. For each
of them it also gives the truth, the pooled PIP, and how often the edge flips together with the other listed edges
of the same shop and target inside one chain. Diagnostic only: no target, not part of ``bench all``.
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
from _suite import key, run_stage1, stage1_config  # noqa: E402

NAME = "stage1_chain_modes"
SPAN = 0.3  # a chain-to-chain span of the inclusion probability this wide means the chains sit in different modes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="default", choices=list(recovery_rdt.CELLS))
    ap.add_argument("--seed", type=int, default=0, help="recovery_rdt seed whose Stage 1 key is reused")
    ap.add_argument("--chains", type=int, default=4)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    idx = list(recovery_rdt.CELLS).index(args.cell)
    setting = recovery_rdt.cell_setting(args.cell, False)
    sim = recovery_rdt.simulate_cell(idx, setting)
    panel = sim.panel
    cfg = stage1_config(setting["mode"], False).replace(num_chains=args.chains)
    post, wall, warns = run_stage1(key(args.seed, idx, 1), panel, cfg)
    # (chain, draw, shop, source, target) per-draw inclusion probabilities, the quantity r_hat is reported on
    incl = np.asarray(post.samples["inclusion_prob"], dtype=float)
    per_chain = incl.mean(axis=1)  # (chain, shop, source, target)
    span = per_chain.max(0) - per_chain.min(0)
    mask = np.asarray(sim.support_mask, dtype=bool) & ~np.eye(panel.n_nodes, dtype=bool)
    truth = np.asarray(sim.graphs, dtype=bool)
    names = list(panel.nodes)
    rows = []
    for shop, src, dst in zip(*np.nonzero((span > SPAN) & mask[None]), strict=True):
        on = incl[:, :, shop, src, dst] > 0.5  # (chain, draw)
        partners = [
            s2 for s2 in range(panel.n_nodes) if s2 != src and mask[s2, dst] and span[shop, s2, dst] > SPAN
        ]
        together = [
            float(np.mean(on == (incl[:, :, shop, s2, dst] > 0.5))) for s2 in partners
        ]  # share of draws (all chains) where the two indicators agree
        rows.append(
            {
                "shop": int(shop),
                "edge": f"{names[src]} -> {names[dst]}",
                "true_edge": bool(truth[shop, src, dst]),
                "per_chain_inclusion": [round(float(v), 3) for v in per_chain[:, shop, src, dst]],
                "pooled_pip": float(per_chain[:, shop, src, dst].mean()),
                "agrees_with": {names[s2]: round(a, 3) for s2, a in zip(partners, together, strict=True)},
            }
        )
    conv = post.convergence
    payload = {
        "cell": args.cell,
        "setting": setting,
        "seed": args.seed,
        "chains": args.chains,
        "stage1_config": cfg.to_dict(),
        "max_r_hat": conv["max_r_hat"],
        "min_ess": conv["min_ess"],
        "convergence_warnings": warns,
        "fit_seconds": wall,
        "span_threshold": SPAN,
        "split_edges": rows,
    }
    lines = [
        f"Stage 1 on recovery_rdt cell `{args.cell}` ({setting}), the key of seed {args.seed}, {args.chains} chains x "
        f"{cfg.num_warmup} + {cfg.num_samples}. Max split r_hat {conv['max_r_hat']:.3g}, min bulk ESS "
        f"{conv['min_ess']:.3g}; fit {wall:.0f} s.",
        "",
        f"Edges whose per-chain inclusion probability spans more than {SPAN} across chains:",
        "",
        "| shop | edge | true edge | per-chain inclusion | pooled PIP | share of draws in the same state as |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        agree = ", ".join(f"{k}: {v:.2f}" for k, v in r["agrees_with"].items()) or "—"
        lines.append(
            f"| {r['shop']} | {r['edge']} | {'yes' if r['true_edge'] else 'no'} | "
            f"{' / '.join(f'{v:.2f}' for v in r['per_chain_inclusion'])} | {r['pooled_pip']:.2f} | {agree} |"
        )
    if not rows:
        lines.append("| — | none | | | | |")
    write_results(NAME, payload, "\n".join(lines), wall_s=time.perf_counter() - t0)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
