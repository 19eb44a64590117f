"""Command line: ``dice-prob demo | run | report | bench``.

Every subcommand prints one progress line per stage and a one-screen summary at the end, exits 0 on success and
non-zero with ONE actionable line on bad input (missing file, unknown column, NaN, too few rows, bad config key);
``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

from dice_prob.errors import ConvergenceWarning, DiceProbError
from dice_prob.inference.stage1 import describe_convergence_split

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


# ====================================================================================== configs
def fast_config(config=None):
    """The small ``--fast`` setting (CI / tutorials): short NUTS, one chain, few epochs, few graph samples.

    Examples
    --------
    >>> fast_config().stage1.num_chains
    1
    """
    from dice_prob.config import PipelineConfig

    c = PipelineConfig() if config is None else config
    return c.replace(
        stage1=c.stage1.replace(num_warmup=150, num_samples=150, num_chains=1),
        decoder=c.decoder.replace(hidden_size=16, message_size=8, embed_size=4, max_epochs=25, patience=8),
        diagnostics=c.diagnostics.replace(n_graph_samples=40, n_windows=16),
    )


#: The Stage 1 setting for spend channels shared by ``dice-prob demo`` and ``dice-prob run`` (see demo_config).
SPEND_STAGE1 = {"mode": "linear", "channel_transform": "log1p", "lag_decay": 1.0}


def demo_config(fast: bool = False):
    """The demo's pipeline config: Stage 1 on the log-spend scale for the embedded funnel(mode="mmm") data.

    Stage 1 is ``mode="linear"`` with ``channel_transform="log1p"`` and the Minnesota ``lag_decay=1``:
    on funnel(mode="mmm") panels it recovers the graph better than the parametric ``mode="mmm"`` likelihood
    (PIP AUROC 0.94 vs 0.87 over 3 seeds x 10 shops, ``benchmarks/stage1_recovery.py``), mixes well (r_hat
    <= 1.02 against up to 1.56) and fits in a tenth of the time. The fast setting trains one comparison decoder
    (``oracle``); the frozen graph swap still evaluates the posterior-trained decoder under the empty, full,
    random and permuted inputs.

    Examples
    --------
    >>> cfg = demo_config(fast=True).stage1
    >>> cfg.mode, cfg.channel_transform
    ('linear', 'log1p')
    """
    from dice_prob.config import PipelineConfig

    base = PipelineConfig()
    base = base.replace(stage1=base.stage1.replace(**SPEND_STAGE1))
    if fast:
        return fast_config(base).replace(comparison_decoders=("oracle",))
    return base.replace(
        stage1=base.stage1.replace(num_warmup=300, num_samples=300, num_chains=2),
        decoder=base.decoder.replace(max_epochs=150, patience=20),
        diagnostics=base.diagnostics.replace(n_graph_samples=100),
    )


def run_config(panel):
    """``dice-prob run``'s pipeline config when no ``--config`` is given, and a note saying which it is.

    Spend data (every channel column >= 0) get the Stage 1 setting of ``dice-prob demo``: ``mode="linear"`` on
    the log-spend scale (``channel_transform="log1p"``) with the Minnesota ``lag_decay=1``; everything else is
    ``PipelineConfig()``. On data from a generator written apart from the package's simulators (co-moving
    spends, Weibull carryover, logistic saturation; ``benchmarks/independent_generator.py``, 3 seeds) it gives
    PIP AUROC 0.997 against 0.979 and max r_hat 1.03 against one stuck chain, and on funnel(mode="mmm") 0.94
    against 0.92 (``benchmarks/stage1_recovery.py``). A channel with a negative value is not a spend (the log
    would not apply): then the package defaults. On a short series the decoder's window history is shortened so
    that every shop keeps enough training windows (:func:`_history_that_fits`); the note says so.

    Examples
    --------
    >>> import numpy as np, dice_prob as dp
    >>> x = np.abs(np.random.default_rng(0).normal(size=(2, 30, 3)))
    >>> roles = ["channel", "channel", "target"]
    >>> cfg, note = run_config(dp.Panel(x, roles=roles))
    >>> cfg.stage1.channel_transform, cfg.stage1.lag_decay
    ('log1p', 1.0)
    >>> run_config(dp.Panel(x - 0.5, roles=roles))[0].stage1.channel_transform
    'none'
    """
    import numpy as np

    from dice_prob.config import PipelineConfig

    base, history_note = _history_that_fits(PipelineConfig(), panel.n_steps)
    channels = [i for i, r in enumerate(panel.roles) if r == "channel"]
    if not channels:
        return base, "Stage 1 settings: package defaults (no channel columns)" + history_note
    if float(np.min(panel.values[:, :, channels])) < 0:
        return base, (
            "Stage 1 settings: package defaults (a channel column has negative values, so it is not read as "
            "spend and is not log-transformed)" + history_note
        )
    cfg = base.replace(stage1=base.stage1.replace(**SPEND_STAGE1))
    return (
        cfg,
        "Stage 1 settings: spend data, log1p channels with lag_decay=1 (pass --config to choose others)"
        + history_note,
    )


# Training windows a short series must still give the decoder before ``run_config`` shortens its history: with
# val_fraction 0.2 this holds out two origins for early stopping and trains on six.
_MIN_TRAIN_ORIGINS = 8


def _history_that_fits(config, n_steps: int):
    """Shorten the decoder's window history on a short series, so that it keeps enough training windows.

    The default history (21 steps) leaves one training window on 36 weekly steps. The history becomes the
    longest one leaving ``_MIN_TRAIN_ORIGINS`` training origins, but never shorter than the decoder's own-lag
    count ``ar_lags`` (the history's one hard use); when even that leaves too few windows for early stopping,
    the config is left alone and the pipeline's validation says what to change.
    """
    from dice_prob.data.windows import max_history, min_train_origins

    dec = config.decoder
    horizon = max(dec.horizon, config.diagnostics.horizon)
    fits = min(dec.history, max(max_history(n_steps, horizon, min_origins=_MIN_TRAIN_ORIGINS), dec.ar_lags))
    if fits >= dec.history or fits > max_history(
        n_steps, horizon, min_origins=min_train_origins(dec.val_fraction)
    ):
        return config, ""
    n_origins = max_history(n_steps, horizon) - fits + 1
    return config.replace(decoder=dec.replace(history=fits)), (
        f"; decoder history {fits} instead of {dec.history}, so that {n_steps} steps keep {n_origins} "
        "training windows per shop"
    )


def _with_progress_bars(config, enabled: bool):
    """Progress bars only on an interactive terminal (they do not change any number)."""
    return config.replace(
        stage1=config.stage1.replace(progress_bar=enabled),
        decoder=config.decoder.replace(progress_bar=enabled),
    )


# ====================================================================================== output helpers
class _Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[dice-prob {time.perf_counter() - self.t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return msg


def _warning_line(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"dice-prob: warning: {category.__name__}: {_one_line(Exception(str(message)))}", file=sys.stderr)


def _num(x, spec: str = ".4g") -> str:
    """A number formatted with ``spec``, or ``n/a`` for None/NaN (JSON stores NaN as null)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if v != v else format(v, spec)


def _fmt_s(s: dict | None) -> str:
    if not s:
        return "n/a"
    return f"{_num(s.get('mean'))} [{_num(s.get('hdi_low'))}, {_num(s.get('hdi_high'))}]"


def print_summary(res, out: Path | None, *, file=None) -> None:
    """A one-screen summary of a pipeline result."""
    file = sys.stdout if file is None else file
    s = res.summary
    h = s.get("headline", {})
    data = s.get("data", {})
    conv = s.get("convergence", {}) or {}
    prob = res.config.diagnostics.hdi_prob
    pct = int(round(100 * prob))
    lines = ["", "dice-prob summary", "=" * 60]
    r, t, d = data.get("shape", res.panel.shape)
    lines.append(
        f"data         {r} shop(s) x {t} steps x {d} nodes; target {data.get('target', res.panel.target)}"
    )
    tt = s.get("timings_s", {})
    lines.append(
        "time         "
        + ", ".join(f"{k} {_num(v, '.1f')}s" for k, v in tt.items() if k != "total")
        + f"; total {_num(tt.get('total'), '.1f')}s"
    )
    if conv:
        ok = conv.get("ok")
        lines.append(
            f"convergence  {'ok' if ok else 'POOR'}: max r_hat {_num(conv.get('max_r_hat'), '.3f')}, "
            f"min ESS {_num(conv.get('min_ess'), '.0f')}, divergences {conv.get('n_divergences', 'n/a')}"
            + (
                f"; flip moves accepted {_num(conv['flip_accept_rate'], '.2f')} "
                f"(lowest node {_num(conv.get('flip_accept_min_node'), '.2f')})"
                if conv.get("flip_accept_rate") is not None
                else ""
            )
        )
        split = describe_convergence_split(conv)
        if split:
            lines.append("             " + split)
    lines.append(f"graph        {h.get('n_edges_pip_gt_05', 'n/a')} candidate edge(s) with PIP > 0.5")
    edges = res.tables.get("edges")
    if edges is not None and len(edges):
        e = edges
        if "unit" in e.columns:
            e = e.groupby(["source", "target"], sort=False)["pip"].mean().reset_index()
            e = e.sort_values("pip", ascending=False, kind="stable")
        top = ", ".join(f"{a}->{b} {p:.2f}" for a, b, p in e[["source", "target", "pip"]].head(5).to_numpy())
        lines.append(f"top edges    {top}")
    lines.append(
        f"MSE@{res.config.diagnostics.horizon}        {_fmt_s(h.get('mse7'))} ({pct}% HDI over graph samples); "
        f"persistence {_num(h.get('mse7_persistence'))}"
        + (f", flat mean {_num(h.get('mse7_flat_mean'))}" if "mse7_flat_mean" in h else "")
        + (
            f", LS AR({h.get('ls_ar_lags')}) {_num(h.get('mse7_ls_ar'))}"
            if h.get("mse7_ls_ar") is not None
            else ""
        )
    )
    if "pip_scores" in h:
        ps = h["pip_scores"]
        au, na = ps.get("auroc"), ps.get("nauprc")
        lines.append(
            "vs truth     PIP AUROC "
            + _num(au, ".3f")
            + ", PIP nAUPRC "
            + _num(na, ".3f")
            + (f", AR-CIG nAUPRC {_fmt_s(h.get('ar_cig_nauprc'))}" if "ar_cig_nauprc" in h else "")
        )
    else:
        lines.append("vs truth     no true graph: truth-based scores skipped")
    att = h.get("attribution", {})
    if att:
        lines.append(
            f"attribution  {att.get('verdict')}: AR-CIG vs PIP rank correlation {_fmt_s(att.get('spearman'))}"
        )
    if out is not None:
        lines.append(f"results      {out}")
        if (out / "report.html").exists():
            lines.append(f"report       {out / 'report.html'}")
    lines.append("=" * 60)
    print("\n".join(lines), file=file)


# ====================================================================================== commands
def _key(seed: int):
    import jax

    return jax.random.key(int(seed))


def _cmd_demo(args) -> int:
    from dice_prob.data.default import default_simulation
    from dice_prob.pipeline import run_pipeline

    _check_out(args.out)
    log = _Progress(args.quiet)
    log(f"generating the embedded default data (funnel, mode='mmm'{', fast' if args.fast else ''})")
    sim = default_simulation(fast=args.fast)
    config = demo_config(args.fast)
    if args.config:
        from dice_prob.pipeline import load_config

        config = load_config(args.config)
        if args.fast:
            config = fast_config(config)
    config = _with_progress_bars(config, sys.stderr.isatty() and not args.quiet)
    res = run_pipeline(
        _key(args.seed), sim.panel.with_centre(args.centre), config=config, truth=sim.graph, log=log
    )
    note = f"data: embedded default (funnel mode='mmm', {'fast' if args.fast else 'full'} setting, fixed key)"
    if args.fast:
        note += (
            "; fast setting: short NUTS on one chain, few decoder epochs and one comparison decoder (oracle), "
            "so expect poorer convergence and forecasts than the full demo"
        )
    res.summary.setdefault("notes", []).insert(0, note)
    log(f"writing results and report to {args.out}")
    out = res.save(args.out, report=True)
    print_summary(res, out)
    return EXIT_OK


def _add_centre(parser) -> None:
    parser.add_argument(
        "--centre",
        choices=("shop", "pooled"),
        default="shop",
        help="standardise each shop's nodes around its own training mean (shop, default: shops differ in level) "
        "or around one mean pooled over shops (pooled)",
    )


def _check_out(out) -> None:
    """Refuse an --out folder that holds something else before spending minutes on the run."""
    from dice_prob._io_atomic import COMPLETE_MARKER, _is_replaceable
    from dice_prob.errors import DataValidationError

    if not _is_replaceable(Path(out).absolute()):
        raise DataValidationError(
            f"--out: {out} exists and is not a dice_prob result folder (no {COMPLETE_MARKER}); "
            "choose a new or empty folder"
        )


def _split_names(values) -> list[str] | None:
    if values is None:
        return None
    out = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def read_panel_csv(args):
    """Build a Panel from ``dice-prob run`` arguments via :func:`dice_prob.data.io.read_csv`."""
    from dice_prob.data.io import read_csv
    from dice_prob.data.panel import Panel
    from dice_prob.errors import DataValidationError

    path = Path(args.data)
    if not path.is_file():
        raise DataValidationError(
            f"DATA: file {str(path)!r} not found; pass the path of an existing CSV file"
        )
    kwargs = {
        "time": args.time,
        "target": args.target,
        "shop": args.shop,
        "channels": _split_names(args.channels),
        "intermediates": tuple(_split_names(args.intermediates) or ()),
        "controls": tuple(_split_names(args.controls) or ()),
        "context": _split_names(args.context),
        "layout": args.layout,
    }
    if args.nodes:
        kwargs["nodes"] = _split_names(args.nodes)
    panel = read_csv(path, **kwargs)
    if args.train_steps is not None:
        train_steps = int(args.train_steps)
    else:  # the package's one split convention: the last 20% of the steps are the test region
        from dice_prob.data.panel import default_train_steps

        train_steps = default_train_steps(panel.n_steps)
    return Panel(
        panel.values,
        panel.nodes,
        panel.roles,
        panel.context,
        train_steps=train_steps,
        shop_ids=panel.shop_ids,
        time_index=panel.time_index,
        centre=args.centre,
    )


def _cmd_run(args) -> int:
    from dice_prob.errors import DataValidationError
    from dice_prob.pipeline import load_config, run_pipeline

    if not Path(args.data).is_file():
        raise DataValidationError(
            f"DATA: file {str(args.data)!r} not found; pass the path of an existing CSV file"
        )
    _check_out(args.out)
    log = _Progress(args.quiet)
    config = load_config(args.config) if args.config else None
    log(f"reading {args.data}")
    panel = read_panel_csv(args)
    log(f"panel: {panel!r}")
    setting = None
    if config is None:
        config, setting = run_config(panel)
        log(setting)
    if args.fast:
        config = fast_config(config)
    config = _with_progress_bars(config, sys.stderr.isatty() and not args.quiet)
    res = run_pipeline(_key(args.seed), panel, config=config, truth=None, log=log)
    res.summary.setdefault("notes", []).insert(0, f"data: {Path(args.data).name}")
    if setting is not None:
        res.summary["notes"].insert(1, setting)
    log(f"writing results and report to {args.out}")
    out = res.save(args.out, report=True)
    print_summary(res, out)
    return EXIT_OK


def _cmd_report(args) -> int:
    from dice_prob.errors import DataValidationError
    from dice_prob.pipeline import load_result
    from dice_prob.report import report

    root = Path(args.dir)
    if not root.is_dir():
        raise DataValidationError(f"DIR: folder {str(root)!r} not found; pass a folder written by demo/run")
    res = load_result(root)
    path = Path(args.output) if args.output else root / "report.html"
    report(res, path)
    print(f"report written to {path}")
    return EXIT_OK


def benchmarks_dir() -> Path | None:
    """The repository's ``benchmarks/`` folder (None in a wheel install, where it is not shipped)."""
    candidates = [Path(__file__).resolve().parent.parent / "benchmarks", Path.cwd() / "benchmarks"]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.py")):
            return c
    return None


# The issue-6 suite, in the order `dice-prob bench all` runs it; each script takes --fast, --seeds and --out.
BENCH_SUITE = ("recovery_rdt", "sparse_target", "graph_swap", "multi_graph", "causalmmm_layout", "speed")
# suite scripts that save every finished seed and continue a stopped run with --resume (recovery_rdt continues
# per cell with its own --merge)
BENCH_RESUMABLE = ("sparse_target", "graph_swap", "multi_graph", "causalmmm_layout")


def _bench_command(bdir: Path, name: str, args) -> list[str]:
    cmd = [sys.executable, str(bdir / f"{name}.py")] + (["--fast"] if args.fast else [])
    if args.out:
        cmd += ["--out", str(Path(args.out).resolve())]
    if getattr(args, "resume", False) and name in BENCH_RESUMABLE:
        cmd += ["--resume"]
    return cmd


def _cmd_bench(args) -> int:
    from dice_prob.errors import DataValidationError

    bdir = benchmarks_dir()
    if bdir is None:
        raise DataValidationError(
            "bench: no benchmarks/ folder found (it ships with the source repository, not the wheel); "
            "run from a git checkout: git clone ... && pip install -e . && dice-prob bench"
        )
    names = sorted(p.stem for p in bdir.glob("*.py") if not p.stem.startswith("_"))
    if not args.name:
        print(f"benchmarks in {bdir}:")
        for n in names:
            print(f"  {n}")
        print(f"  all  (the suite, in order: {', '.join(BENCH_SUITE)})")
        print("run one with: dice-prob bench NAME [--fast] [--out DIR]")
        return EXIT_OK
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    jobs = getattr(args, "jobs", 1)
    if jobs is not None and (jobs < 1 or (jobs > 1 and name != "all")):
        raise DataValidationError(
            f"bench: --jobs {jobs}: give a whole number >= 1, and more than 1 only with 'all' (one script runs "
            "alone); drop --jobs or run: dice-prob bench all --jobs 2"
        )
    if name == "all":
        missing = [n for n in BENCH_SUITE if n not in names]
        if missing:
            raise DataValidationError(f"bench: suite benchmarks {missing} not found in {bdir}")
        return _bench_all(bdir, args)
    if name not in names:
        raise DataValidationError(f"bench: unknown benchmark {name!r}; available: {names} or 'all'")
    if getattr(args, "resume", False) and name not in BENCH_RESUMABLE:
        raise DataValidationError(
            f"bench: --resume is only understood by {list(BENCH_RESUMABLE)}, not {name!r}; "
            + (
                "recovery_rdt continues a stopped run with its own --merge: python benchmarks/recovery_rdt.py "
                "--cells NAME --merge"
                if name == "recovery_rdt"
                else "drop --resume"
            )
        )
    if args.out and name not in BENCH_SUITE:
        raise DataValidationError(
            f"bench: --out is only understood by the suite benchmarks {list(BENCH_SUITE)}, not {name!r}; "
            "drop --out (that script writes to benchmarks/results/)"
        )
    cmd = _bench_command(bdir, name, args)
    print(f"running {' '.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, cwd=str(bdir.parent))


# Benchmarks that run alone even with --jobs > 1 in a full run: speed reports wall times and peak memory. A --fast
# run is a smoke run (its tables say their timings are not measurements), so there speed runs beside the others.
BENCH_SOLO = ("speed",)
# Start order for side-by-side runs: longest first (as measured with --fast on 2 cores: sparse_target 232 s,
# recovery_rdt 173 s, speed 136 s, multi_graph 104 s, graph_swap 73 s, causalmmm_layout 39 s), so that no long
# script starts last and runs on alone while the other core idles.
BENCH_JOBS_ORDER = ("sparse_target", "recovery_rdt", "speed", "multi_graph", "graph_swap", "causalmmm_layout")
# (later, earlier): with --jobs > 1, `later` starts only once `earlier` has finished, so that it loads the programs
# `earlier` compiled from the shared cache instead of compiling them at the same time
BENCH_AFTER = {"graph_swap": "sparse_target"}


def _bench_all(bdir: Path, args) -> int:
    """Run every suite benchmark; keep going after a failure, exit 1 if any script exited non-zero.

    A target a benchmark does not meet is reported in its tables and is not a failure; an exception is.

    The scripts share one JAX persistent compilation cache (a temporary folder, unless ``JAX_COMPILATION_CACHE_DIR``
    is set): ``graph_swap`` fits and trains what ``sparse_target`` did, and loads those programs instead of compiling
    them again. The cache holds XLA executables only, so the numbers are the same; ``speed`` turns it off for itself
    so that its first-call timings stay cold.

    ``--jobs N`` runs up to N scripts at a time, longest first (each script's output is printed when it ends);
    in a full run ``speed`` runs alone, last, in a ``--fast`` run beside the others. Scripts that ran beside others
    record it in their result files (their timings are contended).
    """
    import os
    import shutil

    from dice_prob._compile_cache import missing_cache_env

    jobs = int(getattr(args, "jobs", 1) or 1)
    env = dict(os.environ)
    added = missing_cache_env(env, "dice-prob-bench-xla-")
    env.update(added)
    made = added.get("JAX_COMPILATION_CACHE_DIR")
    walls, failed = {}, []
    t_all = time.perf_counter()
    try:
        solo = () if args.fast else BENCH_SOLO
        shared = [n for n in BENCH_JOBS_ORDER if n not in solo] if jobs > 1 else []
        if shared:
            _bench_concurrently(bdir, args, shared, jobs, env, walls, failed)
        for name in BENCH_SUITE:
            if name in shared:
                continue
            cmd = _bench_command(bdir, name, args)
            print(f"running {' '.join(cmd)}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            rc = subprocess.call(cmd, cwd=str(bdir.parent), env=env)
            walls[name] = time.perf_counter() - t0
            if rc != 0:
                failed.append(f"{name} (exit {rc})")
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    total = time.perf_counter() - t_all
    summary = ", ".join(f"{n} {w:.0f} s" for n, w in walls.items())
    print(f"bench all: {total:.0f} s in total ({summary})", file=sys.stderr, flush=True)
    if failed:
        print(f"dice-prob: error: bench all: failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _bench_concurrently(
    bdir: Path, args, names: list, jobs: int, env: dict, walls: dict, failed: list
) -> None:
    """Run ``names`` up to ``jobs`` at a time, in order as far as BENCH_AFTER allows; each script's output goes to a
    temporary file that is printed when the script ends (interleaved lines would be unreadable)."""
    import tempfile

    env = {**env, "DICE_PROB_BENCH_JOBS": str(jobs)}
    waiting, running = list(names), {}
    while waiting or running:
        for name in list(waiting):
            if len(running) >= jobs:
                break
            if BENCH_AFTER.get(name) in waiting or BENCH_AFTER.get(name) in running:
                continue
            cmd = _bench_command(bdir, name, args)
            print(f"running {' '.join(cmd)} (beside up to {jobs - 1} other)", file=sys.stderr, flush=True)
            log = tempfile.TemporaryFile(mode="w+")
            proc = subprocess.Popen(cmd, cwd=str(bdir.parent), env=env, stdout=log, stderr=subprocess.STDOUT)
            running[name] = (proc, log, time.perf_counter())
            waiting.remove(name)
        time.sleep(0.5)
        for name, (proc, log, t0) in list(running.items()):
            rc = proc.poll()
            if rc is None:
                continue
            walls[name] = time.perf_counter() - t0
            log.seek(0)
            print(f"----- {name} (exit {rc}, {walls[name]:.0f} s) -----", file=sys.stderr)
            sys.stderr.write(log.read())
            sys.stderr.flush()
            log.close()
            del running[name]
            if rc != 0:
                failed.append(f"{name} (exit {rc})")


# ====================================================================================== parser / main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dice-prob",
        description="Graph posteriors, graph-safe decoders and influence diagnostics for marketing mix models.",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    p.add_argument("--quiet", action="store_true", help="no per-stage progress lines")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="run the pipeline on the embedded default data and write a report")
    d.add_argument("--out", default="demo-out", help="result folder (default: demo-out)")
    d.add_argument("--fast", action="store_true", help="small setting for CI and tutorials (about a minute)")
    d.add_argument("--seed", type=int, default=0, help="pipeline seed (the data key is fixed)")
    d.add_argument("--config", help="TOML/JSON PipelineConfig file overriding the demo setting")
    _add_centre(d)
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="run the pipeline on your own CSV (long or wide)")
    r.add_argument(
        "data", metavar="DATA.csv", help="CSV file: one row per (shop, time) or per (shop, time, node)"
    )
    r.add_argument("--time", required=True, help="time column")
    r.add_argument("--target", required=True, help="target column / node name (e.g. sales)")
    r.add_argument("--shop", help="shop / geo column (omit for one series)")
    r.add_argument("--nodes", nargs="+", help="node columns to use (default: every numeric column)")
    r.add_argument("--channels", nargs="+", help="channel (spend) nodes (default: every other node)")
    r.add_argument("--intermediates", nargs="+", help="mid-funnel nodes (may receive edges)")
    r.add_argument("--controls", nargs="+", help="control nodes (exogenous)")
    r.add_argument("--context", nargs="+", help="per-shop context columns")
    r.add_argument(
        "--layout", choices=("wide", "long", "auto"), default="auto", help="CSV layout (default auto)"
    )
    r.add_argument(
        "--train-steps",
        type=int,
        help="leading steps Stage 1 and the standardisation are fitted on (default: all but the last 20%%, "
        "the test region every forecast and influence score is computed on)",
    )
    r.add_argument(
        "--config",
        help="TOML/JSON PipelineConfig file (default: the package defaults, with the demo's log1p Stage 1 "
        "setting when every channel column is a spend >= 0)",
    )
    r.add_argument("--seed", type=int, default=0, help="pipeline seed")
    r.add_argument("--out", required=True, help="result folder")
    r.add_argument("--fast", action="store_true", help="small setting (short NUTS, few epochs)")
    _add_centre(r)
    r.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="rebuild report.html from a saved result folder")
    rep.add_argument("dir", metavar="DIR", help="result folder written by demo/run")
    rep.add_argument("--output", help="HTML path (default DIR/report.html)")
    rep.set_defaults(func=_cmd_report)

    b = sub.add_parser("bench", help="run a benchmark script from the repository's benchmarks/ folder")
    b.add_argument("name", nargs="?", help="benchmark name, or 'all' for the suite (omit to list them)")
    b.add_argument("--fast", action="store_true", help="the benchmark's fast setting")
    b.add_argument(
        "--out",
        help="results folder of the suite benchmarks (default benchmarks/results/, benchmarks/results/fast/ "
        "with --fast, so a smoke run never overwrites the committed results)",
    )
    b.add_argument(
        "--resume",
        action="store_true",
        help=f"continue a stopped run: reuse the seeds it saved with the same settings ({', '.join(BENCH_RESUMABLE)})",
    )
    b.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="with 'all': run up to this many scripts at a time, longest first (speed alone, last, unless "
        "--fast); default 1",
    )
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    """Entry point of the ``dice-prob`` console script; returns the exit code.

    0 on success, 2 on bad input (one ``dice-prob: error: ...`` line on stderr), 1 on an internal failure, 130
    when interrupted. ``--debug`` lets the exception and its traceback through instead.

    Examples
    --------
    >>> main(["report", "no-such-folder"])   # prints one error line on stderr
    2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    with warnings.catch_warnings():
        # a CLI reports poor convergence and carries on; it never turns a warning into a crash
        warnings.filterwarnings("default", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        if args.debug:
            return int(args.func(args) or 0)
        return _run_safely(args)


def _run_safely(args) -> int:
    old_show = warnings.showwarning
    warnings.showwarning = _warning_line
    try:
        return int(args.func(args) or 0)
    except (DiceProbError, OSError, ValueError) as exc:
        print(f"dice-prob: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT if isinstance(exc, (DiceProbError, OSError)) else EXIT_FAILED
    except KeyboardInterrupt:
        print("dice-prob: interrupted; no result was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # an internal failure: still one line, with how to see more
        print(
            f"dice-prob: error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    finally:
        warnings.showwarning = old_show


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
