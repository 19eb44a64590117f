"""Shared helpers for benchmark scripts: machine description, atomic JSON + Markdown output, timing."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Platform, CPU count and library versions of this run."""
    import jax

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        # >1 when `dice-prob bench all --jobs N` ran this script beside others: its timings are contended
        "bench_jobs": int(os.environ.get("DICE_PROB_BENCH_JOBS", "1")),
    }


def command() -> str:
    return "python " + " ".join(sys.argv)


#: git pathspec of the tree ``code_version`` checks: the whole checkout except the benchmark outputs, which a
#: resumed or merged run has itself rewritten by the time it writes again (they are results, not code)
CODE_PATHSPEC = (":/", ":(top,exclude)benchmarks/results")


def code_version(cwd: Path | None = None) -> dict:
    """The git commit the benchmark ran from and whether the working tree had uncommitted changes outside
    ``benchmarks/results`` (:data:`CODE_PATHSPEC`); None values outside a git checkout. Results depend on the code
    as well as on the command: a later commit can move a fit's random stream, so a table is reproducible from its
    commit, not from its command alone. ``cwd``: a folder of the checkout (default: this file's)."""
    import subprocess

    def git(*args):
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=Path(__file__).resolve().parent if cwd is None else cwd,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHSPEC) if commit else None
    return {"commit": commit, "uncommitted_changes": None if status is None else bool(status)}


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def mean_sd(xs) -> tuple[float, float]:
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def fmt(xs, digits: int = 3) -> str:
    """'mean ± sd' of a list of numbers."""
    m, s = mean_sd(xs)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


@contextmanager
def timer():
    """``with timer() as t: ...; t()`` gives the elapsed seconds."""
    start = time.perf_counter()
    box = {"end": None}
    yield lambda: (box["end"] or time.perf_counter()) - start
    box["end"] = time.perf_counter()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def seeded_args(
    doc: str,
    argv,
    *,
    default_seeds: int,
    fast_help: str,
    flags: dict[str, str] | None = None,
    options: dict[str, dict] | None = None,
):
    """Parse the common ``--fast`` / ``--seeds N`` / ``--out DIR`` options; returns ``(args, seeds, out)`` with
    ``seeds`` the list ``0 .. N-1`` (1 seed with ``--fast`` unless ``--seeds`` says otherwise) and ``out`` a
    Path or None (``write_results``' default folder). ``flags``: extra on/off options of one script, as
    ``{"--name": help}``; ``options``: extra options with values, as ``{"--name": add_argument keywords}``."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help=fast_help)
    ap.add_argument("--seeds", type=int, help=f"number of seeds (default {default_seeds}; 1 with --fast)")
    ap.add_argument("--out", help="results folder (default benchmarks/results)")
    for flag, text in (flags or {}).items():
        ap.add_argument(flag, action="store_true", help=text)
    for flag, kwargs in (options or {}).items():
        ap.add_argument(flag, **kwargs)
    args = ap.parse_args(argv)
    seeds = list(range(args.seeds or (1 if args.fast else default_seeds)))
    return args, seeds, None if args.out is None else Path(args.out)


def seeded_main(
    doc: str,
    argv,
    name: str,
    run_seed,
    markdown,
    *,
    default_seeds: int,
    fast_help: str,
    report=None,
    payload: dict | None = None,
) -> int:
    """The whole ``main`` of a script whose seeds run one after another: parse ``--fast`` / ``--seeds`` /
    ``--out`` (:func:`seeded_args`), run ``run_seed(seed, fast) -> dict`` per seed (printing ``report(run)``,
    default the run itself), then write ``NAME`` (``NAME_fast`` with ``--fast``) with ``{"fast", "seeds",
    **payload, "runs"}`` and ``markdown(runs, seeds, fast)``."""
    args, seeds, out = seeded_args(doc, argv, default_seeds=default_seeds, fast_help=fast_help)
    t0 = time.perf_counter()
    runs = []
    for s in seeds:
        runs.append(run_seed(s, args.fast))
        print(s, runs[-1] if report is None else report(runs[-1]), flush=True)
    write_results(
        f"{name}_fast" if args.fast else name,
        {"fast": args.fast, "seeds": seeds, **(payload or {}), "runs": runs},
        markdown(runs, seeds, args.fast),
        wall_s=time.perf_counter() - t0,
        out=out,
    )
    return 0


def write_results(
    name: str, payload: dict, markdown: str, *, wall_s: float | None = None, out: Path | None = None
) -> Path:
    """Write ``NAME.json`` and ``NAME.md`` atomically into ``out`` (default ``results/``), stamped with machine,
    command and date."""
    out = RESULTS if out is None else Path(out)
    meta = {
        "name": name,
        "date": now_iso(),
        "command": command(),
        "code": code_version(),
        "machine": machine(),
        "wall_s": wall_s,
        "peak_rss_gb": peak_rss_gb(),
    }
    payload = {"meta": meta, **payload}
    _atomic_write(out / f"{name}.json", json.dumps(payload, indent=2, default=_json_default) + "\n")
    m = meta["machine"]
    header = (
        f"# {name}\n\n"
        f"- command: `{meta['command']}`\n- date: {meta['date']}\n"
        + _code_line(meta["code"])
        + f"- machine: {m['platform']}, {m['cpu_count']} CPUs, jax {m['jax']} ({m['jax_backend']})\n"
        + (
            f"- timings contended: ran beside up to {m['bench_jobs'] - 1} other benchmark(s) "
            f"(`dice-prob bench all --jobs {m['bench_jobs']}`)\n"
            if m.get("bench_jobs", 1) > 1
            else ""
        )
        + (f"- wall time: {wall_s:.1f} s\n" if wall_s is not None else "")
        + f"- peak RSS: {meta['peak_rss_gb']:.2f} GB\n\n"
    )
    _atomic_write(out / f"{name}.md", header + markdown.rstrip() + "\n")
    print(
        f"[{name}] wrote {out / (name + '.json')} on {m['platform']} ({m['cpu_count']} CPUs); "
        f"command: {meta['command']}"
    )
    return out / f"{name}.json"


def _code_line(code: dict) -> str:
    if not code.get("commit"):
        return ""
    dirty = " with uncommitted changes" if code.get("uncommitted_changes") else ""
    return f"- code: commit {code['commit'][:10]}{dirty}\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
