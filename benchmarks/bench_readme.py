"""Write benchmarks/README.md: the suite's headline numbers beside the paper's and CausalMMM's, with a verdict.

Usage: ``python benchmarks/bench_readme.py``. Every number comes from ``benchmarks/results/NAME.json`` (a full run)
or, where no full run exists, ``benchmarks/results/fast/NAME.json`` (a ``--fast`` smoke run, labelled as such);
nothing is typed by hand. Verdicts are computed by one rule (``verdict``), stated in the generated file.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
OUT = ROOT / "README.md"
LEVEL = 0.05  # |difference| within this many units of nAUPRC / AUROC counts as "level"

SUITE = ("recovery_rdt", "sparse_target", "graph_swap", "multi_graph", "causalmmm_layout", "speed")
OTHER = (
    "stage1_recovery",
    "stage1_recovery_speed",
    "stage1_recovery_ar_residual",
    "stage1_recovery_mmm_source_kernel",
    "stage1_recovery_mmm_flip4",
    "stage1_recovery_sparse_flip4",
    "stage1_shift",
    "decoder_forecast",
    "decoder_forecast_shop_centred",
    "decoder_forecast_shop_linear",
    "sparse_target_shop_linear",
    "graph_swap_shop_linear",
    "arcig_indirect",
    "swap_kernel_offsets",
    "attribution_bypass",
    "demo_timing",
    "demo_forecast",
    "demo_forecast_shop_linear",
    "warm_start_ablation",
    "independent_generator",
    "independent_generator_shop_linear",
    "graph_density",
    "graph_density_fixed_slab_grid",
    "stage1_slab_grid_rdt",
)


def load(name: str) -> tuple[dict, str]:
    """(results, provenance) from the full run if present, else the fast run, else ({}, 'not run')."""
    for path, label in ((RESULTS / f"{name}.json", "full"), (RESULTS / "fast" / f"{name}.json", "--fast")):
        if path.exists():
            return json.loads(path.read_text()), label
    return {}, "not run"


def load_fast(name: str) -> dict:
    path = RESULTS / "fast" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def shop_linear_run(name: str, default: dict) -> tuple[dict, str, bool]:
    """(aggregate, intro sentence, same seeds as ``default``) of ``NAME_shop_linear``'s full run -- the same
    benchmark with every decoder trained with ``DecoderConfig(shop_linear=True)`` -- or ({}, "", False) when it
    has no full run."""
    sl, label = load(f"{name}_shop_linear")
    if label != "full":
        return {}, "", False
    seeds = [r["seed"] for r in sl.get("runs", [])]
    default_seeds = [r["seed"] for r in default.get("runs", [])]
    intro = (
        "The last two columns come from the same benchmark with the decoders trained with "
        f"`DecoderConfig(shop_linear=True)` ([{name}_shop_linear](results/{name}_shop_linear.md), seeds "
        f"{seeds}; the default run's seeds are {default_seeds})."
    )
    return sl.get("aggregate", {}), intro, seeds == default_seeds


def mean(pair):
    """Mean of a ``[mean, sd]`` pair (or a plain number); None when missing."""
    if pair is None:
        return None
    return float(pair[0]) if isinstance(pair, (list, tuple)) else float(pair)


def fmt(pair, digits: int = 3) -> str:
    if pair is None:
        return "—"
    if isinstance(pair, (list, tuple)):
        m, s = pair[0], pair[1] if len(pair) > 1 else None
        if m is None:
            return "—"
        return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if s is not None else "")
    return f"{pair:.{digits}f}"


def verdict(ours, theirs, *, higher_is_better: bool = True) -> str:
    """'ahead' / 'level' / 'behind' for dice_prob against a reference, with a +-LEVEL band counting as level."""
    if ours is None or theirs is None:
        return "not run"
    diff = (ours - theirs) if higher_is_better else (theirs - ours)
    if abs(diff) <= LEVEL:
        return "level"
    return "**ahead**" if diff > 0 else "**behind**"


def provenance(d: dict, label: str) -> str:
    meta = d.get("meta", {})
    if not meta:
        return "not run"
    if "--fast" in meta.get("command", ""):
        label = "--fast"
    kl = d.get("causalmmm_config", {}).get("kl_weight")
    if kl is not None:
        label += f", CausalMMM kl_weight {kl:g}"
    wall = meta.get("wall_s")
    took = "" if wall is None else f", {wall:.0f} s"
    return f"{label}, `{meta.get('command', '?')}`, {meta.get('date', '?')[:10]}{took}"


def paper_table(st: dict, gs: dict) -> list[str]:
    agg, sw = st.get("aggregate", {}), gs.get("aggregate", {}).get("swap_posterior_decoder", {})
    rows = [
        "| setting (paper) | paper | dice_prob | verdict |",
        "|---|---|---|---|",
    ]
    oracle = agg.get("oracle", {}).get("ar_cig_nauprc")
    rows.append(
        f"| sparse-target, oracle-graph decoder, AR-CIG nAUPRC | 0.807 ± 0.129 | {fmt(oracle)} | "
        f"{verdict(mean(oracle), 0.807)} |"
    )
    for key, label in (("empty", "no-graph"), ("full", "full-graph")):
        v = agg.get(key, {}).get("ar_cig_nauprc")
        rep = "not run" if v is None else ("reproduced" if mean(v) <= 0.1 else "**not reproduced** (> 0.1)")
        rows.append(f"| sparse-target, {label} decoder, AR-CIG nAUPRC | near or below 0 | {fmt(v)} | {rep} |")
    for key, label in (("posterior", "posterior samples (ours)"), ("causalmmm", "CausalMMM's learned graph")):
        v = sw.get(key, {}).get("nauprc")
        rows.append(
            f"| frozen graph-swap, learned graphs → {label}, AR-CIG nAUPRC | −0.044 ± 0.006 | {fmt(v)} | "
            f"{verdict(mean(v), -0.044)} |"
        )
    v = sw.get("oracle", {}).get("nauprc")
    rows.append(
        f"| frozen graph-swap, oracle graph, AR-CIG nAUPRC | 0.894 ± 0.027 | {fmt(v)} | {verdict(mean(v), 0.894)} |"
    )
    return rows


def recovery_table(rdt: dict, fallback: dict | None = None) -> list[str]:
    """One row per cell of ``rdt``; cells it did not run come from ``fallback`` (the --fast file), labelled so."""
    rows = [
        "| cell | R | d | T | mode | Stage 1 PIP | best CausalMMM | VAR-Granger | vs CausalMMM | vs Granger |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells = dict(rdt.get("cells", {}))
    not_run = list(rdt.get("cells_not_run", []))
    for name in list(not_run):
        if fallback and name in fallback.get("cells", {}):
            cells[f"{name} (--fast run)"] = fallback["cells"][name]
            not_run.remove(name)
    for name, cell in cells.items():
        if name in rdt.get("cells_partial", ()):
            name = f"{name} (seeds {cell['seeds_done']} of {rdt['seeds']}, partial)"
        s, a = cell.get("setting", {}), cell.get("aggregate", {})
        ours = a.get("stage1_pip", {}).get("auroc")
        cm = [a.get(k, {}).get("auroc") for k in ("causalmmm_faithful", "causalmmm_leak_free")]
        cm = [c for c in cm if c is not None]
        best = max(cm, key=mean) if cm else None
        gr = a.get("var_granger", {}).get("auroc")
        both_high = ours is not None and best is not None and mean(ours) > 0.98 and mean(best) > 0.98
        vs_cm = "level" if both_high else verdict(mean(ours), mean(best))
        rows.append(
            f"| {name} | {s.get('n_shops')} | {s.get('n_nodes')} | {s.get('n_steps')} | {s.get('mode')} | "
            f"{fmt(ours)} | {fmt(best)} | {fmt(gr)} | {vs_cm} | {verdict(mean(ours), mean(gr))} |"
        )
    for name in not_run:
        rows.append(f"| {name} | | | | | not run | not run | not run | | |")
    return rows


def simple_methods_table(d: dict, metric: str, label: str) -> list[str]:
    agg = d.get("aggregate", {})
    rows = [f"| method | {label} |", "|---|---|"]
    for m, v in agg.items():
        if isinstance(v, dict) and metric in v:
            rows.append(f"| {m} | {fmt(v[metric])} |")
    return rows


def targets_table(d: dict) -> list[str]:
    tg, ck = d.get("targets", {}), d.get("checks", {})
    rows = ["| check | target | met |", "|---|---|---|"]
    for k, text in tg.items():
        c = ck.get(k)
        rows.append(f"| {k} | {text} | {'not evaluated' if c is None else ('yes' if c else '**no**')} |")
    return rows


def build() -> str:
    res = {n: load(n) for n in SUITE}
    st, gs, rdt = res["sparse_target"][0], res["graph_swap"][0], res["recovery_rdt"][0]
    out = [
        "# Benchmarks",
        "",
        "<!-- generated by `python benchmarks/bench_readme.py` from benchmarks/results/*.json; do not edit -->",
        "",
        "Every table here is regenerated from the result files; each result file names the machine, the command "
        "and the date. Run the whole suite with `dice-prob bench all` (5 seeds, default sizes) or "
        "`dice-prob bench all --fast` (1 seed, small sizes, writes to `benchmarks/results/fast/`, run in CI). "
        "`--jobs 2` runs two scripts at a time, longest first (CI does; their tables then say the timings were "
        "contended; a full run keeps `speed` alone, last). "
        "Where only a `--fast` run exists, the tables below come from it and say so: those numbers are smoke-test "
        "sizes (short NUTS runs, 25-epoch CausalMMM at hidden size 16) and do not settle any claim. A full run "
        "takes hours: `sparse_target`, `graph_swap`, `multi_graph` and `causalmmm_layout` save every finished seed "
        "under `benchmarks/results/seeds/` and continue a stopped run with `--resume` (only seeds run with the "
        "same settings are reused; a table is written once all its seeds ran); `recovery_rdt` saves every seed "
        "of a cell and continues it with `--cells NAME --merge`.",
        "",
        f"Verdict rule: **ahead** / **behind** when dice_prob's mean differs from the reference by more than "
        f"{LEVEL} (AUROC or nAUPRC units), otherwise level; against CausalMMM, both above 0.98 also counts as "
        "level (the issue's rule).",
        "",
        "The suite runs CausalMMM at `kl_weight = 1e6` instead of the original's 100, to give the baseline its "
        "best chance: at 100 its edge logits saturate before its decoder uses messages and its AUROC stays near "
        "0.5 (see `dice_prob/models/causalmmm.py`). The weight each result file used is listed under Provenance.",
        "",
        "## Provenance",
        "",
        "| benchmark | source |",
        "|---|---|",
    ]
    for n in SUITE:
        d, label = res[n]
        out.append(
            f"| [{n}](results/{'fast/' if label == '--fast' else ''}{n}.md) | {provenance(d, label)} |"
        )
    for n in OTHER:
        d, label = load(n)
        out.append(f"| [{n}](results/{n}.md) | {provenance(d, label)} |")
    out += [
        "",
        "## The paper's headline numbers beside ours",
        "",
        "The paper (DICE-MMM, arXiv 2606.12687; DESIGN.md) reports these on its sparse-target benchmark; ours come "
        "from `sparse_target` and `graph_swap` (our reconstruction of the setting, not the paper's data).",
        "",
        *paper_table(st, gs),
        "",
        "## Graph recovery under R/d/T swaps (`recovery_rdt`, AUROC over the support mask)",
        "",
        *recovery_table(rdt, load_fast("recovery_rdt") if res["recovery_rdt"][1] == "full" else None),
        "",
        *targets_table(rdt),
        "",
        "## Forecasting vs attribution on sparse-target (`sparse_target`)",
        "",
    ]
    # the same benchmark with per-shop offsets of every decoder's linear part (`--shop-linear`), when it ran
    sl_agg, sl_intro, sl_same_seeds = shop_linear_run("sparse_target", st)
    if sl_agg:
        out += [
            sl_intro
            + " CausalMMM's own decoder does not take the option; its row "
            + ("repeats under the same seeds." if sl_same_seeds else "differs only by the seeds."),
            "",
            "| decoder (training graph) | MSE@7 target | AR-CIG nAUPRC | MSE@7, shop_linear | AR-CIG nAUPRC, shop_linear |",
            "|---|---|---|---|---|",
        ]
    else:
        out += ["| decoder (training graph) | MSE@7 target | AR-CIG nAUPRC |", "|---|---|---|"]
    for k, v in st.get("aggregate", {}).items():
        row = f"| {k} | {fmt(v.get('mse7_target'), 4)} | {fmt(v.get('ar_cig_nauprc'))} |"
        if sl_agg:
            w = sl_agg.get(k, {})
            row += f" {fmt(w.get('mse7_target'), 4)} | {fmt(w.get('ar_cig_nauprc'))} |"
        out.append(row)
    out += ["", *targets_table(st), "", "## Frozen graph-swap (`graph_swap`)", ""]
    gsl_agg, gsl_intro, _ = shop_linear_run("graph_swap", gs)
    if gsl_agg:
        out += [
            gsl_intro,
            "",
            "| graph input | posterior-trained decoder nAUPRC | hard-trained decoder nAUPRC | "
            "posterior-trained, shop_linear | hard-trained, shop_linear |",
            "|---|---|---|---|---|",
        ]
    else:
        out += [
            "| graph input | posterior-trained decoder nAUPRC | hard-trained decoder nAUPRC |",
            "|---|---|---|",
        ]
    agg = gs.get("aggregate", {})
    pd_, hd = agg.get("swap_posterior_decoder", {}), agg.get("swap_hard_decoder", {})
    spd = gsl_agg.get("swap_posterior_decoder", {})
    shd = gsl_agg.get("swap_hard_decoder", {})
    for k in pd_:
        row = f"| {k} | {fmt(pd_[k].get('nauprc'))} | {fmt(hd.get(k, {}).get('nauprc'))} |"
        if gsl_agg:
            row += f" {fmt(spd.get(k, {}).get('nauprc'))} | {fmt(shd.get(k, {}).get('nauprc'))} |"
        out.append(row)
    out += ["", *targets_table(gs), ""]
    mg, cl = res["multi_graph"][0], res["causalmmm_layout"][0]
    out += [
        "## Multi-graph stress test (`multi_graph`, per-shop AUROC against each shop's own graph)",
        "",
        *simple_methods_table(mg, "auroc", "AUROC"),
        "",
        *targets_table(mg),
        "",
        "## CausalMMM's released layout (`causalmmm_layout`, AUROC over all 56 pairs per shop, CausalMMM's "
        "convention)",
        "",
        *simple_methods_table(cl, "auroc_all_pairs", "AUROC (56 pairs)"),
        "",
        *targets_table(cl),
        "",
        "## Speed (`speed`)",
        "",
        f"See [the speed table](results/{'fast/' if res['speed'][1] == '--fast' else ''}speed.md) and its "
        "scaling plot; per-stage targets from the issues are checked there.",
        "",
        *targets_table(res["speed"][0]),
        "",
    ]
    return "\n".join(out)


def main() -> None:
    text = build()
    tmp = OUT.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
