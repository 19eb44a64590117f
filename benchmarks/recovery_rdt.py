"""Graph recovery under R / d / T swaps: Stage 1 PIP vs CausalMMM (faithful, leak-free) vs VAR-Granger.

Cells (DESIGN.md "Benchmarks"): the default funnel (R = 10 shops, d = 8, T = 100, L = 7, linear, one graph per shop)
and one axis changed at a time: R in {1, 100}, d in {12, 20}, T in {60, 200}, plus mode ``mmm``. For d > 8 the
funnel keeps its shape: about a quarter of the non-target nodes are intermediates (d = 12: 8 channels, 3
intermediates; d = 20: 14 channels, 5 intermediates).

Each cell simulates ONE data set (a cell-specific key); the seeds vary each method's own randomness (NUTS, the
CausalMMM initialisation / shop split / Gumbel draws). So "mean ± sd over seeds" and the edge Jaccard between the
seeds' point graphs measure how much a method's answer depends on its seed on the same data (the stability the
paper questions); the per-shop spread is in the JSON. VAR-Granger is deterministic (sd 0, Jaccard 1).

Metrics per method: AUROC and nAUPRC of the edge scores over the role support mask (the dice_prob convention),
AUROC over all off-diagonal pairs (CausalMMM's convention), SHD of the point graph (Stage 1: the median-probability
graph PIP > 0.5; CausalMMM: P(edge) > 0.5; Granger: p < 0.05), edge Jaccard between seeds, and for CausalMMM the
Final-20 AUROC (mean per-epoch AUROC, all pairs, over the last 20 epochs).

Usage: ``python benchmarks/recovery_rdt.py [--fast] [--seeds N] [--cells NAME ...] [--merge] [--out DIR]``.
Nothing is tuned to a target: Stage 1 uses the default priors (mode = the data's mode), CausalMMM its released
defaults with an explicit epoch budget. The results file is rewritten (atomically) after every finished cell and
lists the cells not run, so a long full run that is stopped early leaves an honest partial table, never one that
looks complete. A cell is saved after every seed and marked partial until all its seeds ran (partial cells are
shown but not counted in the checks). ``--merge`` adds cells to such a file (same seeds and configs only; the
cells being redone are dropped from it first) and each cell records the command that ran it. A partial cell named
again under ``--merge`` is resumed after its last seed instead of rerun: each seed's point graphs are stored
(bit-packed) so the edge Jaccard still covers every seed, and the same keys give the same numbers, so a resumed cell
equals one run in one go. A partial cell from a file without stored point graphs is rerun from its first seed.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _suite import (  # noqa: E402
    GRANGER_ALPHA,
    causalmmm_config,
    f,
    key,
    mean_sd,
    out_dir,
    parser,
    run_causalmmm,
    run_granger,
    run_stage1,
    scores_metrics,
    seed_count,
    seed_jaccard,
    stage1_config,
    targets_md,
    write,
)

from dice_prob.data import simulate  # noqa: E402

NAME = "recovery_rdt"
DEFAULT = {"n_shops": 10, "n_nodes": 8, "n_steps": 100, "mode": "linear"}
CELLS = {
    "default": {},
    "R=1": {"n_shops": 1},
    "R=100": {"n_shops": 100},
    "d=12": {"n_nodes": 12},
    "d=20": {"n_nodes": 20},
    "T=60": {"n_steps": 60},
    "T=200": {"n_steps": 200},
    "mmm": {"mode": "mmm"},
}
HARD = ("T=60", "d=20", "mmm")
FAST_CELLS = ("default", "T=60")
FAST_SHOPS = 4
METHODS = ("stage1_pip", "causalmmm_faithful", "causalmmm_leak_free", "var_granger")
TARGETS = {
    "ahead_every_cell": "Stage 1 PIP AUROC > best CausalMMM variant on every cell run (level counts only where "
    "both exceed 0.98)",
    "ahead_hard_cells": "Stage 1 PIP AUROC >= best CausalMMM + 0.05 on the hard cells run (T=60, d=20, mmm)",
    "sd_half": "Stage 1 seed-to-seed AUROC sd <= 0.5 x that of the best CausalMMM variant, every cell "
    "(needs >= 2 seeds)",
}
_INTERMEDIATES = {8: 2, 12: 3, 20: 5}


def cell_setting(name: str, fast: bool) -> dict:
    c = {**DEFAULT, **CELLS[name]}
    if fast:
        c["n_shops"] = min(c["n_shops"], FAST_SHOPS)
    return c


def simulate_cell(idx: int, c: dict):
    d = c["n_nodes"]
    n_int = _INTERMEDIATES.get(d, max(1, round((d - 1) / 4)))
    return simulate.funnel(
        key(7000, idx),
        n_shops=c["n_shops"],
        n_steps=c["n_steps"],
        n_lags=7,
        mode=c["mode"],
        n_channels=d - 1 - n_int,
        n_intermediate=n_int,
    )


def _pip3(post, n_shops, d):
    p = np.asarray(post.pip, dtype=float)
    return np.broadcast_to(p, (n_shops, d, d)) if p.ndim == 2 else p.reshape(n_shops, d, d)


def aggregate(runs: dict, hards: dict, mask) -> dict:
    """Mean ± sd over the seeds run so far, per method, plus the edge Jaccard between their point graphs."""
    agg = {}
    for meth, rows in runs.items():
        agg[meth] = {
            k: mean_sd([row.get(k) for row in rows])
            for k in ("auroc", "nauprc", "auroc_all_pairs", "shd", "seconds", "final20_auroc")
            if any(row.get(k) is not None for row in rows)
        }
        agg[meth]["jaccard"] = seed_jaccard(hards[meth], mask)
    return agg


def is_partial(cell: dict, seeds) -> bool:
    return list(cell.get("seeds_done", seeds)) != list(seeds)


def pack_graph(g) -> str:
    """A boolean point graph as base64 of its packed bits (the JSON stays small: R x d x d bits per seed)."""
    return base64.b64encode(np.packbits(np.asarray(g, dtype=bool).ravel()).tobytes()).decode("ascii")


def unpack_graph(text: str, shape) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    return bits[: int(np.prod(shape))].reshape(shape).astype(bool)


def resumable(cell: dict, c: dict, seeds) -> bool:
    """Whether a stored partial cell can be continued: the same setting, its seeds a prefix of ``seeds``, and every
    method's point graphs stored for every seed done (without them the Jaccard would silently cover fewer seeds)."""
    done = list(cell.get("seeds_done", seeds))
    graphs = cell.get("point_graphs", {})
    return (
        is_partial(cell, seeds)
        and 0 < len(done) < len(seeds)
        and done == list(seeds[: len(done)])
        and cell.get("setting") == json.loads(json.dumps(c))
        and all(len(graphs.get(m, [])) == len(done) and len(cell["runs"][m]) == len(done) for m in METHODS)
    )


def run_cell(
    idx: int, name: str, c: dict, seeds, fast: bool, on_seed=None, resume: dict | None = None
) -> dict:
    """One cell over ``seeds``; ``on_seed(cell)`` gets the cell aggregated over the seeds done after each seed, so a
    long cell can be saved (marked partial) before it ends. ``resume``: a stored partial cell of this setting
    (see :func:`resumable`) whose seeds are kept; only the seeds after them run."""
    sim = simulate_cell(idx, c)
    panel, truth = sim.panel, sim.graphs
    mask = np.asarray(sim.support_mask, dtype=bool) & ~np.eye(panel.n_nodes, dtype=bool)
    r, d = panel.n_shops, panel.n_nodes
    runs = {m: [] for m in METHODS}
    hards = {m: [] for m in METHODS}  # point graphs (R x d x d per seed and method), stored bit-packed
    start = 0
    if resume is not None:
        if not resumable(resume, c, seeds):
            raise ValueError(
                f"[{name}] the stored cell cannot be resumed (other setting, seeds or no point graphs)"
            )
        start = len(resume["seeds_done"])
        runs = {m: [dict(row) for row in resume["runs"][m]] for m in METHODS}
        hards = {m: [unpack_graph(t, (r, d, d)) for t in resume["point_graphs"][m]] for m in METHODS}

    def add(meth: str, m: dict) -> None:
        hards[meth].append(m.pop("hard"))
        m["n_edges_point_graph"] = float(hards[meth][-1].sum() / r)
        runs[meth].append(m)

    g_scores, g_p, g_s, used = run_granger(panel, 7, mask)
    g_metrics = scores_metrics(g_scores, truth, mask, (g_p < GRANGER_ALPHA) & mask)
    s1cfg = stage1_config(c["mode"], fast)
    cell = {}
    for i, s in enumerate(seeds[start:], start):
        post, wall, warns = run_stage1(key(s, idx, 1), panel, s1cfg)
        pip = _pip3(post, r, d)
        m = scores_metrics(pip, truth, mask, pip > 0.5)
        m.update(seconds=wall, convergence_warning=bool(warns), max_r_hat=post.convergence.get("max_r_hat"))
        add("stage1_pip", m)
        for label, lf in (("causalmmm_faithful", False), ("causalmmm_leak_free", True)):
            res, wall = run_causalmmm(key(s, idx, 2 + lf), panel, causalmmm_config(fast, leak_free=lf), truth)
            sc = np.asarray(res.edge_scores, dtype=float)
            m = scores_metrics(sc, truth, mask, sc > 0.5)
            m.update(seconds=wall, final20_auroc=res.final20_auroc(), best_epoch=int(res.best_epoch))
            add(label, m)
        add("var_granger", {**g_metrics, "seconds": g_s, "conditioning": used})
        print(
            f"[{name}] seed {s}: "
            + ", ".join(f"{k} AUROC {v[-1]['auroc']:.3f}" for k, v in runs.items())
            + f" (stage1 {runs['stage1_pip'][-1]['seconds']:.0f} s)",
            flush=True,
        )
        cell = {
            "setting": c,
            "n_pairs_masked": int(mask.sum()),
            "n_true_edges_per_shop": float(np.mean(truth[:, mask].sum(-1))),
            "granger_conditioning": used,
            "seeds_done": list(seeds[: i + 1]),
            "aggregate": aggregate(runs, hards, mask),
            "runs": runs,
            "point_graphs": {m: [pack_graph(h) for h in hards[m]] for m in METHODS},
        }
        if on_seed is not None:
            on_seed(cell)
    return cell


def best_causalmmm(agg: dict) -> str:
    a, b = "causalmmm_faithful", "causalmmm_leak_free"
    return a if agg[a]["auroc"][0] >= agg[b]["auroc"][0] else b


def checks(cells: dict, seeds) -> dict:
    """The issue's three checks over the cells run with every seed (a partial cell is shown, never counted)."""
    n_seeds = len(seeds)
    ahead, hard, sd = [], [], []
    for name, cell in cells.items():
        if is_partial(cell, seeds):
            continue
        agg = cell["aggregate"]
        best = agg[best_causalmmm(agg)]
        s1 = agg["stage1_pip"]
        level = s1["auroc"][0] > 0.98 and best["auroc"][0] > 0.98
        ahead.append(bool(s1["auroc"][0] > best["auroc"][0] or level))
        if name in HARD:
            hard.append(bool(s1["auroc"][0] >= best["auroc"][0] + 0.05))
        if n_seeds >= 2:
            sd.append(bool(s1["auroc"][1] <= 0.5 * best["auroc"][1]))
    return {
        # None = not evaluated (no complete cell, no hard cell, or one seed), never a vacuous "yes"
        "ahead_every_cell": all(ahead) if ahead else None,
        "ahead_hard_cells": all(hard) if hard else None,
        "sd_half": all(sd) if sd else None,
    }


def cell_label(name: str, cell: dict, seeds) -> str:
    if not is_partial(cell, seeds):
        return name
    return f"{name} (seeds {cell['seeds_done']} of {list(seeds)})"


def stage1_convergence_md(cell: dict) -> list[str]:
    """Stage 1's convergence per cell, reported beside its AUROC (never hidden): max r_hat and warned seeds."""
    rows = cell.get("runs", {}).get("stage1_pip", [])
    rh = [r["max_r_hat"] for r in rows if r.get("max_r_hat") is not None]
    if not rh:
        return []
    warned = sum(bool(r.get("convergence_warning")) for r in rows)
    return [
        f"Stage 1 convergence: max r_hat {max(rh):.3g} over the seeds' fits (threshold 1.01); a convergence "
        f"warning on {warned} of {len(rows)} seeds.",
        "",
    ]


def markdown(cells: dict, chk: dict, seeds, fast: bool, s1cfg, cmcfg, not_run=()) -> str:
    partial = [cell_label(n, c, seeds) for n, c in cells.items() if is_partial(c, seeds)]
    lines = [
        f"Seeds {list(seeds)} ({'--fast' if fast else 'full'} mode); one data set per cell, seeds vary the "
        "methods' randomness. Stage 1: default priors, "
        f"{s1cfg.num_chains} chains x {s1cfg.num_warmup} + {s1cfg.num_samples}. CausalMMM: hidden "
        f"{cmcfg.encoder_hidden}/{cmcfg.decoder_hidden}, {cmcfg.epochs} epochs, lr {cmcfg.learning_rate}, "
        f"batch {cmcfg.batch_size}. VAR-Granger: per-shop OLS VAR(7) F-tests on the training window. "
        "Timings on a shared, contended machine.",
        "",
        *(
            [f"**Cells not run:** {', '.join(not_run)} (the checks below cover only the cells run).", ""]
            if not_run
            else []
        ),
        *(
            [
                f"**Partial cells:** {', '.join(partial)}: stopped before every seed ran; shown, not counted in "
                "the checks.",
                "",
            ]
            if partial
            else []
        ),
        "## AUROC over the support mask (mean ± sd over seeds)",
        "",
        "| cell | R | d | T | mode | Stage 1 PIP | CausalMMM faithful | CausalMMM leak-free | VAR-Granger | "
        "Stage 1 − best CausalMMM |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, cell in cells.items():
        a, c = cell["aggregate"], cell["setting"]
        diff = a["stage1_pip"]["auroc"][0] - a[best_causalmmm(a)]["auroc"][0]
        lines.append(
            f"| {cell_label(name, cell, seeds)} | {c['n_shops']} | {c['n_nodes']} | {c['n_steps']} | {c['mode']} | "
            + " | ".join(f(a[m]["auroc"]) for m in METHODS)
            + f" | {diff:+.3f} |"
        )
    for name, cell in cells.items():
        a = cell["aggregate"]
        lines += [
            "",
            f"## Cell {cell_label(name, cell, seeds)}: {cell['setting']}, {cell['n_pairs_masked']} scored pairs, "
            f"{cell['n_true_edges_per_shop']:.1f} true edges per shop, Granger conditioning "
            f"{cell['granger_conditioning']}",
            "",
            *([f"Run by `{cell['command']}` in {cell['wall_s']:.0f} s.", ""] if cell.get("command") else []),
            *stage1_convergence_md(cell),
            "| method | AUROC | nAUPRC | AUROC all pairs (CausalMMM conv.) | SHD point graph | "
            "edge Jaccard between seeds | Final-20 AUROC | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in METHODS:
            g = a[m]
            jac = "—" if g["jaccard"] is None else f"{g['jaccard']:.3f}"
            lines.append(
                f"| {m} | {f(g['auroc'])} | {f(g['nauprc'])} | {f(g['auroc_all_pairs'])} | "
                f"{f(g['shd'], 1)} | {jac} | {f(g.get('final20_auroc'))} | {f(g['seconds'], 1)} |"
            )
    lines += ["", targets_md(TARGETS, chk)]
    return "\n".join(lines)


def kept_cells(path: Path, fast: bool, seeds, s1cfg, cmcfg, redo) -> tuple[dict, dict]:
    """Cells of an earlier results file that ``--merge`` keeps: only from a run with the same mode, seeds and
    method configs (anything else would mix incomparable numbers into one table), minus the cells being redone;
    and, apart, the stored versions of the cells being redone (a partial one may be resumed)."""
    if not path.is_file():
        return {}, {}
    old = json.loads(path.read_text())

    def as_json(cfg):  # tuples come back from JSON as lists
        return json.loads(json.dumps(cfg.to_dict()))

    def stored_as_json(stored, cfg):
        # a field added to a config class after the file was written ran with that field's default (added
        # fields keep the old behaviour at their default, e.g. Stage1Config.flip_moves = 0)
        if not isinstance(stored, dict):
            return stored
        return {**as_json(type(cfg)()), **stored}

    same = (
        old.get("fast") == fast
        and old.get("seeds") == list(seeds)
        and stored_as_json(old.get("stage1_config"), s1cfg) == as_json(s1cfg)
        and stored_as_json(old.get("causalmmm_config"), cmcfg) == as_json(cmcfg)
    )
    if not same:
        raise SystemExit(
            f"--merge: {path} was made with other seeds / configs / --fast; rerun without --merge"
        )
    stored = {n: c for n, c in old.get("cells", {}).items() if n in CELLS}
    # files written before cells recorded their own command / seeds done held complete cells only
    for c in stored.values():
        c.setdefault("command", old.get("meta", {}).get("command"))
        c.setdefault("seeds_done", list(seeds))
    kept = {n: c for n, c in stored.items() if n not in redo}
    return kept, {n: c for n, c in stored.items() if n in redo}


def main(argv=None) -> int:
    ap = parser(__doc__)
    ap.add_argument(
        "--cells",
        nargs="+",
        choices=list(CELLS),
        default=None,
        help="cells to run, in this order (default: every cell; with --fast: " + ", ".join(FAST_CELLS) + ")",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the cells already in the results file (same --fast, seeds and configs) that this run does not redo",
    )
    args = ap.parse_args(argv)
    n_seeds = seed_count(args)
    seeds = list(range(n_seeds))
    names = tuple(dict.fromkeys(args.cells)) if args.cells else (FAST_CELLS if args.fast else tuple(CELLS))
    s1cfg = stage1_config("linear", args.fast)
    cmcfg = causalmmm_config(args.fast, leak_free=False)
    t0 = time.perf_counter()
    cells, redone = (
        kept_cells(out_dir(args) / f"{NAME}.json", args.fast, seeds, s1cfg, cmcfg, names)
        if args.merge
        else ({}, {})
    )
    cmd = "python " + " ".join(sys.argv)  # with --merge, cells may come from other runs
    md = ""

    def save(name: str, cell: dict, started: float, resumed: dict | None) -> None:
        """Rewrite the results file with ``cell`` as it stands (after every seed, so a stopped run keeps them)."""
        nonlocal cells, md
        wall = time.perf_counter() - started
        if resumed is None:
            cells[name] = {**cell, "wall_s": wall, "command": cmd}
        else:  # the wall time and commands of both runs, so the cell's cost and provenance stay whole
            cells[name] = {
                **cell,
                "wall_s": resumed["wall_s"] + wall,
                "command": f"{resumed['command']} (seeds {resumed['seeds_done']}), then {cmd}",
            }
        cells = {n: cells[n] for n in CELLS if n in cells}  # table order = CELLS order, merged or not
        not_run = [n for n in CELLS if n not in cells]
        chk = checks(cells, seeds)
        md = markdown(cells, chk, seeds, args.fast, s1cfg, cmcfg, not_run)
        payload = {
            "fast": args.fast,
            "seeds": seeds,
            "stage1_config": s1cfg.to_dict(),
            "causalmmm_config": cmcfg.to_dict(),
            "targets": TARGETS,
            "checks": chk,
            "cells_requested": list(names),
            "cells_not_run": not_run,
            "cells_partial": [n for n, c in cells.items() if is_partial(c, seeds)],
            "cells": cells,
        }
        write(NAME, payload, md, wall_s=time.perf_counter() - t0, out=out_dir(args))

    for i, name in enumerate(names):
        idx = list(CELLS).index(name)
        setting = cell_setting(name, args.fast)
        stored = redone.get(name)
        resume = stored if stored is not None and resumable(stored, setting, seeds) else None
        if resume is not None:
            print(f"[{name}] resuming after seeds {resume['seeds_done']}", flush=True)
        elif stored is not None and is_partial(stored, seeds):
            print(
                f"[{name}] stored partial cell cannot be resumed (no point graphs stored, or another setting): rerun from seed 0",
                flush=True,
            )
        tc = time.perf_counter()
        run_cell(
            idx,
            name,
            setting,
            seeds,
            args.fast,
            on_seed=lambda cell, name=name, tc=tc, resume=resume: save(name, cell, tc, resume),
            resume=resume,
        )
        print(f"[{name}] written ({i + 1}/{len(names)} requested cells done)", flush=True)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
