"""Wall time and peak memory of each stage and method at the default sizes, and the scaling of Stage 1 and AR-CIG.

Part 1 (default funnel: R = 10 shops, d = 8, T = 100, L = 7, linear): simulate, Stage 1 (compile / sampling), the
VAR-Granger baseline, the CausalMMM port (faithful; seconds per epoch after the first), graph-safe decoder training
on posterior samples, AR-CIG over 200 posterior graph samples (first call with compilation, then compiled) and the
frozen graph-swap. Peak memory per stage: the process's peak RSS (VmHWM) is reset before each stage through
``/proc/self/clear_refs`` (Linux >= 4.0), so each number is the process's peak *during* that stage — which still
includes what the process holds from earlier stages (JAX runtime, compiled code, caches); where the reset is not
allowed the process-wide peak so far is reported and flagged.

Part 2 (scaling): Stage 1 fit seconds after compilation (a second fit of the same shapes, every sampler piece
cached: warmup and sampling; the first call's ``compile_s`` does not cover all compilation) and AR-CIG
seconds after compilation (an untrained graph-safe decoder of the default width has the trained one's cost; 20
random graphs, H = 7, every window of the panel) as d, T and the number of shops grow one at a time from a base;
a least-squares slope of log(seconds) on log(size) per axis, plotted in ``speed_scaling.png`` next to the results.

Usage: ``python benchmarks/speed.py [--fast] [--out DIR]``. Timings depend on the machine's load; they were taken on a
shared, contended 2-core machine unless the results say otherwise.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _common import peak_rss_gb  # noqa: E402
from _suite import (  # noqa: E402
    causalmmm_config,
    key,
    out_dir,
    parser,
    run_causalmmm,
    run_granger,
    run_stage1,
    stage1_config,
    targets_md,
    write,
)

import dice_prob as dp  # noqa: E402
from dice_prob.data import simulate  # noqa: E402
from dice_prob.data.panel import Panel  # noqa: E402
from dice_prob.diagnostics.graph_swap import graph_swap  # noqa: E402
from dice_prob.diagnostics.influence import influence  # noqa: E402
from dice_prob.inference.train import train_decoder  # noqa: E402
from dice_prob.models.decoder import GraphSafeDecoder  # noqa: E402

NAME = "speed"
TARGETS = {
    "stage1_fit_s": "Stage 1 fit after compilation (warmup + sampling) at the default sizes, per shop, <= 15 s "
    "(stage1_recovery's per-shop target)",
    "ar_cig_200_s": "AR-CIG over 200 posterior samples, after compilation, <= 10 s",
    "peak_rss_gb": "peak RSS of every stage <= 4 GB",
}
_INTERMEDIATES = {6: 1, 8: 2, 12: 3, 20: 5}


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _vm_hwm_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return peak_rss_gb()


def stage(name: str, fn, out: dict):
    """Run ``fn()``, recording wall seconds and the peak RSS during the call under ``out[name]``."""
    reset = _reset_peak()
    t0 = time.perf_counter()
    res = fn()
    out[name] = {"wall_s": time.perf_counter() - t0, "peak_rss_gb": _vm_hwm_gb(), "peak_is_per_stage": reset}
    print(f"[speed] {name}: {out[name]['wall_s']:.1f} s, peak {out[name]['peak_rss_gb']:.2f} GB", flush=True)
    return res


def funnel(n_shops: int, n_nodes: int, n_steps: int, seed: int = 0):
    n_int = _INTERMEDIATES.get(n_nodes, max(1, round((n_nodes - 1) / 4)))
    return simulate.funnel(
        key(9000, seed),
        n_shops=n_shops,
        n_steps=n_steps,
        n_lags=7,
        n_channels=n_nodes - 1 - n_int,
        n_intermediate=n_int,
    )


def default_sizes(fast: bool) -> dict:
    if fast:
        return {"n_shops": 4, "n_nodes": 8, "n_steps": 100}
    return {"n_shops": 10, "n_nodes": 8, "n_steps": 100}


def stages(fast: bool) -> dict:
    sz = default_sizes(fast)
    out: dict = {}
    sim = stage("simulate", lambda: funnel(sz["n_shops"], sz["n_nodes"], sz["n_steps"]), out)
    panel = sim.panel
    s1cfg = stage1_config("linear", fast)
    post, _, warns = stage("stage1", lambda: run_stage1(key(1), panel, s1cfg), out)
    out["stage1"].update(post.timing, convergence_warning=bool(warns))
    stage("stage1_compiled", lambda: run_stage1(key(11), panel, s1cfg), out)
    stage("var_granger", lambda: run_granger(panel, 7), out)
    cmcfg = causalmmm_config(fast, leak_free=False)
    res, _ = stage("causalmmm", lambda: run_causalmmm(key(2), panel, cmcfg), out)
    ep = np.asarray(res.history["seconds"], dtype=float)
    out["causalmmm"].update(
        epochs=len(ep),
        first_epoch_s=float(ep[0]),
        epoch_s_after_first=float(np.median(ep[1:])) if len(ep) > 1 else None,
        hidden=cmcfg.encoder_hidden,
    )
    dcfg = dp.DecoderConfig(progress_bar=False, **({"max_epochs": 15, "patience": 5} if fast else {}))

    def train():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train_decoder(key(3), panel, graph=post, config=dcfg, label="posterior")

    dec = stage("decoder_train", train, out)
    out["decoder_train"].update(epochs_run=dec.history.get("epochs_run"), max_epochs=dcfg.max_epochs)
    n_samples = 50 if fast else 200
    g = post.sample_graphs(key(4), n_samples)
    g = np.asarray(g, dtype=float)
    stage("ar_cig_first_call", lambda: influence(dec, panel, g, horizon=7, n_windows=32), out)
    stage("ar_cig_compiled", lambda: influence(dec, panel, g, horizon=7, n_windows=32), out)
    out["ar_cig_compiled"].update(n_graphs=int(g.shape[0]), n_windows=32, horizon=7, n_sources=panel.n_nodes)
    stage(
        "graph_swap",
        lambda: graph_swap(
            key(5),
            dec,
            panel,
            truth=sim.graphs,
            graphs={"posterior": post},
            n_samples=n_samples,
            n_null=5 if fast else 20,
            n_windows=32,
        ),
        out,
    )
    return {"sizes": sz, "stage1_config": s1cfg.to_dict(), "causalmmm_config": cmcfg.to_dict(), "stages": out}


def scaling_grid(fast: bool) -> dict:
    if fast:
        # the base point is the stage table's panel shape and Stage-1 budget: its compiled sampler is re-used. One
        # axis only: every new point compiles a new sampler (~25 s on 2 cores), and --fast is the CI smoke run
        base = {"n_nodes": 8, "n_steps": 100, "n_shops": 4}
        axes = {"n_steps": (60, 100)}
    else:
        base = {"n_nodes": 8, "n_steps": 100, "n_shops": 4}
        axes = {"n_nodes": (8, 12, 20), "n_steps": (60, 100, 200), "n_shops": (1, 4, 16)}
    return {"base": base, "axes": axes}


def scaling(fast: bool) -> dict:
    grid = scaling_grid(fast)
    base, axes = grid["base"], grid["axes"]
    s1cfg = stage1_config("linear", fast)
    cache: dict = {}

    def point(sz):
        k = (sz["n_shops"], sz["n_nodes"], sz["n_steps"])
        if k in cache:
            return cache[k]
        sim = funnel(sz["n_shops"], sz["n_nodes"], sz["n_steps"], seed=1)
        post, wall, _ = run_stage1(key(6), sim.panel, s1cfg)
        _, fit, _ = run_stage1(key(8), sim.panel, s1cfg)  # same shapes: everything compiled
        p = sim.panel
        bare = Panel(p.values, nodes=p.nodes, roles=p.roles, train_steps=p.train_steps)
        d = p.n_nodes
        dec = GraphSafeDecoder(d, hidden_size=32, message_size=16, embed_size=8, key=key(7))
        rng = np.random.default_rng(0)
        graphs = (rng.random((20, d, d)) < 0.25) * np.asarray(p.support_mask(), dtype=float)
        t0 = time.perf_counter()
        r = influence(dec, bare, graphs, horizon=7, n_windows=None, split="all", history=21)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        influence(dec, bare, graphs, horizon=7, n_windows=None, split="all", history=21)
        ar = time.perf_counter() - t0
        cache[k] = {
            **sz,
            "stage1_fit_s": fit,
            "stage1_first_call_s": wall,
            "stage1_sample_s": float(post.timing["sample_s"]),
            "stage1_compile_s": float(post.timing["compile_s"]),
            "stage1_wall_s": wall,
            "ar_cig_s": ar,
            "ar_cig_first_call_s": first,
            "ar_cig_n_windows": int(r.scores.shape[1]) if np.ndim(r.scores) >= 4 else None,
        }
        print(f"[speed] scaling {k}: stage1 {cache[k]['stage1_fit_s']:.2f} s, AR-CIG {ar:.3f} s", flush=True)
        return cache[k]

    out = {"grid": grid, "stage1_config": s1cfg.to_dict(), "axes": {}}
    for axis, values in axes.items():
        pts = [point({**base, axis: v}) for v in values]
        x = np.log(np.asarray(values, dtype=float))
        fit = {}
        for m in ("stage1_fit_s", "ar_cig_s"):
            y = np.log(np.asarray([p[m] for p in pts], dtype=float))
            fit[m] = float(np.polyfit(x, y, 1)[0])
        out["axes"][axis] = {"values": list(values), "points": pts, "loglog_slope": fit}
    return out


def plot(sc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_axes = len(sc["axes"])
    fig, axs = plt.subplots(1, n_axes, figsize=(4 * n_axes, 3.6), squeeze=False)
    for ax, (axis, a) in zip(axs[0], sc["axes"].items(), strict=True):
        for m, label in (("stage1_fit_s", "Stage 1 fit"), ("ar_cig_s", "AR-CIG (20 graphs)")):
            ax.loglog(
                a["values"],
                [p[m] for p in a["points"]],
                "o-",
                label=f"{label}, slope {a['loglog_slope'][m]:.2f}",
            )
        ax.set_xlabel(axis)
        ax.set_ylabel("seconds (after compilation)")
        ax.legend(fontsize=7)
    fig.suptitle("dice_prob cost scaling (one axis at a time)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def checks(st: dict) -> dict:
    s = st["stages"]
    return {
        "stage1_fit_s": bool(s["stage1_compiled"]["wall_s"] / st["sizes"]["n_shops"] <= 15.0),
        "ar_cig_200_s": bool(s["ar_cig_compiled"]["wall_s"] <= 10.0)
        if s["ar_cig_compiled"]["n_graphs"] >= 200
        else None,
        "peak_rss_gb": bool(max(v["peak_rss_gb"] for v in s.values()) <= 4.0),
    }


def markdown(st, sc, chk, png, fast) -> str:
    s = st["stages"]
    lines = [
        f"{'--fast' if fast else 'full'} mode. Default sizes {st['sizes']}. Timings on a shared, contended machine "
        "unless stated otherwise; peak RSS is the process's peak during each stage "
        f"({'reset per stage' if all(v['peak_is_per_stage'] for v in s.values()) else 'NOT reset: cumulative'}).",
        "",
        "## Stages at the default sizes",
        "",
        "| stage / method | wall s | peak RSS GB | detail |",
        "|---|---|---|---|",
    ]
    detail = {
        "stage1": lambda v: (
            f"first call: compile_s {v['compile_s']:.1f} s, sampling {v['sample_s']:.1f} s; "
            "stage1_compiled = the same fit again, compiled"
        ),
        "causalmmm": lambda v: (
            f"{v['epochs']} epochs, hidden {v['hidden']}, first epoch {v['first_epoch_s']:.1f} s, "
            + (f"then {v['epoch_s_after_first']:.2f} s/epoch" if v["epoch_s_after_first"] else "")
        ),
        "decoder_train": lambda v: f"{v['epochs_run']} of max {v['max_epochs']} epochs",
        "ar_cig_compiled": lambda v: (
            f"{v['n_graphs']} graphs x {v['n_sources']} sources x {v['n_windows']} windows, "
            f"H = {v['horizon']}"
        ),
    }
    for name, v in s.items():
        lines.append(
            f"| {name} | {v['wall_s']:.2f} | {v['peak_rss_gb']:.2f} | {detail.get(name, lambda _: '')(v)} |"
        )
    lines += [
        "",
        f"## Scaling (base {sc['grid']['base']}; seconds after compilation)",
        "",
        *(
            [
                "--fast: one axis (n_steps), two points, short fits on a contended machine — the slope is a smoke "
                "test of the code path, not a measurement; the full run scales d, T and the number of shops.",
                "",
            ]
            if fast
            else []
        ),
        f"![scaling]({png.name})",
        "",
        "| axis | values | Stage 1 fit s | AR-CIG s | log-log slope Stage 1 | log-log slope AR-CIG |",
        "|---|---|---|---|---|---|",
    ]
    for axis, a in sc["axes"].items():
        lines.append(
            f"| {axis} | {a['values']} | {[round(p['stage1_fit_s'], 2) for p in a['points']]} | "
            f"{[round(p['ar_cig_s'], 3) for p in a['points']]} | {a['loglog_slope']['stage1_fit_s']:.2f} | "
            f"{a['loglog_slope']['ar_cig_s']:.2f} |"
        )
    lines += ["", targets_md(TARGETS, chk)]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parser(__doc__).parse_args(argv)
    # first-call timings are compile timings: never load programs another run left in a persistent cache
    jax.config.update("jax_enable_compilation_cache", False)
    out = out_dir(args)
    t0 = time.perf_counter()
    st = stages(args.fast)
    sc = scaling(args.fast)
    png = out / "speed_scaling.png"
    plot(sc, png)
    chk = checks(st)
    md = markdown(st, sc, chk, png, args.fast)
    payload = {"fast": args.fast, "targets": TARGETS, "checks": chk, **st, "scaling": sc, "plot": png.name}
    write(NAME, payload, md, wall_s=time.perf_counter() - t0, out=out)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
