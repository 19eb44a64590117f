"""HTML report: every section, embedded figures, no network assets, renders in headless Chromium.

The result here is built by hand (no NUTS, no training) so the file runs in seconds; the end-to-end report of a
real pipeline run is checked in tests/test_pipeline.py.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dice_prob.config import PipelineConfig
from dice_prob.data.panel import Panel
from dice_prob.errors import InputTypeError
from dice_prob.pipeline import (
    PipelineResult,
    _forecast_table,
    _influence_table,
    attribution_check,
    load_result,
)
from dice_prob.report import SECTIONS, render_html, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _fake_result(*, with_truth: bool = True) -> PipelineResult:
    rng = np.random.default_rng(0)
    nodes = ["tv", "search", "visits", "sales"]
    roles = ["channel", "channel", "intermediate", "target"]
    panel = Panel(rng.gamma(2.0, size=(2, 40, 4)), nodes, roles, train_steps=32)
    mask = panel.support_mask()
    truth = np.zeros((4, 4))
    truth[0, 2] = truth[2, 3] = truth[1, 3] = 1
    pip = np.where(mask, 0.1 + 0.8 * truth, 0.0)
    s = 16
    graphs = (rng.uniform(size=(s, 4, 4)) < pip).astype(np.float32)
    ar = graphs * rng.gamma(2.0, 0.1, size=(s, 4, 4))
    cig = 0.5 * ar
    cfg = PipelineConfig()
    prob = cfg.diagnostics.hdi_prob
    forecast = {
        "shop": 0,
        "shop_id": "0",
        "node": "sales",
        "time": [str(t) for t in range(40)],
        "observed": panel.values[0, :, 3].tolist(),
        "origin": 32,
        "start": 10,
        "draws": panel.values[0, 33:40, 3][None] + rng.normal(0, 0.1, size=(s, 7)),
    }
    swap = pd.DataFrame(
        [
            {
                "graph_input": g,
                "metric": m,
                "mean": v,
                "sd": 0.1,
                "hdi_low": v - 0.2,
                "hdi_high": v + 0.2,
                "n_draws": 5,
            }
            for g, base in (("posterior", 0.7), ("oracle", 0.9), ("empty", 0.0))
            for m, v in (("nauprc", base), ("mse_target", 0.3 + base / 10))
        ]
    )
    mse7 = rng.uniform(0.2, 0.3, size=s)
    summary = {
        "headline": {
            "mse7": {"mean": float(mse7.mean()), "sd": 0.01, "hdi_low": 0.2, "hdi_high": 0.3},
            "mse7_persistence": 0.5,
            "n_edges_pip_gt_05": 3,
            "attribution": attribution_check(ar, pip, mask, hdi_prob=prob),
        },
        "data": {
            "shape": list(panel.shape),
            "nodes": nodes,
            "roles": roles,
            "target": "sales",
            "train_steps": 32,
            "n_context": 0,
            "has_truth": with_truth,
        },
        "config": cfg.to_dict(),
        "versions": {"python": "3.x"},
        "seeds": {"root": [0, 1]},
        "timings_s": {"stage1": 1.0, "total": 2.0},
        "convergence": {"max_r_hat": 1.0, "min_ess": 400.0, "n_divergences": 0, "ok": True},
        "notes": [] if with_truth else ["no true graph: truth-based scores are skipped"],
    }
    return PipelineResult(
        config=cfg,
        panel=panel,
        truth=truth if with_truth else None,
        pip=pip,
        support_mask=mask,
        graph_samples=graphs,
        cig=cig,
        ar_cig=ar,
        mse7=mse7,
        forecast=forecast,
        tables={
            "edges": pd.DataFrame({"source": ["tv"], "target": ["visits"], "pip": [0.9]}),
            "influence": _influence_table(cig, ar, nodes, mask, prob),
            "forecast": _forecast_table(forecast, prob),
            "graph_swap": swap,
            "comparison": pd.DataFrame({"decoder": ["posterior"], "mse7": [0.25]}),
        },
        summary=summary,
    )


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_has_every_section_and_embedded_figures(tmp_path):
    path = report(_fake_result(), tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert f">{heading}</h2>" in html, heading
    imgs = _images(html)
    # PIP heatmap, network, forecast fan chart, CIG/AR-CIG panel, graph-swap forest plot
    assert len(imgs) == 5
    assert all(b.startswith(b"\x89PNG\r\n\x1a\n") and len(b) > 2000 for b in imgs)
    # the attribution paragraph says something definite, and the PIP/AR-CIG table values are in the page
    assert "Attribution check" in html and "rank correlation between AR-CIG and PIP" in html
    assert "PIP AUROC against the true graph" in html


def test_report_names_chains_that_settled_in_different_modes():
    res = _fake_result()
    split = {"n_graphs": 2, "graphs": [0], "pi_by_chain": [[0.86, 0.04]], "slab_by_chain": None}
    res.summary["convergence"].update(ok=False, max_r_hat=3.0e8, chain_split=split)
    html = render_html(res)
    assert (
        "poor convergence" in html
        and "different modes on 1 of 2 graph(s) (graph 0: pi by chain 0.86/0.04)" in html
    )
    # more draws cannot join chains in different modes, so the status line must not advise them
    assert "more warmup/draws/chains" not in html
    assert "different modes" not in render_html(_fake_result())
    res.summary["convergence"].pop("chain_split")
    assert "more warmup/draws/chains" in render_html(res)


def test_report_has_no_network_assets(tmp_path):
    html = render_html(_fake_result())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, flags=re.I)
    assert "<link" not in html.lower() and "@import" not in html


def test_report_without_truth_says_so(tmp_path):
    html = render_html(_fake_result(with_truth=False))
    assert "No true graph is known" in html
    assert "truth-based scores" in html
    assert "PIP AUROC against the true graph" not in html


def test_report_rejects_wrong_input(tmp_path):
    with pytest.raises(InputTypeError, match="PipelineResult or a result folder"):
        report(42, tmp_path / "x.html")


def test_report_from_missing_folder_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not a complete dice_prob result"):
        load_result(tmp_path / "nothing")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)",
)
def test_report_renders_in_headless_chromium(tmp_path):
    path = report(_fake_result(), tmp_path / "report.html")
    n_img = len(_images(path.read_text(encoding="utf-8")))
    probe = tmp_path / "probe.html"
    # a probe that records, after load, how many images decoded to a non-empty bitmap
    script = (
        "<script>window.addEventListener('load', () => { const im = Array.from(document.images); "
        "document.body.setAttribute('data-probe', im.filter(i => i.complete && i.naturalWidth > 0).length + '/' "
        "+ im.length); });</script>"
    )
    probe.write_text(
        path.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
    ]
    dom = subprocess.run(
        [*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    consoles = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert consoles == [], consoles
    m = re.search(r'data-probe="(\d+)/(\d+)"', dom.stdout)
    assert m is not None, "the page did not finish loading"
    assert (int(m.group(1)), int(m.group(2))) == (n_img, n_img)
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [*flags, "--window-size=1200,3000", f"--screenshot={shot}", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    consoles = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert consoles == [], consoles
    assert shot.exists() and shot.stat().st_size > 10_000
    assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
