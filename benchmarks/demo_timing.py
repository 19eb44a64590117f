"""Time ``dice-prob demo --fast`` and the full ``dice-prob demo`` as subprocesses (wall, CPU, peak memory).

Targets (issue 5, 2 cores): ``--fast`` <= 90 s, full <= 300 s, peak memory <= 3 GB, and ``report.html`` with every
section. Peak memory is the child's own ``ru_maxrss`` from ``os.wait4`` (the per-child figure of
``getrusage(RUSAGE_CHILDREN)``). Wall time on a shared machine is inflated by contention; CPU time (user + sys)
is reported beside it.

Usage: ``python benchmarks/demo_timing.py [--fast] [--repeats N]`` (``--fast`` times only the fast demo).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fmt, write_results  # noqa: E402

TARGETS = {"fast": {"wall_s": 90.0}, "full": {"wall_s": 300.0}}
PEAK_GB = 3.0


def _command(fast: bool, out: Path) -> list[str]:
    exe = shutil.which("dice-prob")
    base = [exe] if exe else [sys.executable, "-m", "dice_prob.cli"]
    return [*base, "--quiet", "demo", "--out", str(out), *(["--fast"] if fast else [])]


def time_demo(fast: bool) -> dict:
    """One demo run in a fresh process: wall/CPU seconds, peak RSS, the report's sections and stage timings."""
    from dice_prob.report import SECTIONS

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo-out"
        cmd = _command(fast, out)
        env = dict(os.environ)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stdout, stderr = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        rc = os.waitstatus_to_exitcode(status)
        html = (out / "report.html").read_text(encoding="utf-8") if (out / "report.html").exists() else ""
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    return {
        "command": " ".join(cmd[-4:] if cmd[0] != sys.executable else cmd[2:]),
        "returncode": rc,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
        "report_sections_present": all(s in html for s in SECTIONS),
        "n_embedded_figures": html.count("data:image/png;base64,"),
        "stage_timings_s": summary.get("timings_s", {}),
        "stage_cpu_s": summary.get("cpu_s", {}),
        "headline": {
            k: summary.get("headline", {}).get(k)
            for k in ("mse7", "ar_cig_nauprc", "pip_scores", "n_edges_pip_gt_05")
        },
        "stderr_tail": stderr[-600:] if rc else "",
        "stdout_tail": stdout[-1500:],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="time only `dice-prob demo --fast`")
    ap.add_argument("--repeats", type=int, default=1, help="runs per setting (each is minutes long)")
    args = ap.parse_args(argv)
    settings = ["fast"] if args.fast else ["fast", "full"]
    t0 = time.perf_counter()
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for _ in range(args.repeats):
        for s in settings:
            r = time_demo(fast=(s == "fast"))
            runs[s].append(r)
            print(
                f"[demo_timing] {s}: rc={r['returncode']} wall {r['wall_s']:.1f}s cpu {r['cpu_s']:.1f}s "
                f"peak {r['peak_rss_gb']:.2f} GB",
                flush=True,
            )
    previous = {}
    old = Path(__file__).resolve().parent / "results" / "demo_timing.json"
    if old.exists():  # keep settings not rerun now (e.g. the full demo when only --fast ran), marked as such
        try:
            prev = json.loads(old.read_text())
            for s, rs in prev.get("runs", {}).items():
                if s not in runs:
                    runs[s] = rs
                    previous[s] = prev.get("meta", {}).get("date")
        except (OSError, json.JSONDecodeError):
            pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = {}
    lines = [
        "Wall time on a shared machine includes contention; CPU time (user + sys of the demo process) is the "
        "better guide to a quiet 2-core machine.",
        "",
        "| setting | runs | wall s | CPU s | peak RSS GB | target wall s | wall ok | peak ok | report complete |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        ok_runs = all(r["returncode"] == 0 for r in rs)
        peak = max(r["peak_rss_gb"] for r in rs)
        summary[s] = {
            "wall_s": walls,
            "cpu_s": [r["cpu_s"] for r in rs],
            "peak_rss_gb": peak,
            "target_wall_s": TARGETS[s]["wall_s"],
            "meets_wall_target": ok_runs and max(walls) <= TARGETS[s]["wall_s"],
            "meets_peak_target": peak <= PEAK_GB,
            "report_complete": ok_runs and all(r["report_sections_present"] for r in rs),
        }
        lines.append(
            f"| {s} | {len(rs)} | {fmt(walls, 1)} | {fmt(summary[s]['cpu_s'], 1)} | {peak:.2f} | "
            f"{TARGETS[s]['wall_s']:.0f} | {summary[s]['meets_wall_target']} | {summary[s]['meets_peak_target']} | "
            f"{summary[s]['report_complete']} |"
        )
    lines += ["", "Per-stage wall (CPU) seconds of the last run:", ""]
    for s, rs in runs.items():
        st, cpu = rs[-1]["stage_timings_s"], rs[-1]["stage_cpu_s"]
        lines.append(
            f"- {s}: " + ", ".join(f"{k} {v:.1f} ({cpu.get(k, float('nan')):.1f})" for k, v in st.items())
        )
    if previous:
        lines += [
            "",
            "Carried over from an earlier run (not rerun now): "
            + ", ".join(f"{k} ({v})" for k, v in previous.items()),
        ]
    payload = {
        "carried_over": previous,
        "summary": summary,
        "runs": runs,
        "rusage_children": {
            "peak_rss_gb_any_child": children.ru_maxrss / 1024**2,
            "cpu_s": children.ru_utime + children.ru_stime,
        },
        "load_average": os.getloadavg(),
    }
    lines += ["", f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    write_results("demo_timing", payload, "\n".join(lines), wall_s=time.perf_counter() - t0)
    return 0 if all(all(r["returncode"] == 0 for r in rs) for rs in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
