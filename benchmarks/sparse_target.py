"""Forecasting vs attribution on the sparse-target benchmark, with CausalMMM's learned graphs as one more input.

A thin script around ``attribution_bypass`` (its settings and swap summary are reused): for each seed, simulate
``dp.simulate.sparse_target`` (strong target AR, co-moving channels, 1-2 target parents, one graph per shop), fit
the Stage-1 posterior and the leak-free CausalMMM port, train graph-safe decoders under the empty ("no-graph"),
full, oracle, posterior and hard (posterior median, PIP > 0.5) graphs, under CausalMMM's learned graphs
(P(edge) > 0.5 per shop, as CausalMMM outputs them: not masked to the role support), plus the dense bypass
baseline; report for each MSE@7 of the target and AR-CIG nAUPRC against the per-shop truth over the support mask,
under the decoder's own training graph. The CausalMMM row is CausalMMM's own trained decoder run under its own
learned graphs (same test windows and AR-CIG protocol; context min-max scaled as it was trained).

Usage: ``python benchmarks/sparse_target.py [--fast] [--seeds N] [--out DIR] [--resume] [--shop-linear]``
(``--shop-linear``: every decoder with per-shop offsets of its linear part, results in ``sparse_target_shop_linear``).
Nothing is tuned to a target.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _suite import (  # noqa: E402
    causalmmm_config,
    f,
    key,
    mean_sd,
    out_dir,
    parser,
    run_causalmmm,
    run_stage1,
    seed_count,
    seed_runs,
    shop_linear_variant,
    targets_md,
    write_seeded,
)
from attribution_bypass import PAPER  # noqa: E402
from attribution_bypass import settings as bypass_settings  # noqa: E402

import dice_prob as dp  # noqa: E402
from dice_prob.data import simulate  # noqa: E402
from dice_prob.data.panel import Panel  # noqa: E402
from dice_prob.diagnostics import metrics  # noqa: E402
from dice_prob.diagnostics.graph_swap import graph_swap  # noqa: E402
from dice_prob.diagnostics.influence import as_graph_stack  # noqa: E402
from dice_prob.inference.causalmmm_train import causalmmm_inputs  # noqa: E402
from dice_prob.inference.train import evaluate_mse, train_decoder  # noqa: E402

NAME = "sparse_target"
DECODERS = ("empty", "full", "oracle", "posterior", "hard", "causalmmm_graph", "dense")
LABELS = {
    "empty": "no-graph (empty)",
    "full": "full graph",
    "oracle": "oracle graph",
    "posterior": "Stage-1 posterior samples",
    "hard": "Stage-1 hard (PIP > 0.5)",
    "causalmmm_graph": "CausalMMM learned graph -> graph-safe decoder",
    "dense": "dense bypass baseline",
    "causalmmm_own": "CausalMMM (its own decoder, leak-free)",
}
TARGETS = {
    "mse_within_20pct_of_oracle": "no-graph and full-graph MSE@7 <= 1.2 x oracle-graph MSE@7",
    "oracle_trained_nauprc": "oracle-trained AR-CIG nAUPRC >= 0.7 (paper 0.807 ± 0.129)",
    "empty_full_nauprc_low": "no-graph and full-graph AR-CIG nAUPRC <= 0.1 (paper: near or below 0)",
    "posterior_beats_causalmmm": "posterior-trained AR-CIG nAUPRC > CausalMMM (own decoder) AR-CIG nAUPRC",
}
_DROP = {k: None for k in ("oracle", "empty", "full", "random", "permuted")}


def settings(fast: bool) -> dict:
    """attribution_bypass's settings; ``--fast`` trims them further to fit the suite's CI budget."""
    cfg = bypass_settings(fast)
    if fast:
        cfg["stage1"] = {**cfg["stage1"], "num_warmup": 100, "num_samples": 100}
        cfg["decoder"] = {**cfg["decoder"], "max_epochs": 15, "patience": 5}
        cfg.update(n_samples=30, n_null=5, n_windows=16)
    return cfg


def causalmmm_panel(res, panel: Panel) -> Panel:
    """The panel with the context CausalMMM was trained on (min-max scaled); values and split unchanged."""
    _, ctx = causalmmm_inputs(panel, res.config)
    return Panel(
        panel.values, nodes=panel.nodes, roles=panel.roles, context=ctx, train_steps=panel.train_steps
    )


def prepare(seed: int, cfg: dict, fast: bool) -> dict:
    """Simulate, fit Stage 1 and the leak-free CausalMMM port for one seed (shared with graph_swap.py)."""
    k_sim, k_s1, k_cm = jax.random.split(key(seed), 3)
    sim = simulate.sparse_target(k_sim, **cfg["sim"])
    panel = sim.panel
    truth = sim.graphs
    post, s1_s, s1_warn = run_stage1(k_s1, panel, dp.Stage1Config(**cfg["stage1"]))
    cm, cm_s = run_causalmmm(k_cm, panel, causalmmm_config(fast, leak_free=True), truth)
    d = panel.n_nodes
    cm_hard = ((np.asarray(cm.edge_scores) > 0.5) & ~np.eye(d, dtype=bool)).astype(float)
    mask = np.asarray(panel.support_mask(), dtype=bool) & ~np.eye(d, dtype=bool)
    med = np.asarray(post.median_graph(), dtype=float)
    return {
        "sim": sim,
        "panel": panel,
        "truth": truth,
        "post": post,
        "hard": med if med.ndim == 3 else np.broadcast_to(med, truth.shape).copy(),
        "cm": cm,
        "cm_hard": cm_hard,
        "mask": mask,
        "info": {
            "seed": seed,
            "non_degenerate": bool(sim.info.get("non_degenerate")),
            "stage1_seconds": s1_s,
            "stage1_warnings": s1_warn,
            "stage1_pip_auroc": float(np.mean(metrics.auroc(post.pip, truth, mask))),
            "stage1_pip_nauprc": float(np.mean(metrics.nauprc(post.pip, truth, mask))),
            "causalmmm_seconds": cm_s,
            "causalmmm_auroc_masked": float(np.mean(metrics.auroc(cm.edge_scores, truth, mask))),
            "causalmmm_nauprc_masked": float(np.mean(metrics.nauprc(cm.edge_scores, truth, mask))),
            "causalmmm_final20_auroc": cm.final20_auroc(),
            "causalmmm_edges_per_shop": float(cm_hard.sum((1, 2)).mean()),
        },
    }


def train_all(k, prep: dict, cfg: dict, labels) -> dict:
    dcfg = dp.DecoderConfig(**cfg["decoder"])
    graphs = {
        "empty": "empty",
        "full": "full",
        "oracle": prep["truth"],
        "posterior": prep["post"],
        "hard": prep["hard"],
        "causalmmm_graph": prep["cm_hard"],
        "dense": None,
    }
    out = {}
    for label, kk in zip(labels, jax.random.split(k, len(labels)), strict=True):
        c = dcfg.replace(architecture="dense") if label == "dense" else dcfg
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[label] = train_decoder(kk, prep["panel"], graph=graphs[label], config=c, label=label)
    return out


def fingerprint(cfg: dict, fast: bool) -> dict:
    """What decides a seed's numbers (``seed_runs`` reuses a saved seed only when this is unchanged): the settings
    and the full configs they expand to, defaults included."""
    return {
        "fast": fast,
        "settings": cfg,
        "stage1_config": dp.Stage1Config(**cfg["stage1"]).to_dict(),
        "decoder_config": dp.DecoderConfig(**cfg["decoder"]).to_dict(),
        "causalmmm_config": causalmmm_config(fast, leak_free=True).to_dict(),
    }


def run_seed(seed: int, cfg: dict, fast: bool) -> dict:
    prep = prepare(seed, cfg, fast)
    panel, truth = prep["panel"], prep["truth"]
    k_tr, k_ev, k_cm = jax.random.split(key(seed, 1), 3)
    t = time.perf_counter()
    decs = train_all(k_tr, prep, cfg, DECODERS)
    train_s = time.perf_counter() - t
    post_stack = as_graph_stack(
        prep["post"], panel.n_nodes, rng_key=key(seed, 2), n_samples=cfg["n_samples"], n_shops=panel.n_shops
    )
    own = {
        "empty": "empty",
        "full": "full",
        "oracle": truth[None],
        "posterior": post_stack,
        "hard": prep["hard"][None],
        "causalmmm_graph": prep["cm_hard"][None],
        "dense": "empty",
    }
    rows = {}
    for kk, label in zip(jax.random.split(k_ev, len(DECODERS)), DECODERS, strict=True):
        g = own[label]
        mse = evaluate_mse(decs[label], panel, g, horizon=7)
        sw = graph_swap(
            kk, decs[label], panel, truth=truth, graphs={**_DROP, "own": g}, n_windows=cfg["n_windows"]
        )
        rows[label] = {
            "mse7_target": float(np.mean(mse["target"])),
            "mse7_all": float(np.mean(mse["all"])),
            "ar_cig_nauprc": sw.value("own"),
            "ar_cig_auroc": sw.value("own", "auroc"),
        }
    # CausalMMM's own decoder under its own learned graphs, on the same test windows
    cm_dec, cm_panel, g = prep["cm"].decoder, causalmmm_panel(prep["cm"], panel), prep["cm_hard"][None]
    mse = evaluate_mse(cm_dec, cm_panel, g, horizon=7)
    sw = graph_swap(
        k_cm, cm_dec, cm_panel, truth=truth, graphs={**_DROP, "own": g}, n_windows=cfg["n_windows"]
    )
    rows["causalmmm_own"] = {
        "mse7_target": float(np.mean(mse["target"])),
        "mse7_all": float(np.mean(mse["all"])),
        "ar_cig_nauprc": sw.value("own"),
        "ar_cig_auroc": sw.value("own", "auroc"),
    }
    return {**prep["info"], "train_seconds": train_s, "decoders": rows}


def aggregate(runs) -> dict:
    return {
        label: {
            m: mean_sd([r["decoders"][label][m] for r in runs])
            for m in ("mse7_target", "mse7_all", "ar_cig_nauprc", "ar_cig_auroc")
        }
        for label in runs[0]["decoders"]
    }


def checks(agg) -> dict:
    o = agg["oracle"]["mse7_target"][0]
    return {
        "mse_within_20pct_of_oracle": bool(
            agg["empty"]["mse7_target"][0] <= 1.2 * o and agg["full"]["mse7_target"][0] <= 1.2 * o
        ),
        "oracle_trained_nauprc": bool(agg["oracle"]["ar_cig_nauprc"][0] >= 0.7),
        "empty_full_nauprc_low": bool(
            agg["empty"]["ar_cig_nauprc"][0] <= 0.1 and agg["full"]["ar_cig_nauprc"][0] <= 0.1
        ),
        "posterior_beats_causalmmm": bool(
            agg["posterior"]["ar_cig_nauprc"][0] > agg["causalmmm_own"]["ar_cig_nauprc"][0]
        ),
    }


def markdown(runs, agg, chk, cfg, fast) -> str:
    paper = {
        "empty": PAPER["no_graph_nauprc"],
        "full": PAPER["full_graph_nauprc"],
        "oracle": PAPER["oracle_nauprc"],
    }
    lines = [
        f"Seeds {[r['seed'] for r in runs]} ({'--fast' if fast else 'full'} mode). Settings: `{cfg}`. "
        "MSE@7: target, standardised units, every test window (posterior: mean over posterior samples). "
        "AR-CIG nAUPRC: per-shop truth over the support mask, under the decoder's own training graph. "
        "Timings on a shared, contended machine.",
        "",
        "| decoder (training graph) | MSE@7 target | MSE@7 all | AR-CIG nAUPRC | AR-CIG AUROC | paper nAUPRC |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in agg.items():
        lines.append(
            f"| {LABELS[label]} | {f(m['mse7_target'], 4)} | {f(m['mse7_all'], 4)} | {f(m['ar_cig_nauprc'])} | "
            f"{f(m['ar_cig_auroc'])} | {paper.get(label, '—')} |"
        )
    s = {k: mean_sd([r[k] for r in runs]) for k in runs[0] if k.startswith(("stage1_pip", "causalmmm_"))}
    lines += [
        "",
        f"Edge scores against the per-shop truth (support mask): Stage-1 PIP AUROC {f(s['stage1_pip_auroc'])}, "
        f"nAUPRC {f(s['stage1_pip_nauprc'])}; CausalMMM (leak-free) AUROC {f(s['causalmmm_auroc_masked'])}, "
        f"nAUPRC {f(s['causalmmm_nauprc_masked'])}, Final-20 AUROC (all pairs) {f(s['causalmmm_final20_auroc'])}, "
        f"{f(s['causalmmm_edges_per_shop'], 1)} edges per shop with P(edge) > 0.5. Non-degenerate simulations: "
        f"{sum(r['non_degenerate'] for r in runs)}/{len(runs)}.",
        "",
        targets_md(TARGETS, chk),
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parser(__doc__, resumable=True, shop_linear=True).parse_args(argv)
    name, cfg = shop_linear_variant(NAME, settings(args.fast), args)
    n_seeds = seed_count(args)
    t0 = time.perf_counter()
    runs, seed_s, resumed = seed_runs(
        name,
        n_seeds,
        lambda s: run_seed(s, cfg, args.fast),
        fingerprint=fingerprint(cfg, args.fast),
        out=out_dir(args),
        resume=args.resume,
        report=lambda s, r: print(
            f"seed {s}: "
            + ", ".join(
                f"{k} mse {v['mse7_target']:.4f} nauprc {v['ar_cig_nauprc']:.3f}"
                for k, v in r["decoders"].items()
            ),
            flush=True,
        ),
    )
    agg = aggregate(runs)
    chk = checks(agg)
    md = markdown(runs, agg, chk, cfg, args.fast)
    payload = {
        "fast": args.fast,
        "settings": cfg,
        "causalmmm_config": causalmmm_config(args.fast, leak_free=True).to_dict(),
        "paper": PAPER,
        "targets": TARGETS,
        "checks": chk,
        "aggregate": agg,
        "runs": runs,
    }
    md = write_seeded(name, payload, md, t0=t0, seed_seconds=seed_s, resumed=resumed, out=out_dir(args))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
