"""Stage 1's compile cost: each fit timed twice in one fresh process (the first compiles, the second re-uses it).

python benchmarks/stage1_compile.py

Two fits: an mmm-mode fit of a one-shop mmm funnel (T=300, 2 lags, 2 chains, 150 + 150 draws) and a
linear-mode fit of a four-shop funnel (d=8, T=100, the suite's fast Stage 1 setting). For each it reports the
wall seconds of the first and the second fit and the first fit's ``compile_s`` / ``sample_s`` from
``GraphPosterior.timing``. Diagnostic only: no target, not part of ``bench all``. Compare runs on the same machine
only: XLA compiles on the host cores, so the figures move with the machine's load.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import speed  # noqa: E402
from _common import write_results  # noqa: E402
from _suite import key, run_stage1, stage1_config  # noqa: E402

import dice_prob as dp  # noqa: E402
from dice_prob.data import simulate  # noqa: E402

NAME = "stage1_compile"


def mmm_case():
    sim = simulate.funnel(key(0), n_shops=1, n_steps=300, n_lags=2, mode="mmm")
    cfg = dp.Stage1Config(mode="mmm", n_lags=2, num_warmup=150, num_samples=150, progress_bar=False)
    return sim.panel, cfg


def linear_case():
    sim = speed.funnel(4, 8, 100)  # the speed benchmark's fast stage panel
    return sim.panel, stage1_config("linear", True)


def time_fit(seed: int, panel, cfg) -> tuple[float, dict, int]:
    """(wall seconds, the fit's timing dict, number of distinct convergence warnings) of one fit."""
    post, wall, warns = run_stage1(key(seed), panel, cfg)
    return wall, dict(post.timing), len(warns)


def main() -> int:
    # the first fit's time is the point: never load programs another run left in a persistent cache
    jax.config.update("jax_enable_compilation_cache", False)
    t0 = time.perf_counter()
    rows = {}
    for name, make in (("mmm", mmm_case), ("linear", linear_case)):
        panel, cfg = make()
        first, timing, n_warn = time_fit(1, panel, cfg)
        second, _, _ = time_fit(2, panel, cfg)
        rows[name] = {
            "first_fit_s": first,
            "second_fit_s": second,
            "compile_s": timing["compile_s"],
            "sample_s": timing["sample_s"],
            # short chains: recorded, not hidden; beside the point of a timing run
            "convergence_warnings": n_warn,
            "config": cfg.to_dict(),
            "shape": {"n_shops": panel.n_shops, "n_nodes": panel.n_nodes, "n_steps": panel.n_steps},
        }
        print(
            f"[{NAME}] {name}: first {first:.1f} s (compile {timing['compile_s']:.1f} s), second {second:.1f} s"
        )
    lines = [
        "Each fit timed twice in one fresh process; the second re-uses the first's compiled sampler.",
        "",
        "| fit | shops x nodes x steps | first fit s | of which compile s | second fit s |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        sh = r["shape"]
        lines.append(
            f"| {name} | {sh['n_shops']} x {sh['n_nodes']} x {sh['n_steps']} | {r['first_fit_s']:.1f} | "
            f"{r['compile_s']:.1f} | {r['second_fit_s']:.1f} |"
        )
    write_results(NAME, {"fits": rows}, "\n".join(lines) + "\n", wall_s=time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
