"""The demo's forecasts against the reference forecasts, with the panel centred per shop and pooled.

Runs the pipeline of ``dice-prob demo`` (embedded default data, ``demo_config``, seed 0) once per centring
(``Panel(centre="pooled")``, one mean per node; ``centre="shop"``, each shop's own training mean, the CLI's
default) and tabulates the target MSE@7 of every decoder beside the last value, the shop's training mean and a
least-squares AR(7) with shop intercepts (all on the same test windows, standardised units), plus the AR-CIG
nAUPRC of each decoder. Nothing is tuned: this only reports whether the main job's decoder earns its forecast.

Usage: ``python benchmarks/demo_forecast.py [--fast] [--shop-linear]`` (``--shop-linear``: every decoder with
``DecoderConfig(shop_linear=True)``, per-shop offsets of its linear part; results in ``demo_forecast_shop_linear``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

CENTRES = ("pooled", "shop")


def run(centre: str, fast: bool, shop_linear: bool = False) -> dict:
    import jax

    import dice_prob as dp
    from dice_prob.cli import demo_config
    from dice_prob.data.default import default_simulation

    sim = default_simulation(fast=fast)
    cfg = demo_config(fast)
    if shop_linear:
        cfg = cfg.replace(decoder=cfg.decoder.replace(shop_linear=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence / forecast-skill warnings are what the table reports
        res = dp.run_pipeline(jax.random.key(0), sim.panel.with_centre(centre), config=cfg, truth=sim.graph)
    h = res.summary["headline"]
    return {
        "centre": centre,
        "comparison": res.tables["comparison"].to_dict(orient="records"),
        "beats_reference_forecasts": h["beats_reference_forecasts"],
        "pip_auroc": h.get("pip_scores", {}).get("auroc"),
    }


def markdown(runs: list[dict], fast: bool, shop_linear: bool = False) -> str:
    lines = [
        (
            "Every decoder with `DecoderConfig(shop_linear=True)` (per-shop offsets of its linear part). "
            if shop_linear
            else ""
        )
        + f"The pipeline of `dice-prob demo{' --fast' if fast else ''}` (embedded default data, seed 0), once per "
        "panel centring. Target MSE@7 on the test windows (standardised units; the posterior row is the mean over "
        "posterior graph samples) and AR-CIG nAUPRC against the true graph. Reference forecasts: the last value, "
        "the shop's training mean, a least-squares AR(7) with one intercept per shop, fitted before the test "
        "region. Centring shifts each shop by a constant and keeps the scale, and the reference forecasts carry the "
        "shop's level themselves, so they score the same under both.",
        "",
        "| decoder | "
        + " | ".join(f"MSE@7 ({c})" for c in CENTRES)
        + " | "
        + " | ".join(f"AR-CIG nAUPRC ({c})" for c in CENTRES)
        + " |",
        "|---|" + "---|" * (2 * len(CENTRES)),
    ]
    by = {r["centre"]: {row["decoder"]: row for row in r["comparison"]} for r in runs}
    for name in by[CENTRES[0]]:
        mses = [by[c].get(name, {}).get("mse7") for c in CENTRES]
        nas = [by[c].get(name, {}).get("ar_cig_nauprc") for c in CENTRES]
        cell = [f"{v:.3f}" if isinstance(v, float) and v == v else "—" for v in mses + nas]
        lines.append(f"| {name} | " + " | ".join(cell) + " |")
    lines.append("")
    for r in runs:
        missed = [k for k, ok in r["beats_reference_forecasts"].items() if not ok]
        lines.append(
            f"- centre={r['centre']}: the posterior-trained decoder "
            + ("beats every reference forecast" if not missed else f"does not beat: {', '.join(missed)}")
            + f"; Stage 1 PIP AUROC {r['pip_auroc']:.3f}."
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="the fast demo setting")
    ap.add_argument("--out", help="results folder (default benchmarks/results)")
    ap.add_argument(
        "--shop-linear", action="store_true", help="decoders with per-shop offsets of the linear part"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    runs = [run(c, args.fast, args.shop_linear) for c in CENTRES]
    for r in runs:
        print(r["centre"], [(row["decoder"], round(row["mse7"], 4)) for row in r["comparison"]], flush=True)
    name = "demo_forecast_fast" if args.fast else "demo_forecast"
    if args.shop_linear:
        name += "_shop_linear"
    write_results(
        name,
        {"fast": args.fast, "shop_linear": args.shop_linear, "runs": runs},
        markdown(runs, args.fast, args.shop_linear),
        wall_s=time.perf_counter() - t0,
        out=None if args.out is None else Path(args.out),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
