"""Where Stage 1's chains disagree: per-chain inclusion probabilities on one recovery_rdt cell.

python benchmarks/stage1_chain_modes.py [--cell default] [--seed 0] [--chains 4] [--flip-moves N]

The README's "Limits" quotes this run. It refits Stage 1 on the data set of one ``recovery_rdt`` cell with the same
config and key as that benchmark's seed, but with more chains. It then lists every (shop, edge) whose per-chain
inclusion probability (the mean over draws of the per-draw probability) spans more than 0.3 across chains. For each
of them it also gives the truth, the pooled PIP, and how often the edge flips together with the other listed edges
of the same shop and target inside one chain.

For linear mode it then asks whether the split is a real two-mode posterior or a chain stuck in a poor mode. For
each (shop, target node) with split edges, it computes the target node's log evidence in NumPy for every on/off
state of those edges. The node's other indicators are held at the first chain's modal state, and the slab sd at
its mean. The intercept, own lag and every edge coefficient are integrated out, as in the collapsed sweep. The
evidence is computed at each chain's mean residual sd, and with the residual sd integrated over its HalfNormal
prior on a grid. Diagnostic only: no target, not part of ``bench all``.

``--flip-moves N`` refits with ``Stage1Config(flip_moves=N)``: N joint Metropolis proposals per node and iteration
that flip one or two indicators together with the residual sd (``dice_prob.models.stage1_moves``), and writes
``stage1_chain_modes_flip{N}`` instead, so the two runs sit side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recovery_rdt  # noqa: E402
from _common import write_results  # noqa: E402
from _suite import key, run_stage1, stage1_config, support_of  # noqa: E402

from dice_prob.models import sites  # noqa: E402
from dice_prob.models.stage1 import AR_SD, INTERCEPT_SD, prepare_data, slab_spike_scales  # noqa: E402

NAME = "stage1_chain_modes"
SPAN = 0.3  # a chain-to-chain span of the inclusion probability this wide means the chains sit in different modes


def node_log_evidence(y, ylag, blocks, on, sigma, slab, spike) -> float:
    """log N(y; 0, sigma^2 I + X D X') for one node of one shop: X = [1, ylag, every edge block], D the prior
    variances (intercept, own lag, slab or spike per block as ``on`` says). All coefficients integrated out."""
    cols = [np.ones_like(y), ylag, *[b[:, k] for b in blocks for k in range(b.shape[1])]]
    sds = [INTERCEPT_SD, AR_SD, *[slab if o else spike for o, b in zip(on, blocks, strict=True) for _ in b.T]]
    x = np.stack(cols, 1)
    cov = sigma**2 * np.eye(len(y)) + (x * np.square(sds)) @ x.T
    _, logdet = np.linalg.slogdet(cov)
    return float(-0.5 * logdet - 0.5 * y @ np.linalg.solve(cov, y) - 0.5 * len(y) * np.log(2 * np.pi))


def evidence_tables(post, panel, cfg, split) -> list[dict]:
    """For each (shop, target) with split edges: the log evidence of every on/off state of those edges."""
    data = prepare_data(
        np.asarray(panel.values)[:, : panel.train_steps],
        panel.roles,
        support_of(panel),
        n_lags=cfg.n_lags,
    )
    st = data.structure
    smp = post.samples
    incl = np.asarray(smp["inclusion_prob"], dtype=float)  # (chain, draw, shop, source, target)
    sig = np.asarray(smp[sites.NOISE], dtype=float)  # (chain, draw, shop, receiving node)
    slab_site = np.asarray(smp[sites.SLAB], dtype=float)[0, :, :].mean(0)  # chain 0, per shop
    grid = np.linspace(0.01, 1.0, 200)
    log_prior = -0.5 * grid**2 + np.log(np.sqrt(2 / np.pi)) + np.log(grid[1] - grid[0])  # HalfNormal(1)
    out = []
    for (shop, dst), srcs in split.items():
        j = st.recv_nodes.index(dst)
        y = np.asarray(data.y, dtype=float)[shop, :, j]
        ylag = np.asarray(data.ylag, dtype=float)[shop, :, j]
        xlag = np.asarray(data.xlag, dtype=float)[shop]
        edges = [e for e in range(st.n_edges) if st.edge_dst[e] == dst]
        blocks = [xlag[:, st.edge_src_slot[e], :] for e in edges]
        modal = [bool(incl[0, :, shop, st.edge_src[e], dst].mean() > 0.5) for e in edges]
        slab, spike = slab_spike_scales(cfg, st, slab_site[shop])
        sig_chain = sig[:, :, shop, j].mean(1)
        rows = []
        for state in range(2 ** len(srcs)):
            flags = {s_: bool(state >> k & 1) for k, s_ in enumerate(srcs)}
            on = [flags.get(st.edge_src[e], m) for e, m in zip(edges, modal, strict=True)]
            at_sig = [node_log_evidence(y, ylag, blocks, on, s_, slab, spike) for s_ in sig_chain]
            curve = np.array([node_log_evidence(y, ylag, blocks, on, g, slab, spike) for g in grid])
            rows.append(
                {
                    "state": {panel.nodes[s_]: v for s_, v in flags.items()},
                    "log_evidence_at_chain_sigma": at_sig,
                    "log_evidence_sigma_integrated": float(logsumexp(curve + log_prior)),
                    "best_sigma": float(grid[int(np.argmax(curve))]),
                }
            )
        out.append(
            {
                "shop": int(shop),
                "target": panel.nodes[dst],
                "chain_mean_sigma": [float(v) for v in sig_chain],
                "slab": float(slab),
                "states": rows,
            }
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="default", choices=list(recovery_rdt.CELLS))
    ap.add_argument("--seed", type=int, default=0, help="recovery_rdt seed whose Stage 1 key is reused")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--flip-moves", type=int, default=0, help="Stage1Config.flip_moves of the refit")
    args = ap.parse_args(argv)
    name = NAME if args.flip_moves == 0 else f"{NAME}_flip{args.flip_moves}"
    t0 = time.perf_counter()
    idx = list(recovery_rdt.CELLS).index(args.cell)
    setting = recovery_rdt.cell_setting(args.cell, False)
    sim = recovery_rdt.simulate_cell(idx, setting)
    panel = sim.panel
    cfg = stage1_config(setting["mode"], False).replace(num_chains=args.chains, flip_moves=args.flip_moves)
    post, wall, warns = run_stage1(key(args.seed, idx, 1), panel, cfg)
    # (chain, draw, shop, source, target) per-draw inclusion probabilities, the quantity r_hat is reported on
    incl = np.asarray(post.samples["inclusion_prob"], dtype=float)
    per_chain = incl.mean(axis=1)  # (chain, shop, source, target)
    span = per_chain.max(0) - per_chain.min(0)
    mask = support_of(panel)
    truth = np.asarray(sim.graphs, dtype=bool)
    names = list(panel.nodes)
    rows = []
    split: dict = {}  # (shop, target) -> its split sources
    for shop, src, dst in zip(*np.nonzero((span > SPAN) & mask[None]), strict=True):
        split.setdefault((int(shop), int(dst)), []).append(int(src))
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
    # 2^k states per node: only nodes with a few split edges (linear mode: the features are the lags themselves)
    evidence = (
        evidence_tables(post, panel, cfg, {k: v for k, v in split.items() if len(v) <= 4})
        if setting["mode"] == "linear"
        else []
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
        "evidence": evidence,
    }
    lines = [
        f"Stage 1 on recovery_rdt cell `{args.cell}` ({setting}), the key of seed {args.seed}, {args.chains} chains x "
        f"{cfg.num_warmup} + {cfg.num_samples}, flip_moves={cfg.flip_moves}. Max split r_hat {conv['max_r_hat']:.3g}, min bulk ESS "
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
    for ev in evidence:
        lines += [
            "",
            f"Shop {ev['shop']}, node `{ev['target']}`: log evidence of the node (coefficients integrated out; its "
            f"other edges at chain 0's modal state, slab sd {ev['slab']:.3f}), relative to the first row. Chains' "
            f"mean residual sd: {' / '.join(f'{v:.3f}' for v in ev['chain_mean_sigma'])}.",
            "",
            "| state of the split edges | at each chain's mean residual sd | residual sd integrated "
            "(HalfNormal(1)) | best residual sd |",
            "|---|---|---|---|",
        ]
        ref = ev["states"][0]
        for row in ev["states"]:
            state = ", ".join(f"{k} {'on' if v else 'off'}" for k, v in row["state"].items())
            at = " / ".join(
                f"{a - b:+.2f}"
                for a, b in zip(
                    row["log_evidence_at_chain_sigma"], ref["log_evidence_at_chain_sigma"], strict=True
                )
            )
            integ = row["log_evidence_sigma_integrated"] - ref["log_evidence_sigma_integrated"]
            lines.append(f"| {state} | {at} | {integ:+.2f} | {row['best_sigma']:.3f} |")
    write_results(name, payload, "\n".join(lines), wall_s=time.perf_counter() - t0)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
