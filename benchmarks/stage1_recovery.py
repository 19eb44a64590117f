"""Stage 1 graph recovery, calibration and speed (issue 2, "Must show").

python benchmarks/stage1_recovery.py [--fast]

Every fit uses the default ``Stage1Config`` (priors not tuned to the simulators) except ``mode`` (``mmm`` on the
mmm funnel) and, with ``--fast``, fewer shops/seeds/draws. Timings on a shared machine are contended.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import command, fmt, mean_sd, now_iso, peak_rss_gb, write_results  # noqa: E402
from _suite import run_granger  # noqa: E402

import dice_prob as dp  # noqa: E402
from dice_prob.data import io as dio  # noqa: E402
from dice_prob.data import simulate  # noqa: E402
from dice_prob.diagnostics import metrics  # noqa: E402
from dice_prob.errors import ConvergenceWarning  # noqa: E402
from dice_prob.inference.stage1 import fit_graph  # noqa: E402


def _fit(key, panel, cfg):
    """Fit, recording (not hiding) convergence warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t0 = time.perf_counter()
        post = fit_graph(key, panel, config=cfg)
        wall = time.perf_counter() - t0
    msgs = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    return post, wall, msgs


def _conv(post) -> dict:
    c = post.convergence
    return {k: c[k] for k in ("max_r_hat", "min_ess", "n_divergences", "ok")}


def recovery(mode: str, seeds, n_shops: int, cfg) -> dict:
    rows = []
    for s in seeds:
        sim = simulate.funnel(jax.random.key(100 + s), n_shops=n_shops, n_steps=100, n_lags=7, mode=mode)
        post, wall, warns = _fit(jax.random.key(s), sim.panel, cfg)
        m = sim.support_mask
        au = metrics.auroc(post.pip, sim.graphs, mask=m)
        na = metrics.nauprc(post.pip, sim.graphs, mask=m)
        rows.append(
            {
                "seed": s,
                "auroc_per_shop": np.asarray(au).tolist(),
                "nauprc_per_shop": np.asarray(na).tolist(),
                "auroc": float(np.mean(au)),
                "nauprc": float(np.mean(na)),
                "wall_s": wall,
                "timing": post.timing,
                "convergence": _conv(post),
                "convergence_warning": bool(warns),
            }
        )
        print(
            f"[{mode} data, {cfg.mode}/{cfg.channel_transform}] seed {s}: AUROC {rows[-1]['auroc']:.3f} nAUPRC {rows[-1]['nauprc']:.3f} ({wall:.0f} s)"
        )
    return {
        "rows": rows,
        "auroc_mean": mean_sd([r["auroc"] for r in rows])[0],
        "auroc_sd": mean_sd([r["auroc"] for r in rows])[1],
        "nauprc_mean": mean_sd([r["nauprc"] for r in rows])[0],
        "nauprc_sd": mean_sd([r["nauprc"] for r in rows])[1],
        "n_shops": n_shops,
        "seeds": list(seeds),
    }


def sparse(n_shops: int, cfg) -> dict:
    sim = simulate.sparse_target(jax.random.key(7), n_shops=n_shops)
    n_lags = int(sim.info.get("n_lags", 7))
    post, wall, warns = _fit(jax.random.key(8), sim.panel, cfg.replace(n_lags=n_lags))
    t = sim.panel.target_index
    g = sim.graphs
    m = sim.support_mask
    # what the data identify without a prior: the VAR-Granger F-test (all nodes' lags) on the same training window
    _, pv, _, used = run_granger(sim.panel, n_lags, m)
    all_ok, per_parent, gr_ok, gr_parent, parents_table = [], [], [], [], []
    for r in range(n_shops):
        parents = np.flatnonzero(g[r][:, t])
        pips = post.pip[r][parents, t]
        all_ok.append(bool(np.all(pips > 0.5)))
        per_parent += (pips > 0.5).tolist()
        gp = pv[r][parents, t]
        gr_ok.append(bool(np.all(gp < 0.05)))
        gr_parent += (gp < 0.05).tolist()
        parents_table += [
            {"shop": r, "parent": sim.panel.nodes[q], "pip": float(a), "granger_p": float(b)}
            for q, a, b in zip(parents, pips, gp, strict=True)
        ]
    return {
        "share_shops_all_parents_pip_gt_0.5": float(np.mean(all_ok)),
        "share_parents_pip_gt_0.5": float(np.mean(per_parent)),
        "granger_share_shops_all_parents_p_lt_0.05": float(np.mean(gr_ok)),
        "granger_share_parents_p_lt_0.05": float(np.mean(gr_parent)),
        "granger_conditioning": used,
        "target_parents": parents_table,
        "auroc": float(np.mean(metrics.auroc(post.pip, g, mask=m))),
        "non_degenerate": sim.info.get("non_degenerate"),
        "n_shops": n_shops,
        "wall_s": wall,
        "convergence": _conv(post),
        "convergence_warning": bool(warns),
    }


def causalmmm_layout(n_shops: int, cfg) -> dict:
    sim = simulate.funnel(jax.random.key(300), n_shops=n_shops, n_steps=100, n_lags=7, mode="linear")
    with tempfile.TemporaryDirectory() as tmp:
        dio.write_causalmmm(tmp, sim.panel, sim.graphs)
        panel, graphs = dio.read_causalmmm(tmp)
    post, wall, warns = _fit(jax.random.key(301), panel, cfg)
    all_pairs = metrics.auroc(post.pip, graphs)  # CausalMMM: all N(N-1) = 56 off-diagonal pairs per shop
    masked = metrics.auroc(post.pip, graphs, mask=post.support_mask)
    return {
        "auroc_all_offdiag_pairs": float(np.mean(all_pairs)),
        "auroc_all_offdiag_pairs_sd": float(np.std(all_pairs, ddof=1)),
        "auroc_support_masked": float(np.mean(masked)),
        "auroc_support_masked_sd": float(np.std(masked, ddof=1)),
        "n_pairs_all": int(panel.n_nodes * (panel.n_nodes - 1)),
        "n_pairs_masked": int(post.support_mask.sum()),
        "n_shops": n_shops,
        "wall_s": wall,
        "convergence_warning": bool(warns),
    }


def calibration(n_shops: int, cfg) -> dict:
    sim = simulate.funnel(jax.random.key(500), n_shops=n_shops, n_steps=100, n_lags=7, mode="linear")
    post, wall, warns = _fit(jax.random.key(501), sim.panel, cfg)
    m = sim.support_mask
    ece = metrics.expected_calibration_error(post.pip, sim.graphs, mask=m)
    tab = metrics.calibration_table(post.pip, sim.graphs, mask=m)
    return {
        "ece": float(ece),
        "n_shops": n_shops,
        "table": tab.to_dict(orient="records"),
        "wall_s": wall,
        "convergence_warning": bool(warns),
    }


def _tree_stats(post) -> dict:
    c = post.convergence
    keys = ("mean_tree_steps", "lockstep_tree_steps", "max_tree_depth_hits", "nuts_edges")
    return {k: c[k] for k in keys} | _conv(post)


def _sweep_cost(panel, cfg, lanes: int, n_calls: int = 20) -> float:
    """Seconds per lane of one collapsed edge-Gibbs sweep over the edge blocks, with ``lanes`` independent lanes
    in one vmapped, jitted call: its fall from 2 lanes to many is what batching can save on this machine. The
    slab sd is held fixed here, so the learned-slab Metropolis steps of a default fit (a few more factorisations
    per iteration) are not included: a lower bound on the sweep's share of an iteration."""
    import jax.numpy as jnp

    from dice_prob.models import stage1 as s1

    steps = panel.train_steps
    d = s1.prepare_data(
        np.asarray(panel.values)[:1, :steps], list(panel.roles), panel.support_mask(), n_lags=cfg.n_lags
    )
    st = d.structure
    feats = s1.edge_features(d.xlag, st)
    coef = jnp.zeros((st.n_groups, st.n_edges, cfg.n_lags))
    sigma = jnp.ones(d.y.shape[::2])

    def sweep(key, feats, y, ylag):
        return s1.gibbs_edges_collapsed(
            key, feats, coef, y, ylag, sigma, jnp.array([0.3]), st, cfg.slab_scale, cfg.spike_scale
        )

    f = jax.jit(jax.vmap(sweep))
    keys = jax.random.split(jax.random.key(0), lanes)
    args = [jnp.broadcast_to(x, (lanes,) + x.shape) for x in (feats, d.y, d.ylag)]
    jax.block_until_ready(f(keys, *args))  # compile
    t0 = time.perf_counter()
    for _ in range(n_calls):
        jax.block_until_ready(f(keys, *args))
    return (time.perf_counter() - t0) / n_calls / lanes


def speed(n_batch: int, cfg) -> dict:
    load_before = os.getloadavg()
    sim = simulate.funnel(jax.random.key(900), n_shops=n_batch, n_steps=100, n_lags=7, mode="linear")
    one = sim.panel.subset([0])
    post, first_wall, _ = _fit(jax.random.key(0), one, cfg)
    compile_single = post.timing["compile_s"]
    post, single_wall, _ = _fit(jax.random.key(1), one, cfg)  # compiled: cache hit
    # batch: compile once, then time one compiled vmapped call
    postb, _, _ = _fit(jax.random.key(2), sim.panel, cfg)
    compile_batch = postb.timing["compile_s"]
    rss_before = peak_rss_gb()
    postb, batch_wall, _ = _fit(jax.random.key(3), sim.panel, cfg)
    rss_batch = peak_rss_gb()
    t0 = time.perf_counter()
    for r in range(n_batch):
        _fit(jax.random.key(10 + r), sim.panel.subset([r]), cfg)
    seq_wall = time.perf_counter() - t0
    sweep_lanes = 2 * n_batch
    return {
        "sweep_s_per_lane_2_lanes": _sweep_cost(sim.panel, cfg, 2),
        f"sweep_s_per_lane_{sweep_lanes}_lanes": _sweep_cost(sim.panel, cfg, sweep_lanes),
        "sweep_lanes": sweep_lanes,
        "iterations_per_fit": cfg.num_warmup + cfg.num_samples,
        "single_fit": _tree_stats(post),
        "batch_fit": _tree_stats(postb),
        "load_avg_1_5_15_before": list(load_before),
        "load_avg_1_5_15_after": list(os.getloadavg()),
        "cores_usable_by_process": len(os.sched_getaffinity(0)),
        "per_shop_fit_s_after_compile": single_wall,
        "compile_s_single": compile_single,
        "first_call_s_single": first_wall,
        "n_batch": n_batch,
        "batch_vmapped_s_after_compile": batch_wall,
        "compile_s_batch": compile_batch,
        "sequential_s": seq_wall,
        "speedup_vmapped_vs_sequential": seq_wall / batch_wall,
        "peak_rss_gb_process_after_batch": rss_batch,
        "peak_rss_gb_process_before_batch": rss_before,
        "draws": f"{cfg.num_chains} chains x {cfg.num_warmup} warmup + {cfg.num_samples} draws",
    }


SECTIONS = (
    "funnel_linear",
    "funnel_mmm",
    "funnel_mmm_log1p",
    "sparse_target",
    "causalmmm_layout",
    "calibration",
    "speed",
)
# funnel rows: (section, simulator mode, AUROC target, the Stage-1 model fitted)
FUNNEL_ROWS = (
    ("funnel_linear", "linear", 0.97, "mode='linear'"),
    ("funnel_mmm", "mmm", 0.93, "mode='mmm' (carryover kernel + Hill)"),
    ("funnel_mmm_log1p", "mmm", 0.93, "mode='linear', channel_transform='log1p', lag_decay=1"),
)


def _markdown(res: dict, base) -> str:
    def row(name, value, target, ok):
        return f"| {name} | {value} | {target} | {'yes' if ok else '**no**'} |"

    md = [
        "Stage 1 (spike-and-slab NUTS + exact edge Gibbs) graph recovery; default `Stage1Config` "
        f"({base.num_chains} chains x {base.num_warmup} + {base.num_samples}), fitted on each panel's training "
        "window (first 80 % of steps). Timings were measured on a shared, contended 2-core machine.",
        "",
        "| check | value (mean ± sd over seeds) | target | met |",
        "|---|---|---|---|",
    ]
    for key, mode, tgt, model in FUNNEL_ROWS:
        b = res.get(key)
        if not b:
            continue  # section not run into this results file (e.g. --only speed)
        if "error" in b:
            md.append(row(f"funnel {mode} ({key})", f"failed ({b['error']})", "", False))
            continue
        md.append(
            row(
                f"funnel {mode} AUROC, Stage 1 {model} (d=8, T=100, L=7, {b['n_shops']} shops x "
                f"{len(b['seeds'])} seeds)",
                fmt([r["auroc"] for r in b["rows"]]),
                f">= {tgt}",
                b["auroc_mean"] >= tgt,
            )
        )
        md.append(
            row(
                f"funnel {mode} nAUPRC",
                fmt([r["nauprc"] for r in b["rows"]]),
                ">= 0.75" if mode == "linear" else "report",
                b["nauprc_mean"] >= 0.75 or mode == "mmm",
            )
        )
    sp = res.get("sparse_target", {})
    if "error" not in sp and sp:
        md.append(
            row(
                f"sparse_target: shops whose target parents all get PIP > 0.5 ({sp['n_shops']} shops)",
                f"{sp['share_shops_all_parents_pip_gt_0.5']:.2f} (per parent {sp['share_parents_pip_gt_0.5']:.2f})",
                ">= 0.90",
                sp["share_shops_all_parents_pip_gt_0.5"] >= 0.9,
            )
        )
        if "granger_share_parents_p_lt_0.05" in sp:
            md.append(
                row(
                    "sparse_target, for scale: VAR-Granger F-test p < 0.05 on the same data (all parents / per parent)",
                    f"{sp['granger_share_shops_all_parents_p_lt_0.05']:.2f} "
                    f"(per parent {sp['granger_share_parents_p_lt_0.05']:.2f})",
                    "report",
                    True,
                )
            )
    cm = res.get("causalmmm_layout", {})
    if "error" not in cm and cm:
        md.append(
            row(
                f"CausalMMM layout AUROC, all {cm['n_pairs_all']} off-diagonal pairs ({cm['n_shops']} shops)",
                f"{cm['auroc_all_offdiag_pairs']:.3f} ± {cm['auroc_all_offdiag_pairs_sd']:.3f}",
                "report",
                True,
            )
        )
        md.append(
            row(
                f"CausalMMM layout AUROC, support-masked ({cm['n_pairs_masked']} pairs)",
                f"{cm['auroc_support_masked']:.3f} ± {cm['auroc_support_masked_sd']:.3f}",
                "report",
                True,
            )
        )
    cal = res.get("calibration", {})
    if "error" not in cal and cal:
        md.append(row(f"PIP ECE ({cal['n_shops']} shops)", f"{cal['ece']:.3f}", "<= 0.1", cal["ece"] <= 0.1))
    spd = res.get("speed", {})
    if "error" not in spd and spd:
        md += [
            row(
                "per-shop fit after compilation",
                f"{spd['per_shop_fit_s_after_compile']:.1f} s",
                "<= 15 s",
                spd["per_shop_fit_s_after_compile"] <= 15,
            ),
            row(
                "compile time (single shop / batch)",
                f"{spd['compile_s_single']:.1f} s / {spd['compile_s_batch']:.1f} s",
                "report",
                True,
            ),
            row(
                f"{spd['n_batch']} shops vmapped vs sequential",
                f"{spd['batch_vmapped_s_after_compile']:.1f} s vs {spd['sequential_s']:.1f} s "
                f"(x{spd['speedup_vmapped_vs_sequential']:.1f})",
                ">= 4x",
                spd["speedup_vmapped_vs_sequential"] >= 4,
            ),
            row(
                "peak RSS of the process after the batch",
                f"{spd['peak_rss_gb_process_after_batch']:.2f} GB",
                "<= 4 GB",
                spd["peak_rss_gb_process_after_batch"] <= 4,
            ),
        ]
        if "batch_fit" in spd:
            b, one = spd["batch_fit"], spd["single_fit"]
            la, lb = spd["load_avg_1_5_15_before"], spd["load_avg_1_5_15_after"]
            md += [
                "",
                f"Speed run: NUTS moves the edge coefficients: {b['nuts_edges']}. Leapfrog steps per transition: "
                f"single shop {one['mean_tree_steps']:.1f} (mean over chains); batch mean per lane "
                f"{b['mean_tree_steps']:.1f}, lockstep cost (mean over draws of the longest of the "
                f"{2 * spd['n_batch']} lanes) {b['lockstep_tree_steps']:.1f}; transitions at max_tree_depth: "
                f"{b['max_tree_depth_hits']}. Machine load average (1/5/15 min) {la[0]:.1f}/{la[1]:.1f}/"
                f"{la[2]:.1f} before and {lb[0]:.1f}/{lb[1]:.1f}/{lb[2]:.1f} after the section on "
                f"{os.cpu_count()} cores: {'contended' if max(la[0], lb[0]) > 1.5 else 'quiet'}; the process could "
                f"use {spd.get('cores_usable_by_process', 'an unrecorded number of')} core(s). "
                "The speed-up is the ratio of two timings taken in the same process, one after the other.",
            ]
            if "sweep_lanes" in spd:
                n_l = spd["sweep_lanes"]
                one_s, many_s = spd["sweep_s_per_lane_2_lanes"], spd[f"sweep_s_per_lane_{n_l}_lanes"]
                per_iter = spd["per_shop_fit_s_after_compile"] / spd["iterations_per_fit"] / 2
                md += [
                    "",
                    f"Where the time goes: one collapsed edge-Gibbs sweep costs {one_s * 1e3:.2f} ms per lane with 2 "
                    f"lanes and {many_s * 1e3:.2f} ms per lane with {n_l} lanes in one vmapped call "
                    f"(x{one_s / many_s:.1f} from batching), against {per_iter * 1e3:.2f} ms per lane and "
                    "iteration for the whole single-shop fit (the sweep timed without the learned-slab "
                    "Metropolis steps, so its share is a lower bound). The sweep's work (a Cholesky factorisation and "
                    "triangular solves per edge block) grows with the number of lanes, so batching saves "
                    "dispatch overhead only, not compute, on 2 cores.",
                ]
    overridden = {
        k: v["config_overrides"]
        for k, v in res.items()
        if k in SECTIONS and isinstance(v, dict) and v.get("config_overrides")
    }
    if overridden:
        md += ["", f"Stage1Config fields set on top of each section's configuration (`--set`): {overridden}"]
    errors = {k: v["error"] for k, v in res.items() if isinstance(v, dict) and "error" in v}
    if errors:
        md += ["", f"Sections that failed: {errors}"]
    md += [
        "",
        "Convergence per fit (max split r_hat / min ESS / divergences on W or beta, pi, edge probabilities):",
        "",
    ]
    for key, *_ in FUNNEL_ROWS:
        for r in res.get(key, {}).get("rows", []):
            c = r["convergence"]
            md.append(
                f"- {key} seed {r['seed']}: r_hat {c['max_r_hat']:.3f}, ESS {c['min_ess']:.0f}, "
                f"divergences {c['n_divergences']}, ConvergenceWarning {r['convergence_warning']}"
            )
    for key in ("sparse_target", "causalmmm_layout", "calibration"):
        b = res.get(key, {})
        if "convergence_warning" in b:
            md.append(f"- {key}: ConvergenceWarning {b['convergence_warning']}")
    return "\n".join(md)


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            out[field] = json.loads(value)
        except json.JSONDecodeError:
            out[field] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true", help="fewer shops, seeds and draws (CI smoke run)")
    ap.add_argument(
        "--only", default="", help=f"comma-separated subset of {SECTIONS}; merges into the results file"
    )
    ap.add_argument("--out", default="", help="results name (default stage1_recovery[_fast])")
    ap.add_argument("--merge", default="", help="merge the sections of another results JSON into this one")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a Stage1Config field for every section (VALUE parsed as JSON, else a string); repeatable",
    )
    ap.add_argument(
        "--seeds", default="", help="comma-separated seeds of the funnel sections (default 0,1,2; --fast: 0)"
    )
    args = ap.parse_args()
    t_start = time.perf_counter()
    overrides = _overrides(args.set)
    base = dp.Stage1Config(progress_bar=False).replace(**overrides)
    if args.fast:
        base = base.replace(num_warmup=150, num_samples=150)
        seeds, n_shops, n_sparse, n_causal, n_cal, n_speed = [0], 4, 4, 4, 8, 4
    else:
        seeds, n_shops, n_sparse, n_causal, n_cal, n_speed = [0, 1, 2], 10, 10, 10, 50, 32
    if args.seeds:
        seeds = [int(x) for x in args.seeds.split(",") if x]
    name = args.out or ("stage1_recovery_fast" if args.fast else "stage1_recovery")
    wanted = [s for s in args.only.split(",") if s] or list(SECTIONS)
    if args.merge:
        wanted = []
    res = {}
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    if (args.only or args.merge) and path.is_file():
        res = {k: v for k, v in json.loads(path.read_text()).items() if k != "meta"}
    res.update({"fast": args.fast, "config": base.to_dict()})
    if args.merge:
        other = json.loads(Path(args.merge).read_text())
        res.update({k: v for k, v in other.items() if k in SECTIONS})
        write_results(name, res, _markdown(res, base), wall_s=None)
        return
    runners = {
        "funnel_linear": lambda: recovery("linear", seeds, n_shops, base),
        "funnel_mmm": lambda: recovery("mmm", seeds, n_shops, base.replace(mode="mmm")),
        "funnel_mmm_log1p": lambda: recovery(
            "mmm", seeds, n_shops, base.replace(channel_transform="log1p", lag_decay=1.0)
        ),
        "sparse_target": lambda: sparse(n_sparse, base),
        "causalmmm_layout": lambda: causalmmm_layout(n_causal, base),
        "calibration": lambda: calibration(n_cal, base),
        "speed": lambda: speed(n_speed, base),
    }
    for sec in wanted:
        t0 = time.perf_counter()
        try:
            res[sec] = runners[sec]()
        except Exception as exc:  # record and go on: one failing section must not lose the others
            res[sec] = {"error": f"{type(exc).__name__}: {exc}"}
        res[sec]["section_wall_s"] = time.perf_counter() - t0
        # per section: with --only, the file's meta records the last command, not the one that made each section
        res[sec]["command"] = command()
        res[sec]["date"] = now_iso()
        res[sec]["config_overrides"] = overrides
        write_results(name, res, _markdown(res, base), wall_s=time.perf_counter() - t_start)


if __name__ == "__main__":
    main()
